"""The Q&A domain knows nothing of HTTP: no module of qasite/domain imports fastapi, starlette
or the site's API and web layers (their errors and schemas included), directly or lazily."""

from __future__ import annotations

import ast
from pathlib import Path

import qasite.domain

DOMAIN = Path(qasite.domain.__file__).parent
FORBIDDEN = ("fastapi", "starlette", "qasite.api", "qasite.web", "qasite.main")


def imported_modules(source: str) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in *source* names, at any depth."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def is_forbidden(module: str) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in FORBIDDEN)


def test_no_domain_module_imports_http_or_the_api() -> None:
    offenders = {
        f"{path.name} imports {module}"
        for path in sorted(DOMAIN.glob("*.py"))
        for module in imported_modules(path.read_text())
        if is_forbidden(module)
    }
    assert not offenders, sorted(offenders)


def test_the_check_sees_a_forbidden_import_inside_a_function() -> None:
    source = "def f():\n    from qasite.api.errors import NotFound\n"
    assert any(is_forbidden(module) for module in imported_modules(source))
    assert not any(is_forbidden(m) for m in imported_modules("from qasite.domain import events"))
