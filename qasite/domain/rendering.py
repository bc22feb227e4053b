"""Markdown to safe HTML: markdown-it-py (CommonMark, raw HTML off) then nh3 (an allowlist
sanitizer), so neither a markdown trick nor a sanitizer gap alone lets script through.

:func:`render_markdown` is CPU-bound: a hostile 30,000-character post takes about 0.5 s, which
on the event loop stalled every request of the worker (issue 11, item 14). Writers therefore
render through a :class:`Renderer`, in its own few threads::

    renderer = Renderer(max_threads=2)      # at start-up
    body = await renderer.render(source)    # a Rendered: what the domain stores
    renderer.close()                        # at shutdown
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import nh3
from markdown_it import MarkdownIt

_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")

_TAGS = {
    "a",
    "blockquote",
    "br",
    "code",
    "del",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "img",
    "li",
    "ol",
    "p",
    "pre",
    "strong",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "ul",
}
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "th": {"style"},
    "td": {"style"},
}


def render_markdown(source: str) -> str:
    """Sanitized HTML for *source* (links get ``rel="nofollow noopener"``)."""
    html = _MARKDOWN.render(source)
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="nofollow noopener",
        filter_style_properties={"text-align"},
    )


@dataclass(frozen=True, slots=True)
class Rendered:
    """A post's Markdown with the HTML :func:`render_markdown` made of it."""

    markdown: str
    html: str


class Renderer:
    """Renders off the event loop, in at most *max_threads* threads of its own: a flood of
    hostile posts queues there (each request bounded by the API's body limit) and takes at
    most that many cores, while the loop keeps answering."""

    def __init__(self, max_threads: int) -> None:
        self._executor = ThreadPoolExecutor(max_threads, thread_name_prefix="markdown")

    async def render(self, source: str) -> Rendered:
        loop = asyncio.get_running_loop()
        html = await loop.run_in_executor(self._executor, render_markdown, source)
        return Rendered(source, html)

    def close(self) -> None:
        """Stop the threads once the renders under way end; queued ones are cancelled."""
        self._executor.shutdown(wait=False, cancel_futures=True)
