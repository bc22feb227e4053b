"""docs/publish-api.md's raw Redis contract is the code's: the key layout, the publish
script's arguments (its header, verbatim), the envelope."""

from __future__ import annotations

import re
from pathlib import Path

import msgpack

from herald_contract.envelope import build_envelope
from herald_contract.history import HistorySettings, new_epoch
from herald_contract.keys import KeyLayout
from herald_contract.redis_scripts import PublishScripts
from herald_contract.stream import PublishResult

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "publish-api.md").read_text()
SCRIPT = (ROOT / "herald_contract" / "lua" / "publish.lua").read_text()


def blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.M | re.S)


def test_the_documented_keys_are_the_key_layout() -> None:
    keys = KeyLayout()
    (block,) = [b for b in blocks(DOC) if "herald:{question:42}:history" in b]
    documented = [line.split()[0] for line in block.splitlines()]
    assert documented == [
        keys.history("question:42"),
        keys.meta("question:42"),
        keys.event_prefix("question:42") + "<id>",
        keys.live("question:42"),
    ]


def test_the_documented_arguments_are_the_script_header() -> None:
    header = []
    for line in SCRIPT.splitlines():
        if line.startswith("-- KEYS[1]"):
            header = [line]
        elif header and line.startswith("--"):
            header.append(line)
            if line.startswith("-- Returns"):
                break
    assert header, "the script's header moved"
    expected = "\n".join(line.removeprefix("--").removeprefix(" ") for line in header) + "\n"
    assert expected in blocks(DOC), expected


def test_the_documented_arguments_are_what_the_library_passes() -> None:
    """ARGV as PublishScripts builds it, beside the documented table."""

    class Client:
        def register_script(self, source: str) -> object:
            return object()

    scripts = PublishScripts(Client(), KeyLayout(), HistorySettings(500, 900.0, 86400.0, 3600.0))  # type: ignore[arg-type]
    args = scripts._publish_args("question:42", b"\x01", "e-1")
    assert args[0] == "herald:{question:42}:live"
    assert args[2] == "e-1"
    assert len(str(args[3])) == len(new_epoch()) == 8
    assert args[4:9] == (500, 900_000, 86_400_000, 3_600_000, "herald:{question:42}:event:")
    for n in (2, 3, 4, 5, 6, 7, 8, 9):
        assert f"`ARGV[{n}]`" in DOC


def test_the_documented_envelope_is_the_one_built() -> None:
    assert "[1, epoch: str, offset: int, published_ms: int, event_id: str, data: any]" in DOC
    envelope = build_envelope("ep", 7, 1234, "e-1", msgpack.packb({"a": 1}))
    assert msgpack.unpackb(envelope) == [1, "ep", 7, 1234, "e-1", {"a": 1}]
    assert PublishResult.__dataclass_fields__.keys() == {"position", "duplicate"}
