"""The package's import graph runs one way: data -> targets -> models -> losses -> train ->
decode -> evaluate -> book (COMMON standards). Every ``import rnnpose...`` of every module,
top-level or inside a function, is read with ``ast`` and checked against the floors below."""

from __future__ import annotations

import ast
from pathlib import Path

import rnnpose

PACKAGE = Path(rnnpose.__file__).resolve().parent

#: Floors, lowest first: a module may import its own floor and the floors below it.
FLOORS: list[set[str]] = [
    {"skeleton", "config", "io", "checkpoint", "progress", "cli_types"},
    {"data"},
    {"targets"},
    {"models"},
    {"losses", "matching", "orderings"},
    {"algorithm1", "features", "memory"},
    {"train"},
    {"decode", "grouping", "inference"},
    {"predict", "evaluate"},
    {"analysis", "experiments", "viz", "paper", "results", "diagnosis", "curves", "tables",
     "charts"},
    {"book", "cli", "__main__"},
]
FLOOR = {name: k for k, names in enumerate(FLOORS) for name in names}

#: Upward imports kept on purpose: (importer, imported) -> why.
ALLOWED: dict[tuple[str, str], str] = {
    # ``rnnpose predict``'s command draws its figures; viz itself imports only skeleton, io
    # and data, so no cycle arises.
    ("rnnpose.predict", "rnnpose.viz"): "the predict CLI draws with viz",
}


def _unit(module: str) -> str:
    """``rnnpose.train.ae`` -> ``train``; ``rnnpose`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def package_imports(package: Path = PACKAGE) -> list[tuple[str, str, int]]:
    """``(importer, imported, line)`` for every import of an rnnpose module by another unit."""
    edges = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.startswith("rnnpose.") and _unit(name) != _unit(module):
                    edges.append((module, name, node.lineno))
    return edges


def upward(edges: list[tuple[str, str, int]]) -> list[str]:
    """The imports that reach a higher floor (and are not in :data:`ALLOWED`)."""
    bad = []
    for src, dst, line in edges:
        a, b = _unit(src), _unit(dst)
        if "__init__" in (a, b):  # the package's own __init__ imports nothing of it
            continue
        if a not in FLOOR or b not in FLOOR:
            bad.append(f"{src}:{line} -> {dst}: module not placed on a floor")
        elif FLOOR[b] > FLOOR[a] and (src, dst) not in ALLOWED:
            bad.append(f"{src}:{line} -> {dst} (floor {FLOOR[a]} -> {FLOOR[b]})")
    return bad


def test_every_module_is_on_a_floor():
    units = {_unit(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts))
             for p in PACKAGE.rglob("*.py")}  # fmt: skip
    assert units - {"__init__"} == set(FLOOR)  # a new module must be placed; no stale names


def test_no_lower_module_imports_a_higher_one():
    edges = package_imports()
    assert len(edges) > 80  # the walk sees the graph (function-level imports included)
    assert ("rnnpose.features", "rnnpose.progress") in {(s, d) for s, d, _ in edges}
    assert upward(edges) == []


def test_the_check_catches_an_upward_import(tmp_path):
    pkg = tmp_path / "rnnpose"
    (pkg / "data").mkdir(parents=True)
    (pkg / "data" / "synthetic.py").write_text(
        "def f():\n    from rnnpose.train.common import seed_everything\n"
    )
    (pkg / "features.py").write_text("from rnnpose.progress import progress\n")
    assert upward(package_imports(pkg)) == [
        "rnnpose.data.synthetic:2 -> rnnpose.train.common (floor 1 -> 6)"
    ]
