"""One AOTAutograd graph (forward or backward, core ATen) exported to ONNX through torch.onnx's dynamo exporter.

numpy has no bfloat16, so bf16 inputs cross the boundary as fp32 and are cast to bf16 first thing in the
graph (and bf16 outputs leave as fp32): exact both ways. Outputs that are graph inputs returned as they are
(AOTAutograd saves parameters for the backward that way) and None gradients never enter the ONNX graph.
"""

from __future__ import annotations

import functools
import logging
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any

import onnx
import torch

from mpx.errors import OpError

WIDE = torch.float32  # what a bf16 tensor crosses the numpy boundary as


@dataclass(frozen=True)
class ExportedGraph:
    """An ONNX model of one FX graph, with how the call's tensors map onto its inputs and outputs."""

    model: onnx.ModelProto
    kind: str  # forward | backward
    input_names: tuple[str, ...]  # one per graph input, "" where the ONNX graph does not read it
    widened_inputs: frozenset[int]  # bf16 inputs fed as fp32
    outputs: tuple[tuple[str, int | None], ...]  # per FX output: ("onnx", k) | ("input", i) | ("none", None)
    widened_outputs: frozenset[int]  # positions among the ONNX outputs that come back as fp32, narrowed to bf16
    decomposed: tuple[str, ...]  # ATen ops the core ATen decompositions broke into smaller ones
    modules: tuple[str, ...]  # the modules the graph's ops came from
    seconds: float


class _Boundary(torch.nn.Module):
    """The FX graph with bf16 inputs taken as fp32, bf16 outputs given as fp32, and pass-through outputs left out."""

    def __init__(self, graph: torch.fx.GraphModule, widened: frozenset[int], kept: tuple[int, ...]) -> None:
        super().__init__()
        self.graph_module, self.widened, self.kept = graph, widened, kept

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        args = tuple(a.to(torch.bfloat16) if i in self.widened else a for i, a in enumerate(args))
        outputs = self.graph_module(*args)
        kept = (outputs[i] for i in self.kept)
        return tuple(o.to(WIDE) if o.dtype == torch.bfloat16 else o for o in kept)


def export_graph(
    graph: torch.fx.GraphModule, example_inputs: list[Any], kind: str, optimize: bool = True
) -> ExportedGraph:
    """The ONNX model of `graph`; OpError naming the op and its module where the exporter cannot take it."""
    start = time.perf_counter()
    for index, value in enumerate(example_inputs):
        if not isinstance(value, torch.Tensor):
            raise OpError(
                f"onnxrt: the {kind} graph takes a {type(value).__name__} as input {index}; only tensors cross "
                "into an onnxruntime session (compile with dynamic=False so that shapes are not inputs)"
            )
    placeholders = [n for n in graph.graph.nodes if n.op == "placeholder"]
    output_node = next(n for n in graph.graph.nodes if n.op == "output")
    fx_outputs = output_node.args[0] if isinstance(output_node.args[0], (tuple, list)) else (output_node.args[0],)
    outputs: list[tuple[str, int | None]] = []
    kept: list[int] = []
    for index, value in enumerate(fx_outputs):
        if value is None:
            outputs.append(("none", None))
        elif isinstance(value, torch.fx.Node) and value.op == "placeholder":
            outputs.append(("input", placeholders.index(value)))
        else:
            outputs.append(("onnx", len(kept)))
            kept.append(index)
    widened = frozenset(i for i, t in enumerate(example_inputs) if t.dtype == torch.bfloat16)
    out_values = [fx_outputs[i].meta.get("val") for i in kept]
    widened_outputs = frozenset(
        k for k, v in enumerate(out_values) if isinstance(v, torch.Tensor) and v.dtype == torch.bfloat16
    )
    args = tuple(torch.zeros(t.shape, dtype=WIDE if i in widened else t.dtype) for i, t in enumerate(example_inputs))
    names = [f"input_{i}" for i in range(len(args))]
    module = _Boundary(graph, widened, tuple(kept))
    try:
        program = _export(module, args, names, [f"output_{k}" for k in range(len(kept))], optimize)
    except Exception as error:
        raise export_error(graph, kind, error) from None
    model = program.model_proto
    present = {value.name for value in model.graph.input}
    return ExportedGraph(
        model,
        kind,
        tuple(name if name in present else "" for name in names),
        widened,
        tuple(outputs),
        widened_outputs,
        decomposed_ops(graph),
        graph_modules(graph),
        time.perf_counter() - start,
    )


