"""A headless Debian Chromium driven by Playwright (no downloaded browser builds), a recorder of what
the page fetched, and a second loopback "site" for cross-site pages.

Screenshots go to a temporary directory; with UPDATE_SCREENSHOTS=1 they replace those in docs/img.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Response, expect, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
TIMEOUT_MS = 20_000  # every wait in these tests is bounded by this

expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not shutil.which(CHROMIUM):
        why = f"{CHROMIUM} not installed (apt-get install chromium; `make print-apt-packages`)"
        if os.environ.get("CI"):  # CI installs it: its absence there is a failure, not a skip
            pytest.fail(why)
        pytest.skip(why)
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One Chromium per module (Playwright gives it a fresh profile); every test opens its own
    context: fresh cookies and storage."""
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=TIMEOUT_MS)
    yield b
    b.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        return DOCS_IMG
    return tmp_path_factory.mktemp("screenshots")


@dataclass
class Seen:
    status: int
    method: str
    path: str  # with the query


@dataclass
class Visit:
    """A page in its own browser context, and every response it got from `base`."""

    context: BrowserContext
    page: Page
    base: str
    seen: list[Seen] = field(default_factory=list)

    def _on_response(self, response: Response) -> None:
        if response.url.startswith(self.base):
            self.seen.append(Seen(response.status, response.request.method, response.url[len(self.base) :]))

    def goto(self, fragment: str) -> Response | None:
        return self.page.goto(self.base + fragment, wait_until="load")

    def refused(self) -> list[Seen]:
        return [s for s in self.seen if s.status in (401, 403)]

    def requests_to(self, prefix: str) -> int:
        return sum(1 for s in self.seen if s.path.startswith(prefix))

    def no_token_prompt(self) -> None:
        """Ray's UI asks for its cluster token in a dialog; through the proxy it never should."""
        expect(self.page.get_by_text("Authentication Token Required")).to_have_count(0)
        expect(self.page.get_by_placeholder("Enter your authentication token")).to_have_count(0)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: Browser) -> Iterator[Any]:
    """visit(base_url, **context_options) -> Visit; every context is closed after the test."""
    opened: list[Visit] = []

    def _open(base: str, **options: Any) -> Visit:
        context = browser.new_context(viewport={"width": 1400, "height": 900}, **options)
        context.set_default_timeout(TIMEOUT_MS)
        v = Visit(context, context.new_page(), base.rstrip("/"))
        v.page.on("response", v._on_response)
        opened.append(v)
        return v

    yield _open
    for v in opened:
        v.close()


class OtherSite:
    """Static pages on another loopback port: `http://localhost:<port>` is cross-site to the
    dashboard at `http://127.0.0.1:<port>`, and `http://127.0.0.1:<port>` is same-site but another
    origin. A thread of this process serves it; `close()` stops it."""

    def __init__(self, pages: dict[str, str], root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        for name, text in pages.items():
            (root / name).write_text(text)
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="other-site", daemon=True)
        self.thread.start()

    def url(self, host: str, page: str) -> str:
        return f"http://{host}:{self.port}/{page}"

    def __enter__(self) -> OtherSite:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass
