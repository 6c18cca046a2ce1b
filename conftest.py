"""Root pytest setup shared by the unit tests (tests/) and nbval over the chapters (chapters/).

nbval compares every stored output of a chapter with a fresh execution, except the values the
chapters *glue* into their prose (ift_lib.prose.glue, myst-nb's ``application/papermill.record/``
outputs): those are measurements (times, errors, accuracies) that the same cell bounds with an
``assert`` before it glues them, so the assert is their check; their last digits, like a time,
differ from one run to the next and are not part of the comparison.
"""
_GLUE_KEYS = tuple(f"application/papermill.record/{mime}" for mime in (
    "text/plain", "text/html", "text/markdown", "text/latex", "image/png", "image/svg+xml"))


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        parent = getattr(item, "parent", None)
        skip = getattr(parent, "skip_compare", None)
        if skip is not None and _GLUE_KEYS[0] not in skip:
            parent.skip_compare = tuple(skip) + _GLUE_KEYS
