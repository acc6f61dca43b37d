"""The layers import in one direction: cli -> assets (Dagster) -> pipelines (library); simulator is tooling.

docs/architecture.md draws the map these rules hold the code to.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "assets", "simulator", "cli")
# What each layer may not import (its own package and third-party libraries are always allowed).
FORBIDDEN = {
    "pipelines": {"dagster", "assets", "cli", "simulator"},
    "simulator": {"dagster", "assets", "cli"},
    "assets": {"cli", "simulator"},
    "cli": set(),
}


def imported_roots(path: Path) -> set[tuple[str, int]]:
    """Every top-level package a module imports, wherever the import statement stands, with its line."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add((node.module.split(".")[0], node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; the layers are checked on absolute ones")
    return found


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_imports_only_its_own_layer_and_below(path: Path):
    layer = path.relative_to(ROOT).parts[0]
    wrong = sorted(
        f"{path.relative_to(ROOT)}:{line} imports {root}"
        for root, line in imported_roots(path)
        if root in FORBIDDEN[layer]
    )
    assert not wrong, "\n".join(wrong)


def test_the_rules_catch_an_upward_import(tmp_path):
    """The checker itself fails on the kinds of import it exists to stop (a nested one included)."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef f():\n    import dagster as dg\n    from assets.raw import raw\n")
    assert {root for root, _ in imported_roots(bad)} == {"os", "dagster", "assets"}


def test_the_whole_library_loads_without_dagster():
    """Importing every library module (as the CLI's fast commands do) never loads Dagster, even indirectly."""
    names = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "pipelines").rglob("*.py")
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'assets', 'cli', 'simulator'))\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"loaded by the library: {out.stdout.strip()}"
