"""Stopping a server the tests started as a subprocess in its own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def stop_group(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> int:
    """SIGTERM (a drain) and wait up to *timeout_s*; then SIGKILL the whole process group,
    which also reaches workers a killed supervisor left behind. Returns the exit code.

    *process* must have been started with ``start_new_session=True``.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait()
