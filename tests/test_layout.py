"""The layout rules, kept by a test so that they cannot erode.

Every module of ``sketchgen`` belongs to one layer; a layer imports only the layers listed
for it (``ALLOWED``), so imports run downwards: base modules, data, models, training /
evaluation, report, comparison, then the applications (API, GPU check) and the CLI on top.
Function-level imports count as much as top-level ones.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sketchgen"

# Single modules directly under sketchgen/ that every layer may use: errors, the settings
# machinery and shared ranges, devices/seeds/atomic files, output-folder safety, image files.
BASE = ("errors", "config", "runtime", "outputs", "figures", "checkpoints")
SUBPACKAGES = ("data", "models", "training", "evaluation", "report", "comparison", "cli")
APPLICATIONS = {"api": "api", "gpu_check": "gpu_check", "__init__": "api", "__main__": "cli"}

LOWER = {"base"}
ALLOWED = {
    "base": LOWER,
    "data": LOWER,
    "models": LOWER | {"data"},
    "training": LOWER | {"data", "models"},
    "evaluation": LOWER | {"data"},
    "report": LOWER | {"evaluation"},
    "comparison": LOWER | {"data", "models", "training", "evaluation", "report"},
    "api": LOWER | {"data", "models", "training", "evaluation", "report", "comparison"},
    "gpu_check": LOWER | {"data", "models", "training", "evaluation", "report", "comparison",
                          "cli"},  # its torchrun child runs `sketchgen train` itself
    "cli": LOWER | {"data", "models", "training", "evaluation", "report", "comparison"},
}
LONG_FILE = 450  # lines; a longer module says why in its docstring ("longer than 450 lines")


def layer_of(module: str) -> str:
    """The layer of a dotted module name inside sketchgen."""
    parts = module.split(".")
    assert parts[0] == "sketchgen", module
    if len(parts) == 1:
        return "api"  # the package itself: its lazy attributes are the API's
    head = parts[1]
    if head in SUBPACKAGES:
        return head
    if head in BASE:
        return "base"
    if head in APPLICATIONS:
        return APPLICATIONS[head]
    raise AssertionError(f"sketchgen.{head} belongs to no layer: add it to tests/test_layout.py")


def module_name(path: Path, root: Path = ROOT) -> str:
    relative = path.relative_to(root).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def sketchgen_imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, module) of every import of a sketchgen module in ``path``, at any depth."""
    package = module_name(path if path.name == "__init__.py" else path.parent, root)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base == "sketchgen":  # from sketchgen import errors, runtime
                found += [(node.lineno, f"sketchgen.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, base))
    return sorted((line, name) for line, name in found if name.split(".")[0] == "sketchgen")


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_go_downwards(path):
    own = layer_of(module_name(path))
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name} ({layer_of(name)})"
             for line, name in sketchgen_imports(path)
             if layer_of(name) != own and layer_of(name) not in ALLOWED[own]]
    assert not wrong, f"layer {own} may import only {sorted(ALLOWED[own])}:\n" + "\n".join(wrong)


def test_the_rule_checker_sees_function_level_and_relative_imports(tmp_path):
    probe = tmp_path / "sketchgen" / "data" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f():\n    from sketchgen.training import harness\n\n"
                     "from ..comparison import run\nfrom . import datasets\n")
    found = [name for _, name in sketchgen_imports(probe, tmp_path)]
    assert found == ["sketchgen.training", "sketchgen.comparison", "sketchgen.data"], found
    assert layer_of(found[0]) not in ALLOWED["data"]


def test_base_modules_import_no_sub_package():
    for name in BASE:
        wrong = [n for _, n in sketchgen_imports(PACKAGE / f"{name}.py") if layer_of(n) != "base"]
        assert not wrong, f"sketchgen/{name}.py imports {wrong}"


def test_rasterize_stands_alone():
    for path in sorted((ROOT / "rasterize").rglob("*.py")):
        assert not sketchgen_imports(path), f"{path} imports sketchgen"


PACKAGES = sorted(path.parent for path in PACKAGE.rglob("__init__.py") if path.parent != PACKAGE)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_sub_package_says_what_it_owns_and_may_import(package):
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    assert "Owns:" in doc and "May import:" in doc, f"{package.relative_to(ROOT)}/__init__.py"


@pytest.mark.parametrize("path", [*SOURCES, *sorted((ROOT / "rasterize").rglob("*.py"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_long_files_say_why(path):
    lines = path.read_text().count("\n")
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    if lines > LONG_FILE and f"longer than {LONG_FILE} lines" not in doc.lower():
        pytest.fail(f"{path.relative_to(ROOT)} has {lines} lines: split it or say why at its top")


def test_help_imports_no_torch():
    code = ("import sys\nfrom sketchgen.cli import build_parser\nbuild_parser()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "'torch'" not in out, out


def test_the_installed_package_holds_every_sub_package():
    """What pyproject.toml packages is what exists (an editable install hides a package left
    out, a wheel does not: CI's tox install once lacked every sub-package)."""
    import tomllib

    from setuptools import find_packages

    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packaged = set(find_packages(str(ROOT), **settings["packages"]["find"]))
    present = {module_name(path.parent / "__init__.py")
               for path in [*PACKAGE.rglob("__init__.py"), ROOT / "rasterize" / "__init__.py"]}
    assert packaged == present
    assert "categories.txt" in settings["package-data"]["sketchgen.data"]
