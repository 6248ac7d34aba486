"""The placement report of one compiled graph, read off what onnxruntime ran (its first run's profile)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import onnx

from .session_graph import SessionGraph, value_types

GEMM_OPS = {"MatMul", "Gemm", "Conv", "ConvTranspose", "FusedMatMul", "FusedGemm", "FusedConv", "NhwcFusedConv"}
TYPE_NAMES = {"float": "float32", "double": "float64", "float16": "float16", "bfloat16": "bfloat16"}
TYPE_NAMES.update({"float32": "float32", "float64": "float64"})


def graph_report(graph: SessionGraph) -> dict[str, Any]:
    """Plain facts about one graph: where its nodes ran, what was upcast or decomposed, each GEMM's dtype."""
    provider = graph.target.provider
    exported = graph.exported
    report: dict[str, Any] = {
        "graph": graph.label,
        "kind": exported.kind,
        "provider": provider,
        "input_shapes": [list(shape) for shape in graph.input_shapes],
        "modules": list(exported.modules),
        "decomposed_ops": list(exported.decomposed),
        "upcast_ops": dict(graph.upcasts),
        "gemm_dtypes_in_graph": declared_gemms(graph),
        "export_seconds": round(exported.seconds, 3),
        "session_seconds": round(graph.session_seconds, 3),
        "runs": graph.calls,
    }
    if graph.events:
        report.update(_from_profile(graph.events, provider))
    else:
        report.update(_from_assignment(graph, provider))
    return report


def declared_gemms(graph: SessionGraph) -> dict[str, dict[str, int]]:
    """The input type of each GEMM as exported (what the policy asked for), before onnxruntime placed it."""
    model = graph.exported.model
    types = value_types(model)
    found: dict[str, Counter] = {}
    for node in model.graph.node:
        if node.op_type in GEMM_OPS and node.input:
            name = onnx.helper.tensor_dtype_to_np_dtype(types[node.input[0]]).name if node.input[0] in types else "?"
            found.setdefault(node.op_type, Counter())[TYPE_NAMES.get(name, name)] += 1
    return {op: dict(sorted(counts.items())) for op, counts in sorted(found.items())}


def _from_profile(events: list[dict], provider: str) -> dict[str, Any]:
    total = len(events)
    on_ep = sum(1 for e in events if e["provider"] == provider)
    moved = Counter(e["op"] for e in events if e["provider"] != provider)
    gemms: dict[str, Counter] = {}
    for event in events:
        if event["op"] in GEMM_OPS:
            dtype = TYPE_NAMES.get(event["input_types"][0], event["input_types"][0]) if event["input_types"] else "?"
            gemms.setdefault(event["op"], Counter())[dtype] += 1
    return {
        "nodes": total,
        "nodes_on_provider": on_ep,
        "share_on_provider": round(on_ep / total, 4) if total else 1.0,
        "fallback_ops": dict(sorted(moved.items())),
        "gemm_dtypes": {op: dict(sorted(counts.items())) for op, counts in sorted(gemms.items())},
        "source": "onnxruntime profile of the first run",
    }


def _from_assignment(graph: SessionGraph, provider: str) -> dict[str, Any]:
    """Before the first run, or where the EP profiles no kernels: the node assignment onnxruntime recorded."""
    assigned = graph.assigned() or {}
    total = len(assigned)
    on_ep = sum(1 for ep in assigned.values() if ep == provider)
    op_types = {node.name: node.op_type for node in graph.exported.model.graph.node}
    moved = Counter(op_types.get(name, name) for name, ep in assigned.items() if ep != provider)
    return {
        "nodes": total,
        "nodes_on_provider": on_ep,
        "share_on_provider": round(on_ep / total, 4) if total else None,
        "fallback_ops": dict(sorted(moved.items())),
        "gemm_dtypes": {},
        "source": "onnxruntime node assignment (no run profiled yet)" if not graph.calls else "node assignment",
    }


def eager_report(calls: int, provider: str) -> dict[str, Any]:
    """The forward calls dynamo ran as torch code on the host instead of through onnxruntime."""
    import torch

    limit = torch._dynamo.config.recompile_limit
    return {
        "graph": "eager",
        "kind": "eager",
        "provider": "torch (host)",
        "runs": calls,
        "nodes": None,
        "share_on_provider": 0.0,
        "reason": f"dynamo ran these calls as torch code, not on {provider}: more input shapes or train/eval "
        f"switches than torch._dynamo.config.recompile_limit ({limit}) allows, or nothing to compile",
    }


def summary_line(report: dict[str, Any]) -> str:
    """One line of a graph's report, for a terminal."""
    if report["kind"] == "eager":
        return f"eager: {report['runs']} forward calls ran as torch code on the host ({report['reason']})"
    share = report.get("share_on_provider")
    gemms = ", ".join(
        f"{op} {'/'.join(f'{n}x{dtype}' for dtype, n in counts.items())}"
        for op, counts in report.get("gemm_dtypes", {}).items()
    )
    parts = [
        f"{report['graph']}: {report['nodes']} nodes, {100 * share:.0f}% on {report['provider']}"
        if share is not None
        else f"{report['graph']}: placement unknown",
        f"GEMMs ran as {gemms}" if gemms else "",
        f"(exported as {_dtypes(report.get('gemm_dtypes_in_graph', {}))})" if gemms else "",
        f"fell back: {', '.join(report['fallback_ops'])}" if report["fallback_ops"] else "",
        f"upcast: {', '.join(report['upcast_ops'])}" if report["upcast_ops"] else "",
        f"decomposed: {', '.join(report['decomposed_ops'])}" if report["decomposed_ops"] else "",
    ]
    return "; ".join(p for p in parts if p)


def _dtypes(gemms: dict[str, dict[str, int]]) -> str:
    return "/".join(sorted({dtype for counts in gemms.values() for dtype in counts})) or "?"
