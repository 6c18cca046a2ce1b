"""The static figures are reproducible from ift_lib by figures/make_figures.py."""
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_make_figures_writes_every_committed_figure(tmp_path):
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "figures" / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.main(str(tmp_path))
    assert written, "make_figures wrote nothing"
    for path in written:
        assert path.stat().st_size > 1000
        assert (ROOT / "figures" / path.name).exists(), f"{path.name} is generated but not committed"
