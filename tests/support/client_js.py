"""client-js/dist for the tests that load the browser client (tests/e2e, tests/examples).

    dist = built_client_js(tmp_path_factory, missing=fail_under_ci)

Builds only what is missing or stale: ``npm ci`` when node_modules is missing (the page
scripts' type check needs its TypeScript too), ``npm run build`` when dist is missing or older
than src/. ``./herald test`` builds it in its client-js check before pytest, so usually nothing
runs. Under pytest-xdist the workers take turns on one lock file in the session's shared
temporary directory: the first builds, the others find the build fresh.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT_JS = ROOT / "client-js"


def fail_under_ci(reason: str) -> NoReturn:
    """A missing tool fails the test under ``CI=true`` (``./herald test`` installs it) and
    skips it on a developer's machine without it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: these tests must run)", pytrace=False)
    pytest.skip(reason)


def built_client_js(
    tmp_path_factory: pytest.TempPathFactory,
    missing: Callable[[str], object] = fail_under_ci,
) -> Path:
    """client-js/dist, built if needed, with the other xdist workers kept out meanwhile;
    *missing* is called (and must raise) when npm is needed and absent."""
    lock_path = tmp_path_factory.getbasetemp().parent / "client-js-build.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(missing)


def _newest(paths: Iterator[Path]) -> float:
    return max((p.stat().st_mtime for p in paths), default=0.0)


def _build(missing: Callable[[str], object]) -> Path:
    dist = CLIENT_JS / "dist"
    built = list(dist.glob("*.js"))
    fresh = bool(built) and min(p.stat().st_mtime for p in built) >= _newest(
        (CLIENT_JS / "src").glob("*.ts")
    )
    steps: list[list[str]] = []
    if not (CLIENT_JS / "node_modules").is_dir():
        steps.append(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"])
    if not fresh:
        steps.append(["npm", "run", "build"])
    if steps and shutil.which("npm") is None:
        missing("npm is missing: install Node >= 20 to build client-js")
    for step in steps:
        done = subprocess.run(step, cwd=CLIENT_JS, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{' '.join(step)} failed:\n{done.stdout}{done.stderr}"
    assert (dist / "index.js").is_file(), "client-js/dist/index.js is missing after the build"
    return dist
