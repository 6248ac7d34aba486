"""The house rules of the source tree: no import cycles, a small top level, small files, old paths still import."""

from __future__ import annotations

import ast
import importlib
import json
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# source folder -> the package it installs as (pyproject's package-dir)
PACKAGES = {"mpx": "mpx", "backends": "mpx.backends", "conformance": "mpx.conformance"}
TOP_LEVEL = {"__init__.py", "__main__.py", "formats.py", "policy.py", "errors.py", "_io.py"}
MAX_LINES = 300


def source_modules() -> dict[str, Path]:
    """Every library module by its dotted name."""
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports anywhere in its file (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph`, as the list of modules around it, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_there_are_no_import_cycles() -> None:
    modules = source_modules()
    graph = {name: imports_of(name, path, set(modules)) for name, path in modules.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_top_level_holds_only_the_public_core_modules_and_packages() -> None:
    files = {p.name for p in (ROOT / "mpx").iterdir() if p.suffix == ".py"}
    assert files <= TOP_LEVEL, f"move {sorted(files - TOP_LEVEL)} into a package of mpx/"


def test_no_source_file_is_over_300_lines() -> None:
    folders = [*PACKAGES, "benchmarks", "tests"]
    long = {
        str(p.relative_to(ROOT)): n
        for f in folders
        for p in (ROOT / f).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these files: {long}"


PUBLIC_0_1 = json.loads((ROOT / "tests" / "data" / "public_names_0_1.json").read_text())["modules"]
# benchmark code that 0.1 shipped inside the onnxrt backend; 0.2 moved it to benchmarks/onnx_models.py
PUBLIC_0_1.pop("mpx.backends.onnxrt.onnx_models")


@pytest.mark.parametrize("module", sorted(PUBLIC_0_1))
def test_every_public_name_of_release_0_1_still_imports(module: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        imported = importlib.import_module(module)
        missing = [name for name in PUBLIC_0_1[module] if not _importable(imported, name)]
    assert not missing, f"{module} lost {missing}"


def _importable(module: object, name: str) -> bool:
    """An attribute of the module, or (for a package) a submodule of that name."""
    if hasattr(module, name):
        return True
    try:
        importlib.import_module(f"{module.__name__}.{name}")
    except ImportError:
        return False
    return True


def test_an_old_path_warns_and_names_the_new_one() -> None:
    import sys

    sys.modules.pop("mpx.trainer", None)
    with pytest.warns(DeprecationWarning, match="mpx.training.trainer"):
        old = importlib.import_module("mpx.trainer")
    from mpx.training.trainer import MixedPrecision

    assert old.MixedPrecision is MixedPrecision


def test_pyproject_lists_every_package() -> None:
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {name for name, path in source_modules().items() if path.name == "__init__.py"}
    assert packages <= listed, f"add {sorted(packages - listed)} to [tool.setuptools] packages"