@functools.lru_cache(maxsize=1)
def _registry() -> Any:
    """torch.onnx's table of ATen -> ONNX functions, built once (it takes seconds) instead of per export."""
    from torch.onnx._internal.exporter import _registration

    quiet = logging.getLogger(_registration.__name__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping ..." is no news for mpx's users
    try:
        return _registration.ONNXRegistry.from_torchlib()
    finally:
        quiet.setLevel(level)


def _export(
    module: torch.nn.Module, args: tuple, input_names: list[str], output_names: list[str], optimize: bool
) -> Any:
    """torch.onnx's dynamo exporter, with its registry built once where this torch exposes the parameter."""
    try:
        from torch.onnx._internal.exporter import _core

        exporter = functools.partial(_core.export, registry=_registry())
    except (ImportError, AttributeError):  # another torch: the public entry point builds the registry itself
        exporter = functools.partial(torch.onnx.export, dynamo=True)
    with warnings.catch_warnings():  # torch's own pytree deprecation inside the exporter: not the user's to fix
        warnings.filterwarnings("ignore", message=".*treespec.*", category=FutureWarning)
        return exporter(
            module, args, input_names=input_names, output_names=output_names, verbose=False, optimize=optimize
        )


def decomposed_ops(graph: torch.fx.GraphModule) -> tuple[str, ...]:
    """The ATen ops of the trace that core ATen decompositions replaced by other ops."""
    calls = [n for n in graph.graph.nodes if n.op == "call_function"]
    kept = {_op_name(n.target) for n in calls}
    originals = {_op_name(n.meta["original_aten"]) for n in calls if n.meta.get("original_aten") is not None}
    return tuple(sorted(originals - kept))


def _op_name(target: Any) -> str:
    name = getattr(target, "name", None)
    text = name() if callable(name) else str(target)
    return text.replace("::", ".")


# how dynamo names the model itself: the compiled frame's `self`, or the model behind the bound forward that
# compile_backend.own_frame's frame calls
_ROOT = re.compile(r"^(L\['self'\]|G\['_FORWARD'\]\.__self__)\.?")


def _module_of(node: torch.fx.Node) -> str:
    """The module path a node came from ('' at the top level)."""
    stack = node.meta.get("nn_module_stack") or node.meta.get("fwd_nn_module_stack") or {}
    if not stack:
        return ""
    path, kind = list(stack.values())[-1]
    path = _ROOT.sub("", str(path))
    kind_name = getattr(kind, "__name__", str(kind).rsplit(".", 1)[-1].strip("'>"))
    return f"{path or '(the model)'} ({kind_name})"


def graph_modules(graph: torch.fx.GraphModule) -> tuple[str, ...]:
    return tuple(sorted({m for m in map(_module_of, graph.graph.nodes) if m}))


def export_error(graph: torch.fx.GraphModule, kind: str, error: Exception) -> OpError:
    """OpError naming the op the exporter could not take, the module it came from, and what to do."""
    text = _exception_chain(error)
    match = re.search(r"No ONNX function found for <OpOverload\(op='([^']+)', overload='([^']+)'\)>", text)
    if match is None:
        first = next((line for line in text.splitlines() if line.strip()), type(error).__name__)
        return OpError(f"onnxrt: torch.onnx cannot export the {kind} graph: {first[:300]}")
    op = f"{match.group(1)}.{match.group(2)}"
    nodes = [n for n in graph.graph.nodes if n.op == "call_function" and str(n.target) == op]
    where = next((m for m in map(_module_of, nodes) if m), "")
    if not where and nodes:
        trace = (nodes[0].meta.get("stack_trace") or "").strip().splitlines()
        where = trace[-2].strip() if len(trace) >= 2 else ""
    return OpError(
        f"onnxrt: torch.onnx has no ONNX translation for {op} in the {kind} graph"
        f"{f' (from {where})' if where else ''}; replace the op, or run that module in torch on the host by "
        "wrapping its forward in torch.compiler.disable"
    )


def _exception_chain(error: BaseException) -> str:
    parts = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(parts)
