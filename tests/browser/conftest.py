"""Browser tests of the built book: real Chromium (Debian's), no internet.

The book must be built first (``jupyter-book build .``); these tests serve ``_build/html`` (or
``$IFT_BOOK_HTML``) on 127.0.0.1 and open its pages in headless Chromium through Playwright.
The pages load require.js, the widget html-manager and anywidget from CDNs; here every request
that is not to the local server is intercepted: those three are answered from the npm copies in
``tests/browser/node_modules`` (``npm ci --prefix tests/browser``), everything else is aborted.
The fixture ``page_without_cdn`` aborts the CDN files too, as for a reader who cannot reach them.

A test fails on any page error or console error except the known harmless noise listed below.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
NODE_MODULES = HERE / "node_modules"
ARTIFACTS = HERE / "artifacts"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]

#: CDN URL path (regex, searched) -> function of the match giving the local npm file.
CDN_FILES = [
    (re.compile(r"/require\.js/2\.3\.4/require(?:\.min)?\.js$"),
     lambda m: NODE_MODULES / "requirejs" / "require.js"),
    (re.compile(r"/@jupyter-widgets/html-manager@1\.0\.6/dist/([\w.-]+)$"),
     lambda m: NODE_MODULES / "@jupyter-widgets" / "html-manager" / "dist" / m.group(1)),
    (re.compile(r"/anywidget@[^/]+/dist/index\.js$"),
     lambda m: NODE_MODULES / "anywidget" / "dist" / "index.js"),
]

#: Known harmless noise of the built pages.
ALLOWED_PAGE_ERRORS = [
    re.compile(r"THEBE_JS_URL.*already been declared"),   # sphinx-thebe declares it twice
]
ALLOWED_CONSOLE_ERRORS = [   # (message regex, regex on the URL the message is about, or None)
    (re.compile(r"Got invalid theme mode"), None),        # pydata-sphinx-theme, first visit
    # The html-manager asks for its icon fonts relative to the page (under chapters/@jupyter-widgets/,
    # with or without html-manager/dist/, depending on load order): 404 on any static host.
    (re.compile(r"status of 404"),
     re.compile(r"/@jupyter-widgets/(?:[\w.-]+/)*[0-9a-f]{16,}\.(?:woff2?|ttf|eot|svg)$")),
    # require.js first looks for the anywidget module next to the page, then falls back to the CDN.
    (re.compile(r"status of 404"), re.compile(r"/anywidget\.js$")),
]


def book_html_dir() -> Path:
    return Path(os.environ.get("IFT_BOOK_HTML", REPO / "_build" / "html")).resolve()


@pytest.fixture(scope="session")
def book_dir() -> Path:
    directory = book_html_dir()
    if not (directory / "index.html").is_file():
        pytest.fail(f"No built book at {directory} (index.html missing). Build the book first: "
                    f"`jupyter-book build {REPO}` (or point IFT_BOOK_HTML at a built _build/html).",
                    pytrace=False)
    return directory


@pytest.fixture(scope="session")
def base_url(book_dir):
    """A static HTTP server over the built book, on a free port of 127.0.0.1."""
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(book_dir)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def chromium():
    """Headless Chromium (Debian's), for any page."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def browser(chromium):
    """Chromium for the built book's pages, which need the npm copies of the widget JavaScript."""
    missing = [str(p) for p in (NODE_MODULES / "requirejs" / "require.js",
                                NODE_MODULES / "@jupyter-widgets" / "html-manager" / "dist" / "embed-amd.js",
                                NODE_MODULES / "anywidget" / "dist" / "index.js") if not p.is_file()]
    if missing:
        pytest.fail(f"Missing npm copies of the widget JavaScript {missing}: run "
                    f"`npm ci --prefix tests/browser` first.", pytrace=False)
    return chromium


class PageMonitor:
    """Records page errors and console errors; `unexpected()` lists those not known as noise."""

    def __init__(self):
        self.page_errors: list[str] = []
        self.console_errors: list[tuple[str, str]] = []
        self.blocked: set[str] = set()    # external URLs aborted on purpose
        self.served: list[str] = []       # external URLs answered from node_modules

    def unexpected(self) -> list[str]:
        out = [f"pageerror: {e}" for e in self.page_errors
               if not any(p.search(e) for p in ALLOWED_PAGE_ERRORS)]
        for text, url in self.console_errors:
            if url in self.blocked and "net::ERR_FAILED" in text:
                continue   # a request we aborted on purpose
            if any(t.search(text) and (u is None or u.search(url)) for t, u in ALLOWED_CONSOLE_ERRORS):
                continue
            out.append(f"console error: {text} [{url}]")
        return out


def _router(base: str, monitor: PageMonitor, serve_cdn: bool):
    def handle(route):
        request = route.request
        url = request.url
        if url.startswith(base):
            if request.resource_type == "document":   # drop SRI: npm require.js != cdnjs's bytes
                response = route.fetch()
                body = re.sub(r'\s+integrity="[^"]*"', "", response.text())
                return route.fulfill(response=response, body=body)
            return route.continue_()
        if serve_cdn:
            path = unquote(urlparse(url).path)
            for pattern, local in CDN_FILES:
                m = pattern.search(path)
                if m and local(m).is_file():
                    monitor.served.append(url)
                    content_type = "text/javascript" if path.endswith(".js") else None
                    return route.fulfill(path=str(local(m)), content_type=content_type,
                                         headers={"Access-Control-Allow-Origin": "*"})
        monitor.blocked.add(url)
        return route.abort()
    return handle


def _open_page(browser, base_url: str, serve_cdn: bool):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    monitor = PageMonitor()
    page.on("pageerror", lambda err: monitor.page_errors.append(str(err)))
    page.on("console", lambda msg: msg.type == "error" and monitor.console_errors.append(
        (msg.text, msg.location.get("url", ""))))
    page.route("**/*", _router(base_url, monitor, serve_cdn))
    page.monitor = monitor   # tests may look at what was served / blocked
    return context, page, monitor


def _check_and_close(context, monitor: PageMonitor):
    errors = monitor.unexpected()
    context.close()
    if errors:
        pytest.fail("Unexpected browser errors:\n  " + "\n  ".join(errors), pytrace=False)


@pytest.fixture
def page(browser, base_url):
    """A fresh Chromium page; the CDN files are served from node_modules, all else external aborted."""
    context, page, monitor = _open_page(browser, base_url, serve_cdn=True)
    yield page
    _check_and_close(context, monitor)


@pytest.fixture
def page_without_cdn(browser, base_url):
    """A fresh Chromium page with every external request aborted (CDNs unreachable)."""
    context, page, monitor = _open_page(browser, base_url, serve_cdn=False)
    yield page
    _check_and_close(context, monitor)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
