"""OnnxRuntimeBackend: mpx ops as cached ONNX Runtime sessions on one execution provider."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from typing_extensions import override

from mpx.errors import BackendUnavailableError, OpError
from mpx.formats import FORMATS, Format
from mpx.ops.spec import OpSpec, Pass
from mpx.plugins.backend import Shapes, Support, Tensors
from mpx.training.protocol_ops import PROTOCOL_OPS

from .graph import BuiltGraph, boundary_dtype, build_graph, output_dtypes
from .native_log import run_options
from .placement import GraphUnsupported, Placement, place
from .providers import default_provider, normalize_options, probe, target
from .semantics import Semantics, measure, summarize
from .session_cache import CompiledGraph, SessionCache
from .training.protocol_backend import EpTrainingProtocol


class OnnxRuntimeBackend(EpTrainingProtocol):
    """Runs every registry op as a small ONNX graph on one EP; says truthfully how the EP runs each one.

    It trains too: the training protocol runs as EP graphs (training/protocol*.py), and the precision ops'
    conformance cases run through that protocol. Torch tensors stay in host memory: `device` is "cpu".
    """

    name = "onnxrt"

    def __init__(
        self,
        provider: str | None = None,
        provider_options: Mapping[str, Any] | None = None,
        session_config: Mapping[str, str] | None = None,
        name: str | None = None,
        device_type: str | None = None,
        device_id: int | None = None,
        ep_libraries: Mapping[str, str] | str | None = None,
    ) -> None:
        """provider: an EP name (a plugin EP's too); device_type (cpu|gpu|npu) and device_id pick a plugin
        EP's device; ep_libraries ({EP name: library path} or "name=path,...") registers plugin EP libraries."""
        from .distributions import conflict
        from .ep_libraries import parse_libraries, register_all

        register_all(parse_libraries(ep_libraries, "option ep_libraries"))
        self.provider = provider or default_provider()
        self.provider_options = normalize_options(self.provider, provider_options)
        self.session_config = normalize_options("session_config", session_config)
        reason = probe(self.provider, self.provider_options, device_type, device_id)
        if reason:
            raise BackendUnavailableError(f"onnxrt:{self.provider} cannot start: {reason}")
        self.target = target(self.provider, self.provider_options, device_type, device_id)
        if conflict():
            warnings.warn(conflict(), RuntimeWarning, stacklevel=2)
        self.name = name or (f"onnxrt:{provider}" if provider else "onnxrt")
        self.device = "cpu"  # where the torch tensors it trains live; the EP is self.provider
        self.formats = FORMATS
        self.cache = SessionCache()
        self._semantics: dict[str, Semantics] | None = None
        self._ops: dict[int, OpSpec] = {}  # every op with cached sessions, held so that its id stays its own
        # (op, format, pass, shapes or None) -> (input shapes, gradient shapes), or why the shapes do not fit
        self._shapes: dict[tuple[Any, ...], tuple[Shapes, Shapes] | Support] = {}
        self._ready: dict[tuple[Any, ...], CompiledGraph] = {}  # (op id, format, pass, *shapes) -> plain forward graphs
        self._run_options = run_options()  # the error is raised as OpError

    # -- measured semantics -------------------------------------------------------------------------
    @property
    def semantics(self) -> dict[str, Semantics]:
        """Overflow and subnormal handling per format, measured once with probe graphs on the EP."""
        if self._semantics is None:
            self._semantics = {f.name: measure(f, self.target, self.session_config) for f in FORMATS}
        return self._semantics

    @property
    @override
    def overflow(self) -> str:  # type: ignore[override]
        return summarize(self.semantics)[0]

    @property
    @override
    def subnormals(self) -> str:  # type: ignore[override]
        return summarize(self.semantics)[1]

    # -- support and running ------------------------------------------------------------------------
    @override
    def support(self, op: OpSpec, fmt: Format, pass_: Pass = "forward", shapes: Shapes | None = None) -> Support:
        """How the EP runs (op, fmt, pass) on inputs of `shapes`, read off the graph it really runs.

        shapes=None (any shapes): the verdict of the op's "normal" inputs.
        """
        base = super().support(op, fmt, pass_, shapes)
        if not base.runs:
            return base
        if shapes is not None:
            shapes = tuple(tuple(shape) for shape in shapes)
        self._ops.setdefault(id(op), op)  # held, so that the id in the keys below stays its own
        key = (id(op), fmt.name, pass_, shapes)
        if key not in self._shapes:  # the case's shapes are worked out once per shapes, not per call
            self._shapes[key] = self._case_shapes(op, fmt, pass_, shapes)
        case = self._shapes[key]
        if isinstance(case, Support):
            return case
        return self.compiled(op, fmt, pass_, *case).support

    def compiled(self, op: OpSpec, fmt: Format, pass_: Pass, shapes: Shapes, grad_shapes: Shapes = ()) -> CompiledGraph:
        """The cached session and verdict of (op, fmt, pass, shape class)."""
        self._ops.setdefault(id(op), op)
        key = (id(op), fmt.name, pass_, shapes, grad_shapes)
        return self.cache.get(key, lambda: self._compile(op, fmt, pass_, shapes, grad_shapes))

    @override
    def _run(self, op: OpSpec, fmt: Format, inputs: Tensors, pass_: Pass, grad_outputs: Tensors | None) -> Tensors:
        if pass_ == "forward" and op.name in PROTOCOL_OPS:  # certified as it trains: through the protocol
            return self.protocol_op(op, fmt, inputs)
        # the hot path (a forward call seen before, on CPU tensors numpy holds): one dict lookup, numpy views
        # in, the C++ session's run (its Python wrapper re-validates input names that are ours already),
        # torch views out. Ops are keyed by identity: each op here is held in _ops, so its id stays its own.
        if grad_outputs is None:
            entry = self._ready.get((id(op), fmt.name, pass_, *[t.shape for t in inputs]))
            if entry is not None:
                self.cache.hits += 1
                try:
                    arrays = [t.numpy() for t in inputs]
                except (RuntimeError, TypeError):  # tensors that need grad or live on another device
                    return self._run_entry(op, fmt, inputs, pass_, entry)
                try:
                    results = entry.run(
                        entry.output_names, dict(zip(entry.input_names, arrays, strict=True)), self._run_options
                    )
                except Exception as error:
                    raise self._failed(op, fmt, pass_, error) from None
                return tuple(map(torch.from_numpy, results))
        tensors = inputs if grad_outputs is None else (*inputs, *grad_outputs)
        shapes = tuple([t.shape for t in inputs])
        grad_shapes = tuple([g.shape for g in grad_outputs]) if grad_outputs is not None else ()
        entry = self.compiled(op, fmt, pass_, shapes, grad_shapes)
        if grad_outputs is None and entry.session is not None and entry.input_index is None:
            if entry.plain_inputs and entry.plain_outputs:
                self._ready[(id(op), fmt.name, pass_, *shapes)] = entry
        return self._run_entry(op, fmt, tensors, pass_, entry)

    def _run_entry(self, op: OpSpec, fmt: Format, tensors: Tensors, pass_: Pass, entry: CompiledGraph) -> Tensors:
        """Run one compiled graph on any tensors: widened at the boundary where numpy lacks their dtype."""
        if entry.session is None:
            raise OpError(f"{self.name} cannot run {op.name} {pass_} in {fmt.name}: {entry.support.reason}")
        if entry.input_index is not None:  # the graph does not read every tensor (e.g. add's backward)
            tensors = tuple(tensors[i] for i in entry.input_index)
        arrays = [_to_numpy(t, dtype) for t, dtype in zip(tensors, entry.input_dtypes, strict=True)]
        try:
            results = entry.run(
                entry.output_names, dict(zip(entry.input_names, arrays, strict=True)), self._run_options
            )
        except Exception as error:  # this op failed on the EP; the cache and the other ops are untouched
            raise self._failed(op, fmt, pass_, error) from None
        return tuple(_to_torch(r, dtype) for r, dtype in zip(results, entry.output_kinds, strict=True))

    def _failed(self, op: OpSpec, fmt: Format, pass_: Pass, error: Exception) -> OpError:
        detail = str(error).strip()[:300]
        return OpError(f"{self.name}: {op.name} {pass_} in {fmt.name} failed on {self.provider}: {detail}")

    def _case_shapes(
        self, op: OpSpec, fmt: Format, pass_: Pass, shapes: Shapes | None
    ) -> tuple[Shapes, Shapes] | Support:
        """(input shapes, gradient shapes) of a case; the normal inputs' shapes when `shapes` is None."""
        if shapes is None:
            inputs = op.to_storage(fmt, tuple(op.make_inputs(fmt, "normal", torch.Generator().manual_seed(0))))
            shapes = tuple(tuple(t.shape) for t in inputs)
        if pass_ == "forward":
            return shapes, ()
        try:
            return shapes, _output_shapes(op, fmt, shapes)
        except Exception as error:  # shapes the op's reference cannot take: no graph to judge
            return Support("unsupported", f"{op.name} does not take inputs of shapes {shapes}: {error}")

    def _compile(self, op: OpSpec, fmt: Format, pass_: Pass, shapes: Shapes, grad_shapes: Shapes) -> CompiledGraph:
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
        return CompiledGraph(
            Support(status, reason),
            placement.session,
            built.input_names,
            built.input_dtypes,
            built.output_dtypes,
            placement.nodes,
            plain_inputs=all(boundary_dtype(d) == d for d in storage),
            output_names=[o.name for o in placement.session.get_outputs()],
            plain_outputs=all(boundary_dtype(d) == d for d in built.output_dtypes),
            input_index=built.input_index,
        )

    def _place(self, built: BuiltGraph, fmt: Format) -> Placement:
        return place(built.model, fmt.onnx_type, self.target, self.session_config)

    @override
    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        from .builder import model_versions

        ir_version, opset = model_versions()
        return {
            **super().describe(),
            "device": self.provider,
            "provider": self.provider,
            "provider_options": dict(self.provider_options),
            **(self._plugin_facts() if self.target.plugin else {}),
            "onnxruntime": ort.__version__,
            "ir_version": ir_version,
            "opset": opset,
            "semantics": {name: s.to_dict() for name, s in self.semantics.items()},
            "session_cache": self.cache.stats(),
        }

    def _plugin_facts(self) -> dict[str, Any]:
        """Which plugin EP library and devices the sessions run on."""
        from .ep_libraries import device_type, libraries

        library = next((lib for lib in libraries() if lib.ep_name == self.provider), None)
        devices = [
            {"type": device_type(d), "vendor": d.ep_vendor, "metadata": dict(d.ep_metadata)}
            for d in self.target.devices()
        ]
        source = library.source if library else None
        return {"plugin_ep": {"library": library.path if library else None, "source": source, "devices": devices}}


def _to_numpy(tensor: torch.Tensor, dtype: Any) -> np.ndarray:
    if tensor.dtype != boundary_dtype(tensor.dtype) or tensor.device.type != "cpu":
        tensor = tensor.to("cpu", torch.float32)
    array = tensor.detach().numpy()
    return array if array.dtype == dtype else array.astype(dtype)


def _to_torch(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    tensor = torch.from_numpy(np.asarray(array))
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


def _output_shapes(op: OpSpec, fmt: Format, shapes: Shapes) -> Shapes:
    """The shapes of the op's outputs (its gradients' shapes) on inputs of `shapes`, from the reference."""
    inputs = []
    for arg, shape in zip(op.args, shapes, strict=False):
        dtype = arg.storage_dtype(fmt)
        inputs.append(torch.zeros(shape, dtype=torch.float64 if dtype.is_floating_point else dtype))
    with torch.no_grad():
        outputs = op.reference(*inputs, **op.attrs)
    return tuple(tuple(o.shape) for o in outputs)
