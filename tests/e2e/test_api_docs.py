"""``/docs`` in headless Chromium on the real system (issue 11, item 11): Swagger UI renders
the API from files of the site's own origin, under its CSP, with no request to any other
origin and no CSP violation. Every request elsewhere is answered in the browser (nothing
leaves the machine) and recorded."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import BrowserContext, Route, expect

from tests.e2e.system import LiveSystem

expect.set_options(timeout=20_000)


def test_docs_render_from_this_origin_only_without_csp_violations(
    system: LiveSystem, new_context: Callable[[], BrowserContext]
) -> None:
    origin = system.qa.url
    elsewhere: list[str] = []

    def outside(route: Route) -> None:
        elsewhere.append(route.request.url)
        route.fulfill(status=204, body="")

    context = new_context()
    context.route(lambda url: not url.startswith(origin + "/"), outside)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    answer = page.goto(f"{origin}/docs")
    assert answer is not None
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Herald Q&A core")
    expect(page.locator(".opblock-tag-section").first).to_be_visible()
    assert page.locator(".opblock").count() > 10  # every operation of the schema is listed
    assert elsewhere == []
    assert [text for text in console if "Content Security Policy" in text] == []
    assert errors == []
