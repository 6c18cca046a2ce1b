"""The committed notebooks: executed top to bottom, no stored errors, and no printed value that
another CPU would print differently (nbval compares these outputs on every machine).

A rounding-level number (``3.3e-14``, ``4.3e-17``) or a signed zero (``-0.``) in an output that nbval
compares is a CI failure waiting for the next machine: such cells print the bound they assert
instead (``ift_lib.bounds.below``). Cells whose output is a measurement (timings, bytes) are tagged
``nbval-ignore-output`` and skipped here.
"""
import json
import pathlib
import re

import pytest

CHAPTERS = sorted((pathlib.Path(__file__).resolve().parents[1] / "chapters").glob("*.ipynb"))

# e-notation with an exponent of -10 or below (unless it is a printed bound: "< 1e-12"), and
# negative zeros printed by numpy / Python
ROUNDING_LEVEL = re.compile(
    r"(?<![\w.])(?<![<>\u2264\u2265] )(?<![<>\u2264\u2265])-?\d(?:\.\d+)?e-(?:1\d|[2-9]\d|\d{3})\b"
    r"|\[-0\.(?![0-9])|\s-0\.(?![0-9])")


def _text(output: dict) -> str:
    return "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_executed_top_to_bottom_without_errors(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    counts = [c.get("execution_count") for c in code]
    assert None not in counts, f"{path.name}: {counts.count(None)} code cells were never executed"
    assert counts == sorted(counts), f"{path.name}: cells were not executed top to bottom"
    for i, c in enumerate(nb["cells"]):
        for o in c.get("outputs", []):
            assert o["output_type"] != "error", f"{path.name} cell {i}: stored error {o.get('ename')}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_rounding_level_values_in_compared_outputs(path):
    nb = json.loads(path.read_text())
    found = []
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "code" or "nbval-ignore-output" in c["metadata"].get("tags", []):
            continue
        hits = ROUNDING_LEVEL.findall("".join(_text(o) for o in c.get("outputs", [])))
        if hits:
            found.append(f"cell {i}: {hits[:3]}")
    assert not found, (f"{path.name} prints rounding-level values that differ from one CPU to the "
                       "next (print the asserted bound instead): " + "; ".join(found))
