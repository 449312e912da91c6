"""The packages form a tree (DESIGN.md): experiments on top wires datamodules, lightning_modules and
analysis, which do not import each other (except through the named interfaces in ALLOWED), and the
dataset readers do not import the fake-data writers.

Every import statement of every module is read with `ast` (including imports inside functions), and
relative imports are resolved against the module's package, so `from ..synthetic import x` counts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

RULES = [
    # (package folder, sub-folders the rule does not cover, forbidden module prefixes, why)
    ("datamodules", ("datamodules/synthetic",), ("datamodules.synthetic",),
     "readers take file layouts from datamodules/*_layout.py, not from the synthetic writers"),
    ("datamodules", (), ("lightning_modules", "experiments", "analysis"),
     "the data knows nothing of models or the command line"),
    ("lightning_modules", (), ("datamodules", "experiments", "analysis"),
     "the models take batches (the sample contract), not the data, command-line or analysis packages"),
    ("analysis", (), ("datamodules", "lightning_modules", "experiments"),
     "analysis reads run-folder files (metrics.json, event files, features/), not the code that wrote them"),
]
ALLOWED: dict[str, tuple[str, ...]] = {}
"""file (relative to the repository) -> modules it may import despite RULES, each a small, named
interface; an entry whose file no longer imports the module fails the test (remove it)."""


def module_name(path: Path) -> str:
    """Dotted module name of a file under REPO ('datamodules.benchmarks' for its __init__.py)."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything `path` imports; `from a.b import c` gives 'a.b' and 'a.b.c'
    (c may be a submodule); relative imports are resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(folder: str, skip: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted((REPO / folder).rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if any(rel.startswith(s + "/") for s in skip):
            continue
        allowed = ALLOWED.get(rel, ())
        bad = {(line, name) for line, name in imported_modules(path)
               if any(within(name, f) for f in forbidden) and not any(within(name, a) for a in allowed)}
        out += [f"{rel}:{line} imports {name}" for line, name in sorted(bad)  # the statement's module, once
                if not any(other != name and within(name, other) for ln, other in bad if ln == line)]
    return out


@pytest.mark.parametrize(("folder", "skip", "forbidden", "why"), RULES, ids=[f"{r[0]}-{r[2][0]}" for r in RULES])
def test_packages_import_only_down_the_tree(folder, skip, forbidden, why):
    found = violations(folder, skip, forbidden)
    assert not found, f"{why}:\n" + "\n".join(found)
    for rel, modules in ALLOWED.items():
        if not rel.startswith(folder + "/"):
            continue
        path = REPO / rel
        assert path.is_file(), f"ALLOWED names {rel}, which no longer exists: remove the entry"
        names = {name for _, name in imported_modules(path)}
        for module in modules:
            assert module in names, f"{rel} no longer imports {module}: remove it from ALLOWED"


def test_the_rules_see_relative_and_nested_imports(tmp_path, monkeypatch):
    """The checker itself: a relative import and an import inside a function are both found."""
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    pkg = tmp_path / "datamodules"
    (pkg / "synthetic").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "synthetic" / "__init__.py").write_text("")
    (pkg / "reader.py").write_text("from .synthetic import writer\n")
    (pkg / "other.py").write_text("def f():\n    from lightning_modules.metrics import DepthMetrics\n")
    assert violations("datamodules", ("datamodules/synthetic",), ("datamodules.synthetic",)) == [
        "datamodules/reader.py:1 imports datamodules.synthetic"]
    assert violations("datamodules", (), ("lightning_modules",)) == [
        "datamodules/other.py:2 imports lightning_modules.metrics"]
    (pkg / "reader.py").write_text("from datamodules import synthetic\nimport datamodules.hypersim_layout\n")
    assert violations("datamodules", ("datamodules/synthetic",), ("datamodules.synthetic",)) == [
        "datamodules/reader.py:1 imports datamodules.synthetic"]
    monkeypatch.setattr(f"{__name__}.ALLOWED", {"datamodules/other.py": ("lightning_modules.metrics",)})
    assert violations("datamodules", (), ("lightning_modules",)) == []  # a named interface, allowed
