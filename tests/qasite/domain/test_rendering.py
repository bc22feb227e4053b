"""Markdown rendering (qasite/domain/rendering.py)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from qasite.domain.rendering import render_markdown


class _Elements(HTMLParser):
    """Every element and its attributes (escaped text is text, not markup)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.found


def test_markdown_becomes_html() -> None:
    html = render_markdown("# Title\n\n*em* **strong** `code`\n\n```\nblock\n```\n\n- item")
    assert "<h1>Title</h1>" in html
    assert "<em>em</em> <strong>strong</strong> <code>code</code>" in html
    assert "<pre><code>block\n</code></pre>" in html
    assert "<li>item</li>" in html


@pytest.mark.parametrize(
    "source",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "[click](javascript:alert(1))",
        "![x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        '<a href="https://x" onclick="alert(1)">x</a>',
        "<iframe src=https://evil></iframe>",
    ],
)
def test_no_script_survives_as_markup(source: str) -> None:
    for tag, attrs in elements(render_markdown(source)):
        assert tag not in ("script", "iframe", "object", "embed", "style")
        assert not any(name.startswith("on") for name in attrs)
        for name in ("href", "src"):
            assert not (attrs.get(name) or "").lower().startswith("javascript"), attrs


def test_links_are_nofollow() -> None:
    [(_tag, attrs)] = [
        e for e in elements(render_markdown("[x](https://example.org)")) if e[0] == "a"
    ]
    assert attrs == {"href": "https://example.org", "rel": "nofollow noopener"}
