"""Browser tests of the built book: real Chromium (Debian's), no network at all.

The book must be built first (``bash scripts/build_book.sh``); these tests serve ``_build/html``
(or ``$IFT_BOOK_HTML``) on 127.0.0.1 and open its pages in headless Chromium through Playwright.
The book serves its own JavaScript (require.js, the widget manager, anywidget, MathJax: copied
into ``_static/vendor/`` at build time by ``_ext/offline_assets.py``), so every request that leaves
the local server is aborted, and a page that even asks for one fails its test. Other fixtures
take the widget JavaScript away (``page_without_widget_js``), turn JavaScript off
(``page_without_js``) or open the pages as files (``file_page``, the zipped-book reader).

A test fails on any page error or console error except the known harmless noise listed below.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ARTIFACTS = HERE / "artifacts"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]

#: The widget JavaScript under _static/vendor/ (what ``page_without_widget_js`` takes away).
WIDGET_JS = re.compile(r"/_static/vendor/(?:require(?:-config)?\.js|html-manager/|anywidget/)")
#: What a page needs from _static/vendor/ (the build copies it there).
VENDOR_FILES = ["require.js", "require-config.js", "html-manager/embed-amd.js", "anywidget/index.js",
                "mathjax/tex-mml-chtml.js"]

#: Known harmless noise of the built pages.
ALLOWED_PAGE_ERRORS = [
    re.compile(r"THEBE_JS_URL.*already been declared"),   # sphinx-thebe declares it twice
]
ALLOWED_CONSOLE_ERRORS = [   # (message regex, regex on the URL the message is about, or None)
    (re.compile(r"Got invalid theme mode"), None),        # pydata-sphinx-theme, first visit
]


def book_html_dir() -> Path:
    return Path(os.environ.get("IFT_BOOK_HTML", REPO / "_build" / "html")).resolve()


@pytest.fixture(scope="session")
def book_dir() -> Path:
    directory = book_html_dir()
    if not (directory / "index.html").is_file():
        pytest.fail(f"No built book at {directory} (index.html missing). Build the book first: "
                    f"`bash scripts/build_book.sh` (or point IFT_BOOK_HTML at a built _build/html).",
                    pytrace=False)
    missing = [f for f in VENDOR_FILES if not (directory / "_static" / "vendor" / f).is_file()]
    if missing:
        pytest.fail(f"The built book at {directory} lacks _static/vendor/{missing}: it was built "
                    f"without _ext/offline_assets.py; rebuild it with `bash scripts/build_book.sh`.",
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


class PageMonitor:
    """Records page errors, console errors and the requests aborted; `unexpected()` lists what a
    reader would notice: errors not known as noise, and any request that tried to leave the machine."""

    def __init__(self):
        self.page_errors: list[str] = []
        self.console_errors: list[tuple[str, str]] = []
        self.external: list[str] = []        # requests to anywhere but the local book: aborted
        self.withheld: set[str] = set()      # local files a fixture takes away on purpose
        self.missing: list[str] = []         # local requests answered 4xx/5xx or not found on disk

    def unexpected(self) -> list[str]:
        out = [f"request to the network (aborted): {url}" for url in self.external]
        out += [f"local file missing: {m}" for m in self.missing]
        out += [f"pageerror: {e}" for e in self.page_errors
                if not any(p.search(e) for p in ALLOWED_PAGE_ERRORS)]
        for text, url in self.console_errors:
            if url in self.withheld or url in self.external:
                continue   # a request we aborted on purpose (already reported if external)
            if any(t.search(text) and (u is None or u.search(url)) for t, u in ALLOWED_CONSOLE_ERRORS):
                continue
            out.append(f"console error: {text} [{url}]")
        return out


def _router(local: str, monitor: PageMonitor, withhold: re.Pattern | None):
    def handle(route):
        url = route.request.url
        if not url.startswith(local):
            monitor.external.append(url)
            return route.abort()
        if withhold is not None and withhold.search(urlparse(url).path):
            monitor.withheld.add(url)
            return route.abort()
        return route.continue_()
    return handle


def _open_page(chromium, local: str, withhold: re.Pattern | None = None, javascript: bool = True):
    context = chromium.new_context(viewport={"width": 1280, "height": 900},
                                  java_script_enabled=javascript)
    page = context.new_page()
    monitor = PageMonitor()
    page.on("pageerror", lambda err: monitor.page_errors.append(str(err)))
    page.on("console", lambda msg: msg.type == "error" and monitor.console_errors.append(
        (msg.text, msg.location.get("url", ""))))
    # Every file a page asks for must be in the built book: a 404 from the server, or a failed
    # file:// request, fails the test (fonts included), unless a fixture withheld it on purpose.
    page.on("response", lambda r: r.status >= 400 and r.url.startswith(local)
            and monitor.missing.append(f"{r.status} {r.url}"))
    page.on("requestfailed", lambda r: r.url.startswith("file:") and r.url not in monitor.withheld
            and monitor.missing.append(f"{r.failure} {r.url}"))
    page.route("**/*", _router(local, monitor, withhold))
    page.monitor = monitor   # tests may look at what was withheld
    return context, page, monitor


def _check_and_close(context, monitor: PageMonitor):
    errors = monitor.unexpected()
    context.close()
    if errors:
        pytest.fail("Unexpected browser errors:\n  " + "\n  ".join(errors), pytrace=False)


@pytest.fixture
def page(chromium, base_url):
    """A fresh Chromium page on the local server; any request elsewhere is aborted and fails the test."""
    context, page, monitor = _open_page(chromium, base_url)
    yield page
    _check_and_close(context, monitor)


@pytest.fixture
def page_without_widget_js(chromium, base_url):
    """As ``page``, but the widget JavaScript in _static/vendor/ fails to load (a host that dropped it)."""
    context, page, monitor = _open_page(chromium, base_url, withhold=WIDGET_JS)
    yield page
    _check_and_close(context, monitor)


@pytest.fixture
def page_without_js(chromium, base_url):
    """As ``page``, with JavaScript turned off in the browser."""
    context, page, monitor = _open_page(chromium, base_url, javascript=False)
    yield page
    _check_and_close(context, monitor)


@pytest.fixture
def file_page(chromium, book_dir):
    """A page for the book opened from disk (file://, no server: the zipped-book reader); any
    request that is not a file of the book is aborted and fails the test."""
    context, page, monitor = _open_page(chromium, book_dir.as_uri() + "/")
    yield page
    _check_and_close(context, monitor)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
