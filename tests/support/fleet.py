"""Run the real fleet (``python -m socketsrv --workers N``) as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.processes import stop_group
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


class Fleet:
    def __init__(self, *, redis_url: str | None, workers: int, log: Path, **env: str) -> None:
        self.port = free_port()
        self.workers = workers
        self.log_path = log
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        if redis_url is not None:
            environment["REDIS_URL"] = redis_url
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "socketsrv", "--port", str(self.port),
             "--workers", str(workers)],
            cwd=ROOT, env=environment, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: close() reaches the workers too
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def http_get(self, path: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}{path}", timeout=timeout_s
            ) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until several answers in a row say ready (each worker answers some of them)."""
        deadline = time.monotonic() + timeout_s
        in_a_row = 0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"fleet exited early:\n{self.log()}")
            try:
                status, _ = self.http_get("/readyz")
            except OSError:
                status = 0
            in_a_row = in_a_row + 1 if status == 200 else 0
            if in_a_row >= 4 * self.workers:
                return
            time.sleep(0.05)
        raise AssertionError(f"fleet not ready after {timeout_s}s:\n{self.log()}")

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (drain) and wait; return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the supervisor and every worker it started, even if the supervisor is gone."""
        stop_group(self.process)
        self._log.close()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]
