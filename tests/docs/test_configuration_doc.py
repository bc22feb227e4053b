"""docs/configuration.md lists every setting, and only real ones."""

from __future__ import annotations

import re
from pathlib import Path

from socketsrv.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_configuration_table_lists_exactly_the_settings_fields() -> None:
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", DOC.read_text(), flags=re.M))
    fields = set(Settings.model_fields)
    assert documented == fields
