"""The page scripts (plain ES modules typed with JSDoc) type-check against the built client."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.conftest import CLIENT_JS
from tests.e2e.system import ROOT


def test_the_page_scripts_type_check_in_strict_mode(client_build: Path) -> None:
    tsc = CLIENT_JS / "node_modules" / ".bin" / "tsc"
    assert tsc.exists(), "client-js/node_modules is missing: run `npm ci` in client-js"
    done = subprocess.run(
        [str(tsc), "-p", str(ROOT / "qasite" / "web" / "tsconfig.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
