"""Shared pytest setup: CPU only, float64, and the ``--browser`` switch.

``pytest`` alone runs the unit tests of ift_lib (and the checks of the committed notebooks): no
Chromium, no built book needed. ``pytest --browser`` adds tests/browser/, the real-browser tests of
the built HTML (``bash scripts/build_book.sh`` first); ``bash scripts/run_tests.sh`` passes it.
Without the switch the browser tests are not collected, and the report header says so.
"""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (must come after JAX_PLATFORMS is set)

jax.config.update("jax_enable_x64", True)


def pytest_addoption(parser):
    parser.addoption("--browser", action="store_true", default=False,
                     help="also run tests/browser: Chromium against the built book "
                          "(build it first: bash scripts/build_book.sh)")


def pytest_ignore_collect(collection_path, config):
    if not config.getoption("--browser", default=False) and "browser" in collection_path.parts \
            and collection_path.is_relative_to(os.path.dirname(__file__)):
        return True
    return None


def pytest_report_header(config):
    if config.getoption("--browser", default=False):
        return "browser tests: ON (tests/browser, Chromium, the built book in _build/html)"
    return "browser tests: off (not collected; pass --browser to run them against the built book)"
