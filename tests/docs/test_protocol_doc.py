"""docs/protocol.md and client-js/src/codes.ts say the same codes as socketsrv/protocol/codes.py.

The two tables in the doc (under "## Close codes" and "## Error codes") must hold every row of
CLOSE_TABLE and ERROR_TABLE and nothing else; the TypeScript mirror must hold the same names,
values and reconnect/retry sets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from socketsrv.protocol.codes import CLOSE_TABLE, ERROR_TABLE, CloseCode, ErrorCode

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"
CODES_TS = ROOT / "client-js" / "src" / "codes.ts"

CLOSE_HEADER = ["code", "name", "reconnect", "meaning"]
ERROR_HEADER = ["code", "name", "retry", "meaning"]
FLAGS = {"yes": True, "no": False}


@dataclass(frozen=True)
class Row:
    code: int
    name: str
    flag: bool


# Reading docs/protocol.md


def section(markdown: str, heading: str) -> list[str]:
    """The lines under *heading* up to the next heading of any level."""
    lines = markdown.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == heading]
    assert len(starts) == 1, f"expected exactly one {heading!r} heading, found {len(starts)}"
    body: list[str] = []
    for line in lines[starts[0] + 1 :]:
        if line.startswith("#"):
            break
        body.append(line)
    return body


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def parse_table(lines: list[str], header: list[str]) -> list[Row]:
    """The rows of the one Markdown table in *lines*, whose header must be *header*."""
    is_table = [line.lstrip().startswith("|") for line in lines]
    starts = sum(1 for i, flag in enumerate(is_table) if flag and (i == 0 or not is_table[i - 1]))
    assert starts == 1, f"expected one table in the section, found {starts}"
    table = [line for line, flag in zip(lines, is_table, strict=True) if flag]
    assert cells(table[0]) == header
    assert all(re.fullmatch(r":?-+:?", cell) for cell in cells(table[1])), table[1]
    rows = []
    for line in table[2:]:
        code, name, flag, *meaning = cells(line)
        assert "|".join(meaning).strip(), f"row without a meaning: {line}"
        assert flag in FLAGS, f"{header[2]} must be yes or no: {line}"
        rows.append(Row(int(code.strip("`")), name.strip("`"), FLAGS[flag]))
    return rows


def doc_rows(heading: str, header: list[str]) -> list[Row]:
    return parse_table(section(PROTOCOL_DOC.read_text(encoding="utf-8"), heading), header)


def close_rows_in_code() -> set[Row]:
    return {Row(int(c), c.name.lower(), info.reconnect) for c, info in CLOSE_TABLE.items()}


def error_rows_in_code() -> set[Row]:
    return {Row(int(c), c.name.lower(), info.retry) for c, info in ERROR_TABLE.items()}


# Reading client-js/src/codes.ts


def ts_const_object(source: str, name: str) -> dict[str, int]:
    match = re.search(
        rf"export const {name} = \{{(?P<body>[^}}]*)\}} as const;", source, re.MULTILINE
    )
    assert match is not None, f"no `export const {name} = {{...}} as const;` in codes.ts"
    entries = re.findall(r"^\s*([A-Z][A-Z0-9_]*):\s*(\d+),?\s*$", match["body"], re.MULTILINE)
    body_lines = [line for line in match["body"].splitlines() if line.strip()]
    assert len(entries) == len(body_lines), f"{name} has lines that are not NAME: number"
    members = dict(entries)
    assert len(members) == len(entries), f"{name} repeats a key"
    return {key: int(value) for key, value in members.items()}


def ts_set(source: str, name: str, prefix: str, values: dict[str, int]) -> set[int]:
    match = re.search(
        rf"export const {name}: ReadonlySet<number> = new Set<number>\(\[(?P<body>[^\]]*)\]\);",
        source,
    )
    assert match is not None, f"no `export const {name}: ReadonlySet<number>` in codes.ts"
    members = re.findall(rf"{prefix}\.([A-Z][A-Z0-9_]*)", match["body"])
    assert len(members) == len(set(members)), f"{name} repeats a member"
    return {values[member] for member in members}


@pytest.fixture(scope="module")
def codes_ts() -> str:
    return CODES_TS.read_text(encoding="utf-8")


# The doc


def test_the_close_code_table_has_every_close_code_and_nothing_else() -> None:
    rows = doc_rows("## Close codes", CLOSE_HEADER)
    assert len(rows) == len({row.code for row in rows}), "a close code appears twice"
    assert set(rows) == close_rows_in_code()


def test_the_error_code_table_has_every_error_code_and_nothing_else() -> None:
    rows = doc_rows("## Error codes", ERROR_HEADER)
    assert len(rows) == len({row.code for row in rows}), "an error code appears twice"
    assert set(rows) == error_rows_in_code()


def test_the_code_tables_cover_every_enum_member() -> None:
    assert set(CLOSE_TABLE) == set(CloseCode)
    assert set(ERROR_TABLE) == set(ErrorCode)


def test_the_close_code_table_is_in_code_order() -> None:
    codes = [row.code for row in doc_rows("## Close codes", CLOSE_HEADER)]
    assert codes == sorted(codes)


def test_the_error_code_table_is_in_code_order() -> None:
    codes = [row.code for row in doc_rows("## Error codes", ERROR_HEADER)]
    assert codes == sorted(codes)


def test_a_missing_row_is_noticed() -> None:
    markdown = PROTOCOL_DOC.read_text(encoding="utf-8")
    edited = "\n".join(line for line in markdown.splitlines() if not line.startswith("| 4001 |"))
    assert edited != markdown
    parsed = set(parse_table(section(edited, "## Close codes"), CLOSE_HEADER))
    assert parsed != close_rows_in_code()


def test_an_extra_row_is_noticed() -> None:
    markdown = PROTOCOL_DOC.read_text(encoding="utf-8")
    edited = markdown.replace(
        "| 4500 | `unauthorized` |", "| 4501 | `banned` | no | banned |\n| 4500 | `unauthorized` |"
    )
    assert edited != markdown
    parsed = set(parse_table(section(edited, "## Close codes"), CLOSE_HEADER))
    assert parsed != close_rows_in_code()


def test_a_wrong_flag_is_noticed() -> None:
    markdown = PROTOCOL_DOC.read_text(encoding="utf-8")
    edited = markdown.replace(
        "| 429 | `too_many_requests` | yes |", "| 429 | `too_many_requests` | no |"
    )
    assert edited != markdown
    parsed = set(parse_table(section(edited, "## Error codes"), ERROR_HEADER))
    assert parsed != error_rows_in_code()


# The TypeScript mirror


def test_codes_ts_has_every_close_code_and_nothing_else(codes_ts: str) -> None:
    assert ts_const_object(codes_ts, "CloseCode") == {c.name: int(c) for c in CloseCode}


def test_codes_ts_has_every_error_code_and_nothing_else(codes_ts: str) -> None:
    assert ts_const_object(codes_ts, "ErrorCode") == {c.name: int(c) for c in ErrorCode}


def test_codes_ts_reconnects_after_the_same_close_codes(codes_ts: str) -> None:
    values = ts_const_object(codes_ts, "CloseCode")
    expected = {int(c) for c, info in CLOSE_TABLE.items() if info.reconnect}
    assert ts_set(codes_ts, "RECONNECT", "CloseCode", values) == expected


def test_codes_ts_retries_the_same_error_codes(codes_ts: str) -> None:
    values = ts_const_object(codes_ts, "ErrorCode")
    expected = {int(c) for c, info in ERROR_TABLE.items() if info.retry}
    assert ts_set(codes_ts, "RETRY", "ErrorCode", values) == expected


def test_codes_ts_stops_for_unknown_codes_in_the_same_range(codes_ts: str) -> None:
    body = re.search(
        r"export function shouldReconnect\(code: number\): boolean \{(?P<body>.*?)\n\}",
        codes_ts,
        re.DOTALL,
    )
    assert body is not None, "no shouldReconnect(code: number): boolean in codes.ts"
    assert "RECONNECT.has(code)" in body["body"]
    assert "!(code >= 4500 && code <= 4999)" in body["body"]
