"""Run one of Herald's commands as a real subprocess and read how it ended.

A start-up failure must end in one line on stderr and a non-zero exit code; these helpers
give the tests that line, from an environment free of the developer's Herald settings.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERALD_VARIABLES = ("HERALD_", "REDIS_URL", "DATABASE_URL")


@dataclass(frozen=True)
class Ended:
    returncode: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        """The last non-empty line of stderr ("" when it is empty)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def clean_env(**env: str) -> dict[str, str]:
    """This process's environment without Herald's settings, plus *env*."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(HERALD_VARIABLES)}
    return {**kept, **env}


def run_command(
    args: list[str], env: Mapping[str, str], *, cwd: Path = ROOT, timeout_s: float = 60
) -> Ended:
    """Run ``python -m <args>`` (or *args* itself when it starts with a path) to its end.

    The timeout only guards against a command that started serving instead of failing.
    """
    argv = args if args[0].startswith(("/", ".")) else [sys.executable, "-m", *args]
    done = subprocess.run(
        argv, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout_s,
        check=False,
    )  # fmt: skip
    return Ended(done.returncode, done.stdout, done.stderr)


@contextmanager
def port_in_use() -> Iterator[int]:
    """A loopback port another socket listens on (without SO_REUSEPORT) meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])
