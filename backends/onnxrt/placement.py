"""Truthful support: build a session and read what onnxruntime really runs (optimized graph, node placement).

native: every node of ours runs in the format on the EP. upcast: onnxruntime inserted Casts to a wider
type around a node (the CPU EP's fp16 MatMul runs in fp32). fallback: a node left the EP for the CPU EP.
unsupported: no session, with onnxruntime's reason.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from mpx.plugins.backend import SupportStatus

from .native_log import run_options
from .providers import CPU, Options, Target, assigned_providers, create_session, session_options

WIDER_THAN = {  # onnx element type -> the element types wider than it
    TensorProto.FLOAT16: {TensorProto.FLOAT, TensorProto.DOUBLE},
    TensorProto.BFLOAT16: {TensorProto.FLOAT, TensorProto.DOUBLE},
    TensorProto.FLOAT8E4M3FN: {TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.FLOAT, TensorProto.DOUBLE},
    TensorProto.FLOAT8E5M2: {TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.FLOAT, TensorProto.DOUBLE},
    TensorProto.FLOAT: {TensorProto.DOUBLE},
}


class GraphUnsupported(Exception):
    """onnxruntime made no session of the graph on the EP; the message is its reason."""


@dataclass(frozen=True)
class Placement:
    """A session and what it really runs."""

    session: Any
    status: SupportStatus  # native | upcast | fallback
    reason: str
    nodes: tuple[str, ...]  # op types of the graph as run


def place(model: onnx.ModelProto, onnx_type: int, target: Target, config: Options) -> Placement:
    """A session of `model` on `target`, judged against the optimized graph it really runs."""
    model_bytes = model.SerializeToString()
    provider = target.provider
    with tempfile.TemporaryDirectory(prefix="mpx-ort-") as tmp:
        path = os.path.join(tmp, "optimized.onnx")
        try:
            session = create_session(model_bytes, target, session_options(target, config, path))
        except RuntimeError as error:
            message = str(error)
            if provider != CPU and "fallback to CPU EP" in message:
                return _fallback(model, target, config)
            if "serialize" in message.lower():  # an EP that compiles nodes cannot save the optimized model
                return _from_assignment(model, onnx_type, target, config)
            raise GraphUnsupported(message) from None
        optimized = onnx.load(path) if os.path.exists(path) else None
    if optimized is None:
        return _from_assignment(model, onnx_type, target, config)
    ours = {node.name for node in model.graph.node}
    upcasts = inserted_upcasts(ours, optimized.graph.node, onnx_type)
    nodes = tuple(n.op_type for n in optimized.graph.node)
    if upcasts:
        return Placement(session, "upcast", _upcast_reason(provider, onnx_type, upcasts), nodes)
    return Placement(session, "native", "", nodes)


def _from_assignment(model: onnx.ModelProto, onnx_type: int, target: Target, config: Options) -> Placement:
    """Judge a session whose optimized model cannot be saved by its node assignment, else by a profile."""
    try:
        session = create_session(model.SerializeToString(), target, session_options(target, config))
    except RuntimeError as error:
        raise GraphUnsupported(str(error)) from None
    assigned = assigned_providers(session)
    if assigned is None:
        return _from_profile(model, onnx_type, target, config)
    ours = {node.name for node in model.graph.node}
    inserted = sorted(name for name in assigned if name not in ours)
    if any("cast" in name.lower() for name in inserted):
        return Placement(session, "upcast", f"onnxruntime inserted Casts on {target.provider}", ())
    return Placement(session, "native", "", ())


def inserted_upcasts(ours: set[str], optimized_nodes: Any, onnx_type: int) -> list[str]:
    """Op types fed by Casts to a wider type that onnxruntime inserted (nodes whose names are not ours)."""
    wider = WIDER_THAN.get(onnx_type, set())
    inserted = set()
    for node in optimized_nodes:
        if node.op_type == "Cast" and node.name not in ours:
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if to in wider:
                inserted.update(node.output)
    return sorted({n.op_type for n in optimized_nodes if n.op_type != "Cast" and inserted.intersection(n.input)})


def _upcast_reason(provider: str, onnx_type: int, ops: list[str]) -> str:
    name = onnx.helper.tensor_dtype_to_np_dtype(onnx_type).name if onnx_type != TensorProto.BFLOAT16 else "bfloat16"
    return (
        f"{provider} has no {name} kernel for {', '.join(ops)}: onnxruntime inserted Casts and computes "
        "it in a wider format"
    )


def zero_feed(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Inputs of the right shapes and types to run a model once."""
    feed = {}
    for value in model.graph.input:
        tensor = value.type.tensor_type
        shape = [d.dim_value for d in tensor.shape.dim]
        feed[value.name] = np.zeros(shape, dtype=onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
    return feed


def profile_nodes(
    model: onnx.ModelProto, target: Target, config: Options, allow_fallback: bool
) -> tuple[Any, list[dict]]:
    """Run once with profiling: (session, [{name, op, provider, input_types}] per node kernel)."""
    with tempfile.TemporaryDirectory(prefix="mpx-ort-prof-") as tmp:
        sess_options = session_options(target, config, allow_fallback=allow_fallback)
        sess_options.enable_profiling = True
        sess_options.profile_file_prefix = os.path.join(tmp, "profile")
        session = create_session(model.SerializeToString(), target, sess_options)
        session.run(None, zero_feed(model), run_options())
        with open(session.end_profiling()) as handle:
            events = json.load(handle)
    return session, node_events(events)


def node_events(events: list[dict]) -> list[dict]:
    """The kernel runs of an onnxruntime profile: node name, op type, provider and input types."""
    nodes = []
    for event in events:
        args = event.get("args", {})
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time") and "provider" in args:
            types = [next(iter(t)) for t in args.get("input_type_shape", []) if t]
            nodes.append(
                {
                    "name": event["name"][: -len("_kernel_time")],
                    "op": args.get("op_name", "?"),
                    "provider": args["provider"],
                    "input_types": types,
                }
            )
    return nodes


def _fallback(model: onnx.ModelProto, target: Target, config: Options) -> Placement:
    """A session that lets nodes the EP does not take run on the CPU EP, and which nodes those are."""
    provider = target.provider
    session = create_session(model.SerializeToString(), target, session_options(target, config, allow_fallback=True))
    assigned = assigned_providers(session)
    if assigned is not None:
        op_types = {node.name: node.op_type for node in model.graph.node}
        moved = sorted({op_types.get(name, name) for name, ep in assigned.items() if ep != provider})
        nodes = tuple(op_types.get(name, name) for name in assigned)
    else:
        session, events = profile_nodes(model, target, config, allow_fallback=True)
        moved = sorted({n["op"] for n in events if n["provider"] != provider})
        nodes = tuple(n["op"] for n in events)
    return Placement(
        session,
        "fallback",
        f"{provider} does not take {', '.join(moved) or 'some nodes'}: onnxruntime places them on the CPU EP",
        nodes,
    )


def _from_profile(model: onnx.ModelProto, onnx_type: int, target: Target, config: Options) -> Placement:
    try:
        session, nodes = profile_nodes(model, target, config, allow_fallback=False)
    except RuntimeError as error:
        raise GraphUnsupported(str(error)) from None
    ours = {node.name for node in model.graph.node}
    casts = sorted({n["op"] for n in nodes if n["name"] not in ours and n["op"] == "Cast"})
    ops = tuple(n["op"] for n in nodes)
    if casts:
        return Placement(session, "upcast", f"onnxruntime inserted Casts on {target.provider}", ops)
    return Placement(session, "native", "", ops)
