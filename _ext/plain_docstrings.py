"""Sphinx extension for the API reference (api.md): ift_lib's docstrings are plain text written
for ``help()`` -- equations in ASCII, shapes like (..., n) -- not reStructuredText. Show each one
as it is, in a literal block (wrapped to the column) under the signature autodoc generates, and
leave out the "Alias for field number k" entries of named tuples."""
import os


def _reflow(lines):
    """Join the runs of unindented lines (prose) into one line each, so the browser wraps them
    to the column; indented lines (equations, tables, lists) stay as they are."""
    out = []
    for line in lines:
        prose = line.strip() and not line[0].isspace()
        if prose and out and out[-1].strip() and not out[-1][0].isspace():
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return out


def _as_literal(app, what, name, obj, options, lines):
    if not any(line.strip() for line in lines):
        return
    text = _reflow(list(lines))
    lines[:] = [".. code-block:: text", ""] + ["    " + line if line.strip() else "" for line in text] + [""]


def _skip_field_aliases(app, what, name, obj, skip, options):
    if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True
    return None


def _add_static(app, config):
    config.html_static_path.append(os.path.join(os.path.dirname(__file__), "static"))


def setup(app):
    app.connect("config-inited", _add_static)
    app.connect("autodoc-process-docstring", _as_literal)
    app.connect("autodoc-skip-member", _skip_field_aliases)
    app.add_css_file("plain_docstrings.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
