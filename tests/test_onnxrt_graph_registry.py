"""The onnxrt graph registry mirrors mpx/ops/definitions: one module per op family, and no import cycles."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import mpx
import mpx.backends.onnxrt.graph as graph
from mpx.ops import get_op
from mpx.ops.definitions import FAMILIES
from mpx.ops.registry import op_family

BACKENDS = Path(graph.__file__).resolve().parents[2]  # the backends/ folder, installed as mpx.backends


@pytest.mark.parametrize("op_name", sorted(graph.GRAPHS))
def test_each_graph_lives_in_the_module_named_like_its_op_family(op_name):
    assert graph.FAMILY_OF[op_name] == op_family(get_op(op_name))


def test_the_graph_modules_are_named_like_the_op_definitions_modules():
    assert {graph_module.__name__.rpartition(".")[2] for graph_module in graph.FAMILIES} <= set(FAMILIES)


def test_the_combined_mapping_is_every_family_mapping_without_overlap():
    sizes = sum(len(graph_module.GRAPHS) for graph_module in graph.FAMILIES)
    assert sizes == len(graph.GRAPHS)
    for graph_module in graph.FAMILIES:
        assert graph_module.GRAPHS.items() <= graph.GRAPHS.items()


def test_an_op_without_a_graph_is_refused_with_its_name():
    unknown = dataclasses.replace(get_op("add"), name="not_an_op")
    with pytest.raises(mpx.OpError, match="no graph for op 'not_an_op'"):
        graph.build_graph(unknown, mpx.format("fp32"), "forward", [(2,), (2,)])


def _module_name(path: Path) -> str:
    parts = ["mpx", "backends", *path.relative_to(BACKENDS).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The modules of backends/ that `path` imports anywhere (module level, functions, TYPE_CHECKING)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            source = f"{base}.{node.module}" if node.level and node.module else (base if node.level else node.module)
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return {module for module in found if module in modules and module != name}


def _cycle(graph_of: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        for imported in sorted(graph_of[module]):
            cycle = visit(imported, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph_of):
        cycle = visit(module, [])
        if cycle:
            return cycle
    return None


def test_no_module_of_backends_imports_itself_through_others():
    files = sorted(BACKENDS.rglob("*.py"))
    modules = {_module_name(path) for path in files}
    imports = {_module_name(path): _imports(path, modules) for path in files}
    assert imports["mpx.backends.onnxrt.graph"] >= {"mpx.backends.onnxrt.graph.gemm"}, "the scan sees imports"
    assert _cycle(imports) is None, " -> ".join(_cycle(imports))
