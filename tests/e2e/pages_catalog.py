"""Every page of the site, in one list: the width, accessibility and screenshot tests
(test_pages_width_a11y.py) visit each entry. A new page adds one line here.

A path may name the fixtures' data: ``{question}`` (a question with a long code line,
answers and comments), ``{tag}``, ``{user}`` (the asker's id), ``{reset_token}``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SitePage:
    name: str
    """The screenshot's name: docs/screenshots/page-<name>-<width>.png."""
    path: str
    signed_in: bool = False
    ready: str = "main"
    """A selector that is visible once the page has loaded its state."""


PAGES: tuple[SitePage, ...] = (
    SitePage("questions", "/", ready=".question-summary"),
    SitePage("question", "/questions/{question}", ready=".answer"),
    SitePage("question-signed-in", "/questions/{question}", signed_in=True, ready=".answer"),
    SitePage("inbox", "/inbox", signed_in=True, ready="#inbox-items .inbox-item"),
    SitePage("login", "/login"),
    SitePage("signup", "/signup"),
    SitePage("verify", "/verify?email=new%40example.com", ready="#resend-form"),
    SitePage("forgot", "/forgot"),
    SitePage("reset", "/reset?token={reset_token}", ready="#reset-form"),
    SitePage("not-found", "/no/such/page"),
    # P1 (issue 13, items 1-2): finding, tags and people.
    SitePage("search", "/search?q=socket", ready=".question-summary"),
    SitePage("tag", "/tags/{tag}", ready=".question-summary"),
    SitePage("user", "/users/{user}", ready="#profile-questions .question-summary"),
    # P2 (issue 13, item 3): asking.
    SitePage("ask", "/questions/ask", signed_in=True, ready="#ask-page-form"),
)
