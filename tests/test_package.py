"""The package's shape: ``import ift_lib`` gives every public module, and no module imports
another module's private names (a private *module* with public names is how internals are
shared)."""
import ast
import importlib
import pathlib
import types

import ift_lib

PKG = pathlib.Path(ift_lib.__file__).parent


def test_import_ift_lib_gives_every_public_module():
    public = [p.stem for p in PKG.glob("*.py") if not p.stem.startswith("_")] + ["widgets"]
    for name in public:
        assert isinstance(getattr(ift_lib, name), types.ModuleType), name
        assert name in ift_lib.__all__ and name in dir(ift_lib), name
    for name in ("custom_root", "custom_fixed_point", "root_jvp", "root_vjp", "check_ift"):
        assert callable(getattr(ift_lib, name))


def test_no_private_names_imported_across_modules():
    offenders = []
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ift_lib"):
                private_module = any(part.startswith("_") for part in node.module.split("."))
                base = PKG.parent.joinpath(*node.module.split("."))
                for alias in node.names:
                    is_module = (base / f"{alias.name}.py").is_file() or (base / alias.name).is_dir()
                    if alias.name.startswith("_") and not private_module and not is_module:
                        offenders.append(f"{path.relative_to(PKG)}: from {node.module} import {alias.name}")
    assert not offenders, offenders


def test_every_module_imports_on_its_own():
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        importlib.import_module(".".join(rel.parts).removesuffix(".__init__"))
