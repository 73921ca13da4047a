"""The package's layering, checked from its source: every import (module-level or inside a function) goes down
the layer order of ``../shared/DESIGN.md``, so no two packages import each other; no source file over 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rewardalign"
LAYERS = ["config", "imports", "runs", "fingerprint", "data", "objectives", "modeling", "gym", "rewards", "train",
          "evaluate", "demo", "commands", "cli"]
"""Lowest first: a unit may import its own modules and the units before it, never one after it."""


def unit_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "rewardalign" and len(parts) > 1 else None


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import of the file, function-level ones included."""
    package = "rewardalign." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.removesuffix(".__init__") + ".__init__"
    base = package.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
            out += [(node.lineno, name) for name in names]
    return out


def edges() -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, 'file:line') of every import between two units of the package."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        source = rel.parts[0].removesuffix(".py")
        for line, module in imports(path):
            target = unit_of(module)
            if target is not None and target != source:
                out.append((source, target, f"{rel}:{line}"))
    return out


def test_every_unit_has_a_layer():
    units = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    units -= {"__init__", "__pycache__"}
    assert units <= set(LAYERS), f"units without a layer: {sorted(units - set(LAYERS))}"


def test_imports_go_down_the_layers():
    upward = [f"{where}: {a} imports {b}" for a, b, where in edges()
              if a in LAYERS and b in LAYERS and LAYERS.index(b) > LAYERS.index(a)]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_two_units_import_each_other():
    pairs = {(a, b) for a, b, _ in edges()}
    assert not [(a, b) for a, b in pairs if (b, a) in pairs and a < b]


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    """The checker itself: an upward import hidden in a function is found and resolved to its unit."""
    fake = PACKAGE / "data" / "_layering_probe.py"
    fake.write_text("def f():\n    from ..train import align\n    from . import schema\n")
    try:
        found = [(a, b) for a, b, where in edges() if "_layering_probe" in where]
    finally:
        fake.unlink()
    assert found == [("data", "train")]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_source_file_over_600_lines(path):
    assert len(path.read_text().splitlines()) <= 600
