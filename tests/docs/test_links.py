"""Every link and every repository path in the Markdown docs points at something that exists.

Checked, outside fenced code blocks:
- relative links ``[text](target)`` and images ``![alt](target)``: the file or folder exists
  (relative to the document), and a ``#anchor`` into a Markdown file names one of its headings
  (GitHub's heading ids);
- repository paths in backticks, such as ``socketsrv/hub.py`` or ``docs/pages.md``: a span
  without spaces that holds a ``/`` and starts with an entry of the repository's top level (or
  of the document's own folder, as ``src/codes.ts`` in client-js/README.md) must exist, a glob
  must match something;
- bare file names in backticks, such as ``relay.py``: some file of the repository has the name;
- dotted names of our packages in backticks, such as ``socketsrv.settings.Settings`` or the
  module of ``python -m qasite serve``: the module exists, and a name after it is defined there.

Paths that are examples or made at run time, not files of a fresh clone, are in
:data:`NOT_FILES` (an entry covers the paths that start with it), each with the reason; they
are recognised whether or not they exist on this machine, so the test says the same on a fresh
clone and on a machine where ``./herald run`` made ``.herald-data/``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    {
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
        ROOT / "client-js" / "README.md",
        ROOT / "monitoring" / "README.md",
        ROOT / "bench" / "README.md",
        *ROOT.glob("bench/results/*.md"),
    }
)

NOT_FILES: dict[str, str] = {
    ".herald-data/": "made by `./herald run` (SQLite file, uploads, key pair); ignored by git",
    ".venv/": "the virtual environment `./herald` makes (promtool goes to .venv/tools/)",
    "client-js/dist": "the browser client's build output; made by `npm run build`, ignored by git",
    "dist/": "client-js/README.md: the build output; made by `npm run build`, ignored by git",
    "results/raw/": "bench/README.md: raw profiles written by a benchmark run; ignored by git",
    "raw/": "bench/results/*.md: the same raw profiles, named from beside them; ignored by git",
    "herald.v1.json": "a websocket subprotocol name, not a file",
    "socketsrv/bus/": "docs/architecture.md: where the buses lived before the split (history)",
    "crud.py": "docs/decisions.md: a file of FastAPI's full-stack template, named for comparison",
}
"""Paths (and what they start with) that are not files of a fresh clone, each with the reason."""
PACKAGES = ("herald_contract", "publisher", "socketsrv", "qasite", "launch", "bench", "tests")
SKIPPED_DIRS = {
    # Not in a fresh clone: so that a file left here by a build or a run cannot hide a stale name.
    *(".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"),
    *(".hypothesis", ".herald-data", "dist", "raw", "herald.egg-info"),
}

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
FILE_NAME = re.compile(
    r"^[\w-]+(\.[\w-]+)*\.(py|pyi|ts|js|mjs|md|lua|yml|yaml|json|toml|html|css|sh)$"
)
DOTTED = re.compile(rf"(?<![\w./-])((?:{'|'.join(PACKAGES)})(?:\.\w+)+)")
MODULE_FLAG = re.compile(rf"-m\s+((?:{'|'.join(PACKAGES)})(?:\.\w+)*)")
LINE_SUFFIX = re.compile(r"(::[\w.\[\]-]+|:\d+(-\d+)?)$")
EXTERNAL = ("http://", "https://", "mailto:", "ws://", "wss://")


@dataclass(frozen=True)
class Reference:
    doc: Path
    line: int
    target: str
    kind: str  # "link", "path", "file name" or "dotted"

    def __str__(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}: {self.kind} {self.target!r}"


def prose_lines(doc: Path) -> list[tuple[int, str]]:
    """The document's lines outside fenced code blocks, numbered from 1."""
    lines: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def heading_ids(doc: Path) -> set[str]:
    """The anchors GitHub gives the headings of *doc*: lower case, punctuation dropped,
    spaces to hyphens, ``-1``, ``-2``... on repeats."""
    ids: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_lines(doc):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match is None:
            continue
        text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1))  # link -> its text
        slug = re.sub(r"[^\w\- ]", "", text.replace("`", "").lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def references(doc: Path) -> list[Reference]:
    found: list[Reference] = []
    for number, line in prose_lines(doc):
        without_code = CODE_SPAN.sub("", line)
        for match in LINK.finditer(without_code):
            target = match.group(1)
            if not target.startswith(EXTERNAL):
                found.append(Reference(doc, number, target, "link"))
        for match in CODE_SPAN.finditer(line):
            # `tests/qasite/...` stands for the folder and what is in it.
            span = LINE_SUFFIX.sub("", match.group(1).strip()).removesuffix("...")
            if looks_like_repo_path(doc, span):
                found.append(Reference(doc, number, span, "path"))
            elif FILE_NAME.match(span):
                found.append(Reference(doc, number, span, "file name"))
            for dotted in (*DOTTED.findall(span), *MODULE_FLAG.findall(span)):
                found.append(Reference(doc, number, dotted, "dotted"))
    return found


def looks_like_repo_path(doc: Path, span: str) -> bool:
    """A span without spaces, with a ``/``, whose first part is a top-level entry of the
    repository or of the document's folder (so ``text/html`` or ``/api/questions`` are not)."""
    if " " in span or "/" not in span or span.startswith(("/", "./", "../")):
        return False
    if span.startswith(EXTERNAL) or "://" in span:
        return False
    if not_a_file(span):
        return True
    first = span.split("/", 1)[0]
    return bool(first) and ((ROOT / first).exists() or (doc.parent / first).exists())


def not_a_file(target: str) -> bool:
    return any(target.startswith(entry) for entry in NOT_FILES)


def exists(base: Path, path: str) -> bool:
    if any(c in path for c in "*?["):
        return any(base.glob(path.rstrip("/")))
    return (base / path).exists()


def file_names() -> set[str]:
    """The names of the repository's files (outside virtual environments and caches)."""
    names: set[str] = set()
    pending = [ROOT]
    while pending:
        for entry in pending.pop().iterdir():
            if entry.is_dir():
                if entry.name not in SKIPPED_DIRS:
                    pending.append(entry)
            else:
                names.add(entry.name)
    return names


FILE_NAMES = file_names()


def top_level_names(module: Path) -> set[str]:
    """The names *module* defines or imports at its top level."""
    names: set[str] = set()
    for node in ast.parse(module.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def dotted_problem(dotted: str) -> str | None:
    """Whether ``a.b.c`` is a module of ours, or a module of ours and a name it defines."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:split])
        if (base / "__init__.py").is_file():
            module = base / "__init__.py"
        elif base.with_suffix(".py").is_file():
            module = base.with_suffix(".py")
        elif base.is_dir() and split == len(parts):
            return None  # a folder run as a namespace package
        else:
            continue
        if split == len(parts) or parts[split] in top_level_names(module):
            return None
        return f"{'.'.join(parts[:split])} defines no {parts[split]!r}"
    return "no such module"


def problem(ref: Reference) -> str | None:
    """What is wrong with *ref*, or None."""
    if not_a_file(ref.target):
        return None
    if ref.kind == "file name":
        return None if ref.target in FILE_NAMES else "no file of that name in the repository"
    if ref.kind == "dotted":
        return dotted_problem(ref.target)
    if ref.kind == "path":
        if exists(ROOT, ref.target) or exists(ref.doc.parent, ref.target):
            return None
        return "no such file or folder"
    path, _, anchor = ref.target.partition("#")
    target = ref.doc if path == "" else (ref.doc.parent / path).resolve()
    if not target.exists():
        return "no such file or folder"
    if anchor and target.suffix == ".md" and anchor not in heading_ids(target):
        return f"no heading with the id {anchor!r} in {target.relative_to(ROOT)}"
    return None


def test_the_docs_are_found() -> None:
    assert len(DOCS) >= 10 and all(doc.is_file() for doc in DOCS), DOCS


def test_every_allowlisted_path_is_still_mentioned_somewhere() -> None:
    """An entry of :data:`NOT_FILES` that no doc mentions any more is dropped, not kept."""
    mentioned = [ref.target for doc in DOCS for ref in references(doc)]
    unused = [entry for entry in NOT_FILES if not any(t.startswith(entry) for t in mentioned)]
    assert unused == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_every_link_and_repository_path_in_the_doc_exists(doc: Path) -> None:
    broken = [f"{ref}: {why}" for ref in references(doc) if (why := problem(ref)) is not None]
    assert broken == [], "\n".join(broken)
