"""An exported graph as an onnxruntime session on the backend's EP, called with torch tensors.

Where the EP has no kernel for an op in fp16/bf16 and refuses the session, mpx computes that op type in fp32
(Casts in, the result rounded back) and says so in the placement report: the device's own answer to "run
this in bf16" is "I cannot", and the report must not hide it. The first run is profiled, so the report reads
what onnxruntime really ran: each node's provider and each GEMM's input type.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from mpx.errors import OpError

from ..native_log import run_options
from ..placement import node_events
from ..providers import Options, Target, assigned_providers, create_session, session_options
from .export import ExportedGraph

LOW = {TensorProto.FLOAT16: "float16", TensorProto.BFLOAT16: "bfloat16"}
_MISSING = (
    re.compile(r"Could not find an implementation for (\w+)\(\d+\) node with name '([^']*)'"),
    re.compile(r"of operator \((\w+)\) in node \(([^)]*)\) is invalid"),
)
MAX_UPCASTS = 64  # op types upcast before giving up: far more than any EP lacks


def value_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every named value of the graph (after shape inference)."""
    model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    types = {init.name: init.data_type for init in graph.initializer}
    for value in (*graph.input, *graph.output, *graph.value_info):
        types[value.name] = value.type.tensor_type.elem_type
    return types


def upcast_op(model: onnx.ModelProto, op_type: str) -> int:
    """Compute every `op_type` node that reads fp16/bf16 in fp32: Casts in, the result cast back. Nodes changed."""
    types = value_types(model)
    nodes: list[onnx.NodeProto] = []
    changed = 0
    for node in model.graph.node:
        low_inputs = [k for k, name in enumerate(node.input) if types.get(name) in LOW]
        if node.op_type != op_type or node.domain not in ("", "ai.onnx") or not low_inputs:
            nodes.append(node)
            continue
        changed += 1
        for k in low_inputs:
            wide = f"{node.input[k]}__mpx_fp32_{node.name}_{k}"
            nodes.append(helper.make_node("Cast", [node.input[k]], [wide], f"mpx_upcast_{node.name}_in{k}", to=1))
            node.input[k] = wide
        after = []
        for k, name in enumerate(node.output):
            if types.get(name) in LOW:
                node.output[k] = wide = f"{name}__mpx_fp32"
                after.append(helper.make_node("Cast", [wide], [name], f"mpx_upcast_{node.name}_out{k}", to=types[name]))
        nodes += [node, *after]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return changed


def missing_kernel(message: str) -> tuple[str, str] | None:
    """(op type, node name) of the node an EP has no kernel for, from onnxruntime's refusal."""
    for pattern in _MISSING:
        match = pattern.search(message)
        if match:
            return match.group(1), match.group(2)
    return None


class SessionGraph:
    """One compiled graph: its session on the EP, how torch tensors go in and come out, and its placement."""

    def __init__(
        self, exported: ExportedGraph, target: Target, config: Options, label: str, input_shapes: list[tuple]
    ) -> None:
        self.exported, self.target, self.label, self.input_shapes = exported, target, label, input_shapes
        self.upcasts: dict[str, str] = {}
        start = time.perf_counter()
        self.session = self._create(exported.model, target, config)
        self.session_seconds = time.perf_counter() - start
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._feeds = [(name, i, i in exported.widened_inputs) for i, name in enumerate(exported.input_names) if name]
        self._run = self.session._sess.run if hasattr(self.session, "_sess") else self.session.run
        self._run_options = run_options()
        self._profiled = False
        self.events: list[dict] = []
        self.calls = 0

    def _create(self, model: onnx.ModelProto, target: Target, config: Options) -> Any:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        while True:
            options = session_options(target, config, allow_fallback=True)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # torch runs between sessions
            options.intra_op_num_threads = torch.get_num_threads()
            options.enable_profiling = True  # the first run only: __call__ ends it
            options.profile_file_prefix = os.path.join(_profile_dir(), f"mpx-{os.getpid()}-{id(self)}")
            try:
                return create_session(model.SerializeToString(), target, options)
            except RuntimeError as error:
                missing = missing_kernel(str(error))
                if missing is None or missing[0] in self.upcasts or len(self.upcasts) >= MAX_UPCASTS:
                    raise OpError(
                        f"onnxrt: {target.provider} cannot run the {self.label} graph: {error}"
                        + (f" (after computing {', '.join(self.upcasts)} in float32)" if self.upcasts else "")
                    ) from None
                op_type = missing[0]
                low = sorted({LOW[t] for t in _low_inputs(model, op_type)}) or ["a low-precision type"]
                if not upcast_op(model, op_type):
                    raise OpError(f"onnxrt: {target.provider} cannot run the {self.label} graph: {error}") from None
                self.upcasts[op_type] = (
                    f"{target.provider} has no {'/'.join(low)} kernel for {op_type}: mpx computes it in float32 "
                    "and rounds the result back"
                )

    def __call__(self, *args: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        feed = {}
        for name, index, widen in self._feeds:
            tensor = args[index].detach()
            feed[name] = (tensor.float() if widen else tensor).numpy()
        try:
            results = self._run(self.output_names, feed, self._run_options)
        except Exception as error:
            raise OpError(f"onnxrt: the {self.label} graph failed on {self.target.provider}: {error}") from None
        if not self._profiled:
            self._end_profiling()
        self.calls += 1
        narrowed = self.exported.widened_outputs
        tensors = [
            torch.from_numpy(np.asarray(r)).to(torch.bfloat16) if k in narrowed else torch.from_numpy(np.asarray(r))
            for k, r in enumerate(results)
        ]
        out: list[torch.Tensor | None] = []
        for where, index in self.exported.outputs:
            out.append(None if where == "none" else tensors[index] if where == "onnx" else args[index])
        return tuple(out)

    def _end_profiling(self) -> None:
        self._profiled = True
        path = self.session.end_profiling()
        try:
            with open(path) as handle:
                self.events = node_events(json.load(handle))
        except (OSError, ValueError):
            self.events = []
        finally:
            if path and os.path.exists(path):
                os.remove(path)

    def assigned(self) -> dict[str, str] | None:
        """node name -> EP, as onnxruntime assigned them (None where the build does not say)."""
        return assigned_providers(self.session)


def _low_inputs(model: onnx.ModelProto, op_type: str) -> set[int]:
    types = value_types(model)
    return {types[i] for n in model.graph.node if n.op_type == op_type for i in n.input if types.get(i) in LOW}


def _profile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()
