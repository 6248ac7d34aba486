"""The onnxrt graph registry mirrors mpx/ops/definitions: one module per op family, and no import cycles."""

from __future__ import annotations

import dataclasses

import pytest
from test_house import find_cycle, imports_of, source_modules

import mpx
import mpx.backends.onnxrt.graph as graph
from mpx.ops import get_op
from mpx.ops.definitions import FAMILIES
from mpx.ops.registry import op_family


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


def test_no_module_of_backends_imports_itself_through_others():
    modules = {name: path for name, path in source_modules().items() if name.startswith("mpx.backends")}
    imports = {name: imports_of(name, path, set(modules)) for name, path in modules.items()}
    assert imports["mpx.backends.onnxrt.graph"] >= {"mpx.backends.onnxrt.graph.gemm"}, "the scan sees imports"
    assert find_cycle(imports) is None, " -> ".join(find_cycle(imports))
