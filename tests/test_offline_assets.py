"""The book's offline-assets Sphinx extension (_ext/offline_assets.py) fails the build clearly when
the npm packages the pages need are missing or are not the pinned versions, and copies them."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import anywidget
import pytest
from sphinx.errors import ExtensionError

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("offline_assets", REPO / "_ext" / "offline_assets.py")
offline_assets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(offline_assets)

PINNED = json.loads((REPO / "vendor" / "package.json").read_text())["dependencies"]


def fake_book(tmp_path, installed: dict[str, str], files=()):
    """A book folder with vendor/package.json as the repository's and the given npm versions."""
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "package.json").write_text(json.dumps({"dependencies": PINNED}))
    for package, version in installed.items():
        folder = tmp_path / "vendor" / "node_modules" / package
        folder.mkdir(parents=True)
        (folder / "package.json").write_text(json.dumps({"version": version}))
    for name in files:
        path = tmp_path / "vendor" / "node_modules" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("// " + name)
    config = SimpleNamespace(mathjax_path=None, nb_ipywidgets_js=None)
    return SimpleNamespace(srcdir=str(tmp_path), outdir=str(tmp_path / "html"),
                           builder=SimpleNamespace(format="html")), config


def test_missing_packages_say_how_to_install(tmp_path):
    app, config = fake_book(tmp_path, {})
    with pytest.raises(ExtensionError, match=r"npm ci --prefix vendor"):
        offline_assets._configure(app, config)


def test_wrong_version_is_named(tmp_path):
    app, config = fake_book(tmp_path, {**PINNED, "mathjax": "2.7.9"})
    with pytest.raises(ExtensionError, match=r"mathjax 2\.7\.9 is installed.*wants 3\."):
        offline_assets._configure(app, config)


def test_pinned_anywidget_matches_the_python_package():
    assert PINNED["anywidget"].split(".")[:2] == anywidget.__version__.split(".")[:2]


def test_configures_local_paths_and_copies_the_files(tmp_path):
    files = ["requirejs/require.js", "requirejs/LICENSE",
             "@jupyter-widgets/html-manager/dist/embed-amd.js",
             "@jupyter-widgets/html-manager/dist/330.embed.js",
             *[f"@jupyter-widgets/html-manager/dist/0123456789abcdef0123.{ext}"
               for ext in ("woff", "woff2", "ttf", "eot", "svg")],
             "anywidget/dist/index.js", "mathjax/es5/tex-mml-chtml.js"]
    files += [f"mathjax/es5/{d}/x.js" for d in ("input", "output", "ui", "a11y", "adaptors", "sre")]
    app, config = fake_book(tmp_path, PINNED, files)
    offline_assets._configure(app, config)
    assert config.mathjax_path == "vendor/mathjax/tex-mml-chtml.js"
    assert list(config.nb_ipywidgets_js) == ["vendor/require.js", "vendor/require-config.js",
                                             "vendor/html-manager/embed-amd.js"]
    offline_assets._copy(app, None)
    out = tmp_path / "html" / "_static" / "vendor"
    for name in ["require.js", "require-config.js", "LICENSE.requirejs", "html-manager/embed-amd.js",
                 "html-manager/330.embed.js", "anywidget/index.js", "mathjax/tex-mml-chtml.js",
                 "mathjax/sre/x.js"]:
        assert (out / name).is_file(), name
    assert "anywidget/index" in (out / "require-config.js").read_text()


def test_nothing_copied_after_a_failed_build(tmp_path):
    app, _ = fake_book(tmp_path, PINNED)
    offline_assets._copy(app, RuntimeError("build failed"))
    assert not (tmp_path / "html").exists()
