"""The chapters' code fits the page: every line of a code cell is at most 88 columns (the HTML
column and the PDF page show about that many before a line runs off the edge or wraps)."""
import json
import pathlib

import pytest

CHAPTERS = sorted((pathlib.Path(__file__).resolve().parents[1] / "chapters").glob("*.ipynb"))
MAX_COLUMNS = 88


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_code_lines_fit_the_page(path):
    long = []
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] != "code":
            continue
        for n, line in enumerate("".join(cell["source"]).splitlines(), 1):
            if len(line) > MAX_COLUMNS:
                long.append(f"cell {i} line {n}: {len(line)} columns")
    assert not long, f"{path.name}: lines over {MAX_COLUMNS} columns:\n  " + "\n  ".join(long)
