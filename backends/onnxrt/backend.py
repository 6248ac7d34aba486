"""OnnxRuntimeBackend: mpx ops as cached ONNX Runtime sessions on one execution provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mpx.backend import Backend, Support
from mpx.errors import BackendUnavailableError, OpError
from mpx.formats import FORMATS, Format
from mpx.ops.spec import OpSpec, Pass

from .graphs import boundary_dtype, build_graph, output_dtypes
from .placement import GraphUnsupported, place
from .providers import default_provider, normalize_options, probe
from .semantics import Semantics, measure, summarize
from .session_cache import CompiledGraph, SessionCache


class OnnxRuntimeBackend(Backend):
    """Runs every registry op as a small ONNX graph on one EP; says truthfully how the EP runs each one."""

    name = "onnxrt"

    def __init__(
        self,
        provider: str | None = None,
        provider_options: Mapping[str, Any] | None = None,
        session_config: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        self.provider = provider or default_provider()
        self.provider_options = normalize_options(self.provider, provider_options)
        self.session_config = normalize_options("session_config", session_config)
        reason = probe(self.provider, self.provider_options)
        if reason:
            raise BackendUnavailableError(f"onnxrt:{self.provider} cannot start: {reason}")
        self.name = name or (f"onnxrt:{provider}" if provider else "onnxrt")
        self.device = self.provider
        self.formats = FORMATS
        self.cache = SessionCache()
        self._semantics: dict[str, Semantics] | None = None
        self._ops: dict[int, OpSpec] = {}  # every op with cached sessions, held so that its id stays its own
        self._shapes: dict[tuple, tuple[tuple, tuple]] = {}  # (op, format, pass, input class) -> shape class

    # -- measured semantics -------------------------------------------------------------------------
    @property
    def semantics(self) -> dict[str, Semantics]:
        """Overflow and subnormal handling per format, measured once with probe graphs on the EP."""
        if self._semantics is None:
            self._semantics = {f.name: measure(f, self.provider, self.provider_options, self.session_config)
                               for f in FORMATS}
        return self._semantics

    @property
    def overflow(self) -> str:  # type: ignore[override]
        return summarize(self.semantics)[0]

    @property
    def subnormals(self) -> str:  # type: ignore[override]
        return summarize(self.semantics)[1]

    # -- support and running ------------------------------------------------------------------------
    def support(self, op: OpSpec, fmt: Format, pass_: Pass = "forward", input_class: str = "normal") -> Support:
        """How the EP runs (op, fmt, pass) for the shapes of `input_class`, read off the graph it really runs."""
        base = super().support(op, fmt, pass_)
        if not base.runs:
            return base
        key = (id(op), fmt.name, pass_, input_class)  # op is held in _ops by compiled(): its id stays its own
        if key not in self._shapes:  # inputs are made once per input class, not per call
            inputs = op.to_storage(fmt, tuple(op.make_inputs(fmt, input_class, torch.Generator().manual_seed(0))))
            grad_shapes = self._grad_shapes(op, fmt, inputs) if pass_ == "backward" else ()
            self._shapes[key] = (tuple(tuple(t.shape) for t in inputs), grad_shapes)
        return self.compiled(op, fmt, pass_, *self._shapes[key]).support

    def compiled(self, op: OpSpec, fmt: Format, pass_: Pass, shapes: tuple, grad_shapes: tuple = ()) -> CompiledGraph:
        """The cached session and verdict of (op, fmt, pass, shape class)."""
        self._ops.setdefault(id(op), op)
        key = (id(op), fmt.name, pass_, shapes, grad_shapes)
        return self.cache.get(key, lambda: self._compile(op, fmt, pass_, shapes, grad_shapes))

    def run(
        self,
        op: OpSpec,
        fmt: Format,
        inputs: tuple[torch.Tensor, ...],
        pass_: Pass = "forward",
        grad_outputs: tuple[torch.Tensor, ...] | None = None,
    ) -> tuple[torch.Tensor, ...]:
        # the hot path: one dict lookup, zero-copy numpy views in, zero-copy torch views out
        # ops are keyed by identity: every op that reaches the cache is held in _ops, so ids are not reused
        op_key = id(op)
        if pass_ == "backward" and grad_outputs is not None:
            tensors = (*inputs, *grad_outputs)
            key = (op_key, fmt.name, pass_, tuple([t.shape for t in inputs]), tuple([g.shape for g in grad_outputs]))
        else:
            tensors = inputs
            key = (op_key, fmt.name, pass_, tuple([t.shape for t in inputs]), ())
        cache = self.cache
        entry = cache.entries.get(key)
        if entry is None:
            self._check_call(op, fmt, inputs, pass_, grad_outputs)
            entry = self.compiled(op, fmt, pass_, key[3], key[4])
        else:
            cache.hits += 1
        if entry.plain_inputs:
            try:
                arrays = [t.numpy() for t in tensors]
            except (RuntimeError, TypeError):  # tensors that need grad or live on another device
                arrays = None
        elif entry.session is None:
            raise OpError(f"{self.name} cannot run {op.name} {pass_} in {fmt.name}: {entry.support.reason}")
        else:
            arrays = None
        if arrays is None:
            arrays = [_to_numpy(t, dtype) for t, dtype in zip(tensors, entry.input_dtypes, strict=False)]
        try:
            results = entry.session.run(entry.output_names, dict(zip(entry.input_names, arrays, strict=False)))
        except Exception as error:  # this op failed on the EP; the cache and the other ops are untouched
            raise OpError(f"{self.name}: {op.name} {pass_} in {fmt.name} failed on {self.provider}: "
                          f"{str(error).strip()[:300]}") from None
        if entry.plain_outputs:
            return tuple(map(torch.from_numpy, results))
        return tuple(_to_torch(r, dtype) for r, dtype in zip(results, entry.output_kinds, strict=False))

    def _check_call(self, op, fmt, inputs, pass_, grad_outputs) -> None:
        if len(inputs) != op.arity:
            names = ", ".join(a.name for a in op.args)
            raise OpError(f"{op.name} takes {op.arity} inputs ({names}), got {len(inputs)}")
        for arg, tensor in zip(op.args, inputs, strict=False):
            if tensor.dtype != arg.storage_dtype(fmt):
                raise OpError(f"{op.name} input {arg.name!r} must be {arg.storage_dtype(fmt)} in a {fmt.name} case "
                              f"(see OpSpec.to_storage), got {tensor.dtype}")
        if pass_ == "backward" and grad_outputs is None:
            raise OpError(f"{op.name} backward needs grad_outputs, one per output")

    def _grad_shapes(self, op: OpSpec, fmt: Format, inputs: tuple[torch.Tensor, ...]) -> tuple:
        with torch.no_grad():
            outputs = op.reference(*(t.to(torch.float64) if t.is_floating_point() else t for t in inputs), **op.attrs)
        return tuple(tuple(o.shape) for o in outputs)

    def _compile(self, op: OpSpec, fmt: Format, pass_: Pass, shapes: tuple, grad_shapes: tuple) -> CompiledGraph:
        try:
            built = build_graph(op, fmt, pass_, shapes, grad_shapes)
        except OpError as error:
            return CompiledGraph(Support("unsupported", str(error)))
        try:
            placement = self._place(built, fmt)
            status, reason = placement.status, placement.reason
            if built.decompositions:  # the op's graph itself works around the EP's kernel (e.g. NaN in ReduceMax)
                status = "decomposed" if status == "native" else status
                reason = "; ".join((*built.decompositions, *([reason] if reason else [])))
        except GraphUnsupported as error:
            if not built.decomposable:
                return CompiledGraph(Support("unsupported", f"{self.provider}: {error}"))
            try:
                built = build_graph(op, fmt, pass_, shapes, grad_shapes, decompose=True)
                placement = self._place(built, fmt)
            except (GraphUnsupported, OpError) as second:
                reason = f"{self.provider}: {error}; its decomposition too: {second}"
                return CompiledGraph(Support("unsupported", reason))
            done = "; ".join(built.decompositions)
            status = "decomposed" if placement.status == "native" else placement.status
            reason = f"{self.provider} lacks a native kernel ({str(error)[:160]}); decomposed: {done}"
            reason += f"; {placement.reason}" if placement.reason else ""
        except Exception as error:  # an EP that crashes while compiling fails this graph only
            reason = f"{self.provider} failed to compile: {type(error).__name__}: {error}"
            return CompiledGraph(Support("unsupported", reason))
        storage = [a.storage_dtype(fmt) for a in op.args]
        storage += list(output_dtypes(op, fmt, "forward")) if pass_ == "backward" else []
        return CompiledGraph(Support(status, reason), placement.session, built.input_names, built.input_dtypes,
                             built.output_dtypes, placement.nodes,
                             plain_inputs=all(boundary_dtype(d) == d for d in storage),
                             output_names=[o.name for o in placement.session.get_outputs()],
                             plain_outputs=all(boundary_dtype(d) == d for d in built.output_dtypes))

    def _place(self, built: Any, fmt: Format) -> Any:
        return place(built.model, fmt.onnx_type, self.provider, self.provider_options, self.session_config)

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        from .builder import model_versions

        ir_version, opset = model_versions()
        return {
            **super().describe(),
            "provider": self.provider,
            "provider_options": dict(self.provider_options),
            "onnxruntime": ort.__version__,
            "ir_version": ir_version,
            "opset": opset,
            "semantics": {name: s.to_dict() for name, s in self.semantics.items()},
            "session_cache": self.cache.stats(),
        }


def _to_numpy(tensor: torch.Tensor, dtype: Any) -> np.ndarray:
    if tensor.dtype != boundary_dtype(tensor.dtype) or tensor.device.type != "cpu":
        tensor = tensor.to("cpu", torch.float32)
    array = tensor.detach().numpy()
    return array if array.dtype == dtype else array.astype(dtype)


def _to_torch(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    tensor = torch.from_numpy(np.asarray(array))
    return tensor if tensor.dtype == dtype else tensor.to(dtype)
