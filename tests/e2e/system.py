"""The whole system for the browser tests: Redis, the socket fleet and the Q&A core.

    system = LiveSystem.start(tmp_path, redis_url)   # returns once all three answer
    system.qa.url, system.fleet.url
    system.stop_fleet(); system.start_fleet()        # SIGTERM drain, start on the same port
    system.close()

The Q&A core runs as ``python -m qasite serve`` on a fresh SQLite file with a
development key pair written beforehand; the fleet verifies its connection tokens with the
public key only.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from qasite.core.keys import PUBLIC_KEY_FILE, with_secrets
from qasite.core.settings import Settings
from tests.support.fleet import Fleet
from tests.support.processes import stop_group
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    """Return once *url* answers 200; fail with the process's log if it exits or *timeout_s*
    passes first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url} exited early:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} not up after {timeout_s}s:\n{log.read_text(errors='replace')}")


class PinnedFleet(Fleet):
    """:class:`Fleet` on a given port, so a restarted fleet is where the pages expect it."""

    def __init__(self, *, port: int, redis_url: str, workers: int, log: Path, **env: str) -> None:
        self.port = port
        self.workers = workers
        self.log_path = log
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", "REDIS_URL": redis_url, **env}
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "socketsrv", "--port", str(port), "--workers", str(workers)],
            cwd=ROOT,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def connections_open(self) -> float:
        """``herald_connections_open`` summed over the fleet (multiprocess metrics)."""
        status, body = self.http_get("/metrics")
        assert status == 200, body
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.decode().splitlines()
            if line.startswith("herald_connections_open")
        )


class QACore:
    """``python -m qasite serve`` on a free port, relaying to Redis."""

    def __init__(
        self,
        *,
        data_dir: Path,
        redis_url: str,
        socket_url: str,
        log: Path,
        database_url: str | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "REDIS_URL": redis_url,
            "HERALD_QA_DATA_DIR": str(data_dir),
            "HERALD_QA_PORT": str(self.port),
            "HERALD_QA_PUBLIC_BASE_URL": self.url,
            "HERALD_QA_SOCKET_URL": socket_url,
            "HERALD_QA_RELAY_POLL_INTERVAL_S": "0.1",
            "HERALD_QA_RELAY_RETRY_MAX_S": "0.5",
            # Cheap password hashing: these tests are about the pages, not about argon2.
            "HERALD_QA_ARGON2_TIME_COST": "1",
            "HERALD_QA_ARGON2_MEMORY_KIB": "64",
            "HERALD_QA_DEV_MAILBOX": "true",  # sign_up reads the verification link there
        }
        env.pop("DATABASE_URL", None)
        if database_url is not None:  # PostgreSQL (migrated at start); else SQLite in data_dir
            env["DATABASE_URL"] = database_url
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "qasite", "serve"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # A pooled connection idle for as long as the server's keep-alive (uvicorn: 5 s, the
        # same as httpx's default expiry) can be closed by the server as the next request goes
        # out ("Server disconnected without sending a response", once in a loaded CI run):
        # the client drops idle connections well before the server does.
        self.http = httpx.Client(
            base_url=self.url, timeout=10.0, limits=httpx.Limits(keepalive_expiry=1.0)
        )

    def wait_ready(self) -> None:
        """Until ``/readyz`` answers 200: the database and Redis answer, so the relay can
        publish what the test writes next."""
        _wait_http(f"{self.url}/readyz", self.process, self.log_path, START_TIMEOUT_S)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        self.http.close()
        stop_group(self.process)
        self._log.close()

    # --- the API, for setting up a test (the pages under test use it from the browser) ----

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.http.request(method, path, headers=headers, **kwargs)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def verified_user(self, email: str, password: str, name: str) -> User:
        """Register, open the verification link from the dev mailbox, log in."""
        self.call(
            "POST",
            "/api/auth/register",
            json={"email": email, "password": password, "display_name": name},
        )
        mail = next(m for m in self.call("GET", "/dev/mailbox") if m["to"] == email)
        self.call("GET", mail["link"].removeprefix(self.url))
        tokens = self.call("POST", "/api/auth/login", json={"email": email, "password": password})
        user = self.call("GET", "/api/auth/me", token=tokens["access_token"])
        return User(user["id"], email, password, name, tokens["access_token"])


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str
    password: str
    name: str
    token: str
    """An API access token, for set-up calls made outside the browser."""


@dataclass(slots=True)
class LiveSystem:
    tmp: Path
    redis_url: str
    fleet: PinnedFleet
    qa: QACore
    fleet_env: dict[str, str]

    @classmethod
    def start(cls, tmp: Path, redis_url: str, database_url: str | None = None) -> LiveSystem:
        """Everything up and answering; the Q&A core on *database_url* (PostgreSQL) or, by
        default, on a fresh SQLite file."""
        data_dir = tmp / "qa-data"
        # The development key pair, written before either process starts.
        with_secrets(Settings(data_dir=data_dir))
        fleet_env = {
            "HERALD_JWT_PUBLIC_KEY_FILE": str(data_dir / PUBLIC_KEY_FILE),
            # A drained client waits a random 0..spread before reconnecting (default 5 s).
            "HERALD_RECONNECT_SPREAD_S": "0.5",
        }
        fleet = PinnedFleet(
            port=free_port(), redis_url=redis_url, workers=2, log=tmp / "fleet.log", **fleet_env
        )
        qa = QACore(
            data_dir=data_dir,
            redis_url=redis_url,
            socket_url=fleet.url,
            log=tmp / "qa.log",
            database_url=database_url,
        )
        system = cls(tmp, redis_url, fleet, qa, fleet_env)
        try:
            fleet.wait_ready()
            qa.wait_ready()
        except BaseException:
            system.close()
            raise
        return system

    def stop_fleet(self) -> int:
        """SIGTERM: the fleet drains (close 4000 with a reconnect hint) and exits; returns
        its exit code."""
        return self.fleet.terminate()

    def start_fleet(self) -> None:
        """Start the fleet again on the same port (after :meth:`stop_fleet`)."""
        self.fleet = PinnedFleet(
            port=self.fleet.port,
            redis_url=self.redis_url,
            workers=self.fleet.workers,
            log=self.tmp / "fleet.log",
            **self.fleet_env,
        )
        self.fleet.wait_ready()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.qa.close()
        with contextlib.suppress(Exception):
            self.fleet.close()

    def logs(self) -> str:
        return f"--- fleet ---\n{self.fleet.log()}\n--- Q&A core ---\n{self.qa.log()}"
