"""A reader running the book locally: JupyterLab (from requirements.txt) on 127.0.0.1, Chapter 1
opened in Chromium, every cell run by a live kernel, the circle widget dragged.

The chapter is copied to a temporary directory first, so JupyterLab's autosave never touches the
committed notebook; JupyterLab's settings, workspaces and runtime files go there too. Nothing
leaves 127.0.0.1: the page may request only the local server.
"""
from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from tests.browser import helpers
from tests.browser.conftest import REPO

TOKEN = "ift-book-browser-test"
CHAPTER = "01_unit_circle.ipynb"
RUN_TIMEOUT_MS = 600_000          # Chapter 1 top to bottom on a loaded 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """JupyterLab serving a copy of Chapter 1; yields its base URL."""
    root = tmp_path_factory.mktemp("jupyterlab")
    shutil.copy(REPO / "chapters" / CHAPTER, root / CHAPTER)
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", JUPYTER_CONFIG_DIR=str(root / ".config"),
               JUPYTER_RUNTIME_DIR=str(root / ".runtime"))
    log = open(root / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
         f"--LabApp.workspaces_dir={root / '.workspaces'}",
         f"--LabApp.user_settings_dir={root / '.settings'}",
         "--LabApp.expose_app_in_browser=True",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail("JupyterLab did not start:\n" + (root / "jupyterlab.log").read_text()[-3000:],
                        pytrace=False)
        time.sleep(0.5)
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def lab_page(chromium, jupyterlab):
    """A Chromium page that may reach the JupyterLab server and nothing else."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    outside: list[str] = []

    def route(r):
        if r.request.url.startswith(jupyterlab):
            return r.continue_()
        outside.append(r.request.url)
        return r.abort()

    page.route("**/*", route)
    yield page
    context.close()
    assert not [u for u in outside if not u.startswith(("data:", "blob:"))], outside


def test_chapter_1_runs_in_jupyterlab_and_the_widget_drags(lab_page, jupyterlab, artifacts_dir):
    page = lab_page
    page.goto(f"{jupyterlab}/lab/tree/{CHAPTER}?token={TOKEN}")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.sessionContext", timeout=120_000)
    # wait for the kernel, then run every cell (the stored outputs are replaced one by one)
    page.wait_for_function("""() => {
        const ctx = window.jupyterapp.shell.currentWidget.sessionContext;
        return ctx.session && ctx.session.kernel && ctx.session.kernel.status === 'idle';
    }""", timeout=120_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

    # the whole chapter runs, top to bottom, without an error (its asserts are cells too): a fresh
    # kernel numbers the code cells 1..N, and run-all stops at the first error
    page.wait_for_function("""() => {
        const cells = window.jupyterapp.shell.currentWidget.content.widgets
            .filter(c => c.model.type === 'code' && c.model.sharedModel.getSource().trim());
        return cells.every((c, i) => c.model.executionCount === i + 1);
    }""", timeout=RUN_TIMEOUT_MS)
    stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert stderr.count() == 0, stderr.first.inner_text()

    # the live widget (rendered by the kernel's comm, not from stored state): drag the point
    widget = page.locator(".jp-OutputArea .ift-circle-widget")
    widget.wait_for(state="visible", timeout=60_000)
    news = page.get_by_role("button", name="No")    # JupyterLab's "official Jupyter news?" toast
    if news.count():
        news.first.click()
    # bring the widget to the middle of the notebook's own scroll area, and keep it there
    for _ in range(20):
        widget.evaluate("el => el.scrollIntoView({block: 'center'})")
        page.wait_for_timeout(250)
        box = widget.bounding_box()
        if box and box["y"] > 0 and box["y"] + box["height"] < page.viewport_size["height"]:
            break
    s0 = helpers.dataset(widget)
    assert float(s0["theta"]) == pytest.approx(0.5, abs=1e-12)
    try:
        helpers.drag_circle_handle_to(page, widget, 135.0)
        page.wait_for_function("() => document.querySelector('.jp-OutputArea .ift-circle-widget')"
                               ".dataset.theta !== '" + s0["theta"] + "'", timeout=30_000)
    finally:
        page.screenshot(path=str(artifacts_dir / "jupyterlab_page.png"))
    s1 = helpers.dataset(widget)
    theta, x = float(s1["theta"]), float(s1["x"])
    assert theta == pytest.approx(math.cos(math.radians(135.0)), abs=0.02)
    assert float(s1["dxdtheta"]) == pytest.approx(-theta / x, rel=1e-9)
    helpers.screenshot(widget, artifacts_dir / "jupyterlab_circle_dragged.png")
