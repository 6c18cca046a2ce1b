"""No hand-typed measurements in the chapters' prose.

A number the text relies on is computed by a cell that asserts a bound on it and glues it
(``ift_lib.prose.glue``; ``{glue:text}`key``` in the Markdown), so a re-execution can never leave
the words behind the numbers. This test reads every Markdown cell of ``chapters/`` and lists the
decimal numbers, powers of ten, e-notation numbers and percentages it finds outside headings,
code, glue roles, citations, cross-references and link targets (math included: a measurement in
``$...$`` is still typed by hand). Each must be *declared* in its cell's metadata, with the reason
it may be typed (an input the code sets, exact arithmetic of a derivation)::

    cell["metadata"]["typed_numbers"] = {"0.1": "the step size the code uses"}

so a new typed measurement fails here and a reviewer sees every exception with its reason.
Tokens are written as in the Markdown source with spaces removed (``10^{-6}``, ``0.6``). A
declaration whose token no longer occurs in its cell fails too (it would hide the next one).
"""
import json
import pathlib
import re

import pytest

CHAPTERS = sorted((pathlib.Path(__file__).resolve().parents[1] / "chapters").glob("*.ipynb"))

_IGNORED = [
    re.compile(r"^(```|~~~).*?^\1", re.S | re.M),               # fenced blocks (code, directives' code)
    re.compile(r"(?m)^#+ .*$"),                                  # headings: "## 3.7 Cost"
    re.compile(r"\{glue(?::\w+)?\}`[^`]*`"),                     # glued values
    re.compile(r"\{(?:doc|ref|numref|eq|cite(?::\w+)?|download)\}`[^`]*`"),
    re.compile(r"\]\([^)]*\)"),                                  # link targets
    re.compile(r"`[^`\n]*`"),                                    # inline code
    re.compile(r"<[^>\n]*>"),                                    # HTML tags and their attributes
]
# a name and a version or section number: "Python 3.11", "jax 0.10.2", "Section 3.3", "§5.2"
_NAMED = re.compile(r"(?i)(python|jax|jaxlib|numpy|version|v|section|sections|chapter|chapters|"
                    r"figure|exercise|exercises|table|appendix|§)\s*$")
_NUMBER = re.compile(
    r"(?<![\w.\\])("
    r"\d+(?:\.\d+)?\s*(?:\\times|×|\\cdot)\s*10\^\{?[-−]?\d+\}?"   # 1.3\times10^{-8}
    r"|\d+(?:\.\d+)?\s*×\s*10[⁻⁺]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+"                  # 1.3 × 10⁻⁸
    r"|10\^\{?[-−]?\d+\}?|10[⁻⁺]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+"                    # 10^{-6}, 10⁻⁶
    r"|\d+(?:\.\d+)?[eE][-+]?\d+"                                   # 1e-12
    r"|\d+(?:\.\d+)?\s*(?:\\%|%)"                                   # 30%, 0.1\%
    r"|\d*\.\d+(?!\.\d)"                                            # 0.6, 2.5 (not 0.10.2)
    r")")


def typed_numbers(markdown: str) -> list[str]:
    """The number tokens of ``markdown`` that tests must see declared (spaces removed)."""
    text = markdown
    for pattern in _IGNORED:
        text = pattern.sub(" ", text)
    found = []
    for match in _NUMBER.finditer(text):
        if re.search(r"\d\.\d+\.\d", text[match.start():match.end() + 3]):
            continue                                            # a version: 0.10.2
        if _NAMED.search(text[max(0, match.start() - 14):match.start()]):
            continue
        found.append(re.sub(r"\s+", "", match.group(1)))
    return found


def test_the_scanner_finds_what_it_should():
    md = ("## 3.7 Cost\nThe gap is 2.50 nats, $1.3\\times 10^{-8}$ and 1e-12, 30% faster, "
          "tolerance $10^{-6}$; jax 0.10.2, Section 3.3, {glue:text}`x_gap`, `tol=1e-9`, "
          "{cite}`kim2018`, [link](a/b1.5.html).")
    assert typed_numbers(md) == ["2.50", "1.3\\times10^{-8}", "1e-12", "30%", "10^{-6}"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_undeclared_typed_numbers(path):
    nb = json.loads(path.read_text())
    problems = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        declared = cell.get("metadata", {}).get("typed_numbers", {})
        found = typed_numbers("".join(cell["source"]))
        for token in found:
            if token not in declared:
                problems.append(f"cell {i}: {token!r} is typed by hand (glue it from the cell "
                                f"that measures it, or declare it in typed_numbers with a reason)")
        for token, reason in declared.items():
            if token not in found:
                problems.append(f"cell {i}: typed_numbers declares {token!r}, not in the cell")
            if not str(reason).strip():
                problems.append(f"cell {i}: typed_numbers[{token!r}] gives no reason")
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)
