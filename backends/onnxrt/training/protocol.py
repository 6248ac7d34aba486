"""The loss-scaler / master-weight protocol on an execution provider: unscale + overflow check, masked SGD /
AdamW master updates and cast back, each one cached session of protocol_graphs.py per shape list.

Tensors stay torch tensors in host memory; each call feeds them to its session and copies the results back
in place. SGD, Adam (no weight decay) and AdamW in their torch defaults run on the EP with fp32 masters and
state; every other optimizer or setting returns False from `masked_step` so that the caller runs torch's own
step on the host, masked.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mpx.errors import OpError
from mpx.formats import FORMATS
from mpx.training.state_formats import StateFormats

from ..builder import FLOAT
from ..native_log import run_options
from ..placement import GraphUnsupported, place
from ..providers import Options, Target, assigned_providers
from .protocol_flat import AdamBuffers, Flats, flatten, scatter
from .protocol_graphs import (
    ProtocolGraph,
    adam_graph,
    cast_back_graph,
    check_adamw_graph,
    sgd_graph,
    unscale_check_graph,
)
from .protocol_updates import update_kind, write_flat_adamw, write_updates

# ORT's intra-op threads spin after each run by default, stealing the cores the torch half of a step needs
NO_SPINNING = (("session.intra_op.allow_spinning", "0"),)
CAST_DTYPES = frozenset(f.torch_dtype for f in FORMATS)


@dataclass(frozen=True)
class ProtocolSession:
    """One protocol graph as the EP runs it, and what placement found."""

    session: Any
    label: str
    inputs: tuple[str, ...]
    status: str  # native | upcast | fallback | decomposed
    reason: str
    nodes: int
    nodes_on_provider: int
    fallback_ops: dict[str, int]
    decomposed_ops: tuple[str, ...]

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(None, {name: feed[name] for name in self.inputs}, run_options())
        except Exception as error:  # the EP failed at run time: name the graph, not just onnxruntime's words
            raise OpError(f"onnxrt: the training protocol's {self.label} graph failed: {str(error)[:300]}") from None


class EpProtocol:
    """The protocol's sessions on one EP target, built once per (graph kind, shapes) and reused every step."""

    def __init__(self, target: Target, session_config: Options = ()) -> None:
        self.target = target
        self.config = tuple(dict((*NO_SPINNING, *session_config)).items())
        self._sessions: dict[Hashable, ProtocolSession] = {}
        self._lock = threading.Lock()
        self._flat_buffers = AdamBuffers()  # AdamW state laid end to end, per optimizer

    def session(self, key: Hashable, build: Callable[[bool], ProtocolGraph]) -> ProtocolSession:
        """The cached session of `key`; `build(decompose)` makes its graph (decomposed where the EP lacks a kernel)."""
        entry = self._sessions.get(key)
        if entry is None:
            with self._lock:
                entry = self._sessions.get(key) or self._compile(key, build)
                self._sessions[key] = entry
        return entry

    def _compile(self, key: Hashable, build: Callable[[bool], ProtocolGraph]) -> ProtocolSession:
        graph = build(False)
        try:
            placement = place(graph.model, FLOAT, self.target, self.config)
        except GraphUnsupported as error:
            graph = build(True)
            if not graph.decompositions:
                raise self._refused(key, error) from None
            try:
                placement = place(graph.model, FLOAT, self.target, self.config)
            except GraphUnsupported as second:
                raise self._refused(key, second) from None
        status, reason = placement.status, placement.reason
        if graph.decompositions:
            status = "decomposed" if status == "native" else status
            reason = "; ".join((*graph.decompositions, *([reason] if reason else [])))
        op_types = {node.name: node.op_type for node in graph.model.graph.node}
        assigned = assigned_providers(placement.session) or {}
        moved = Counter(op_types.get(n, n) for n, ep in assigned.items() if ep != self.target.provider)
        nodes = len(assigned) or len(placement.nodes)
        on_provider = nodes - sum(moved.values()) if assigned or status != "fallback" else 0
        return ProtocolSession(
            placement.session,
            str(key[0]),
            graph.inputs,
            status,
            reason,
            nodes,
            on_provider,
            dict(sorted(moved.items())),
            graph.decompositions,
        )

    def _refused(self, key: Hashable, error: Exception) -> OpError:
        kind = key[0] if isinstance(key, tuple) else key
        return OpError(f"onnxrt:{self.target.provider} cannot run the training protocol's {kind} graph: {error}")

    def placements(self) -> list[dict[str, Any]]:
        """Per protocol graph built so far, in the keys of the model graphs' placement reports."""
        return [
            {
                "graph": f"protocol {key[0]} ({_inputs(key[1])})",
                "kind": "protocol",
                "protocol": key[0],
                "provider": self.target.provider,
                "status": entry.status,
                "reason": entry.reason,
                "nodes": entry.nodes,
                "nodes_on_provider": entry.nodes_on_provider,
                "share_on_provider": round(entry.nodes_on_provider / entry.nodes, 4) if entry.nodes else 1.0,
                "fallback_ops": entry.fallback_ops,
                "upcast_ops": {},
                "decomposed_ops": list(entry.decomposed_ops),
                "gemm_dtypes": {},
            }
            for key, entry in self._sessions.items()
        ]

    # -- the protocol ---------------------------------------------------------------------------------
    def unscale_and_check_(
        self,
        grads: Sequence[torch.Tensor],
        found_inf: torch.Tensor,
        inv_scale: torch.Tensor,
        saturation_limit: float | None,
    ) -> bool:
        """The EP's unscale + check of fp32 host grads, written in place; False where they are not all that."""
        grads = [g for g in grads if g.numel()]
        if not all(_host(g, torch.float32) for g in grads) or not _host(found_inf, None) or not _host(inv_scale, None):
            return False
        if not grads:  # nothing to unscale or check: found_inf stays as it is
            return True
        flat = flatten(grads) if len(grads) > 1 else grads[0].reshape(-1)
        feed, unscale = _check_feed(flat, found_inf, inv_scale)
        key = ("unscale_check" if unscale else "check", ((flat.numel(),),), saturation_limit)  # ~10 EP nodes
        entry = self.session(key, lambda decompose: unscale_check_graph(key[1], saturation_limit, decompose, unscale))
        *unscaled, found = entry.run(feed)
        with torch.no_grad():
            if unscaled:
                scatter(torch.from_numpy(unscaled[0]), grads)
            found_inf.fill_(float(found.reshape(-1)[0]))
        return True

    def masked_step(
        self,
        optimizer: torch.optim.Optimizer,
        grads: Mapping[torch.Tensor, torch.Tensor],
        skip: torch.Tensor,
        state_formats: StateFormats,
    ) -> bool:
        """The EP's masked SGD / AdamW step of `optimizer`; False (nothing done) for what the EP graphs do not do."""
        kind = update_kind(optimizer, grads, state_formats)
        if kind is None or not _host(skip, None):
            return False
        found_inf = _host_scalar(skip, ())
        for group in optimizer.param_groups:
            params = [p for p in group["params"] if p in grads and p.numel()]
            if not params:
                continue
            flats = self._flat_buffers.get(optimizer, params) if kind == "adamw" and len(params) > 1 else None
            if flats is not None:
                self._flat_adamw(group, params, [grads[p] for p in params], flats, found_inf)
                continue
            shapes = tuple(tuple(p.shape) for p in params)
            build = sgd_graph if kind == "sgd" else adam_graph
            entry = self.session((kind, shapes), lambda _decompose, build=build, shapes=shapes: build(shapes))
            write_updates(kind, entry.run, group, optimizer.state, params, grads, skip, found_inf)
        return True

    def fused_unscale_and_step(
        self,
        optimizer: torch.optim.Optimizer,
        grads: Mapping[torch.Tensor, torch.Tensor],
        found_inf: torch.Tensor,
        inv_scale: torch.Tensor,
        saturation_limit: float | None,
        state_formats: StateFormats,
    ) -> bool:
        """Unscale + check and AdamW of one parameter group laid end to end, in one graph (check_adamw_graph);
        False (nothing done) for anything else."""
        if update_kind(optimizer, grads, state_formats) != "adamw" or len(optimizer.param_groups) != 1:
            return False
        params = [p for p in optimizer.param_groups[0]["params"] if p in grads and p.numel()]
        if len(params) < 2 or len(params) != len(grads) or not _host(found_inf, None) or not _host(inv_scale, None):
            return False
        flats = self._flat_buffers.get(optimizer, params)
        if flats is None:
            return False
        gradients = [grads[p] for p in params]
        flat = flatten(gradients)
        feed, unscale = _check_feed(flat, found_inf, inv_scale)
        size = flat.numel()
        key = ("unscale_check_adamw" if unscale else "check_adamw", ((size,),), saturation_limit)
        entry = self.session(key, lambda decompose: check_adamw_graph(size, saturation_limit, decompose, unscale))
        with torch.no_grad():
            unscaled = gradients if unscale else []
            found_inf.fill_(write_flat_adamw(entry.run, optimizer.param_groups[0], params, feed, flats, unscaled))
        return True

    @torch.no_grad()
    def _flat_adamw(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        flats: Flats,
        found_inf: np.ndarray,
    ) -> None:
        """One AdamW graph over the group's tensors laid end to end (they share one step count): the same
        element-wise update, ~15 EP nodes instead of ~15 per tensor. Masters and gradients are laid end to end
        for the call; moments and step counts stay pieces of flat buffers (protocol_flat.py)."""
        flat = flatten(grads)
        shapes = ((flat.numel(),),)
        entry = self.session(("adamw", shapes), lambda _decompose: adam_graph(shapes))
        write_flat_adamw(entry.run, group, params, {"grad0": flat.numpy(), "found_inf": found_inf}, flats, [])

    def cast_back(self, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Round fp32 masters into their parameters on the EP; returns the pairs it could not take (host ones)."""
        ours, rest = [], []
        for param, master in pairs:
            if master is param:
                continue
            fits = param.numel() and param.dtype in CAST_DTYPES and _host(master, torch.float32) and _host(param, None)
            (ours if fits and param.shape == master.shape else rest).append((param, master))
        if ours:
            shapes = tuple(tuple(p.shape) for p, _ in ours)
            dtypes = tuple(p.dtype for p, _ in ours)
            entry = self.session(("cast_back", shapes, dtypes), lambda _decompose: cast_back_graph(shapes, dtypes))
            results = entry.run({f"master{i}": _array(m) for i, (_, m) in enumerate(ours)})
            with torch.no_grad():
                for (param, _), value in zip(ours, results, strict=True):
                    param.copy_(torch.from_numpy(value))
        return rest


def _inputs(shapes: Sequence[tuple[int, ...]]) -> str:
    """What a protocol graph reads: its tensors, or one array (the tensors laid end to end, as unscale + check
    and AdamW read them)."""
    if len(shapes) == 1 and len(shapes[0]) == 1:
        return f"one array of {shapes[0][0]} values"
    return f"{len(shapes)} tensor{'s' if len(shapes) != 1 else ''}"


def _host(tensor: torch.Tensor, dtype: torch.dtype | None) -> bool:
    """A tensor in host memory (of `dtype` when given): what the sessions read without a copy to the host."""
    return isinstance(tensor, torch.Tensor) and tensor.device.type == "cpu" and dtype in (None, tensor.dtype)


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().contiguous().numpy()


def _check_feed(
    flat: torch.Tensor, found_inf: torch.Tensor, inv_scale: torch.Tensor
) -> tuple[dict[str, np.ndarray], bool]:
    """The check graphs' feed, and whether they unscale: at a scale of 1 (fp32, bf16) there is nothing to
    divide (inv_scale is a host value: reading it is no sync)."""
    inverse = _host_scalar(inv_scale, ())
    feed = {"grad0": _array(flat), "inv_scale": inverse, "found_inf": _host_scalar(found_inf, (1,))}
    return feed, float(inverse) != 1.0


def _host_scalar(tensor: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """A one-element host tensor as an fp32 array of `shape` (numpy's conversions: no torch op per call)."""
    return tensor.detach().numpy().astype(np.float32, copy=False).reshape(shape)
