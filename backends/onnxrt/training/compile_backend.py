"""mpx's torch.compile backend for onnxruntime: AOTAutograd forward and backward graphs as sessions on one EP.

dynamo captures the model (autocast included: under fp16/bf16 autocast the ATen graphs carry the casts, so the
ONNX graphs hold fp16/bf16 MatMul/Gemm/Conv and fp32 where torch.autocast keeps fp32); AOTAutograd splits each
capture into a forward and a backward graph in core ATen ops; each is exported with torch.onnx and run as an
InferenceSession on the EP. Parameters stay torch tensors on the host, fed as inputs on every call, and
gradients come back as torch tensors in the parameters' dtype (fp32 for fp32 parameters).

Attention is traced through the math SDPA path (fused attention kernels have no ONNX export of their
backward). Dropout stays in the graph: its masks come from onnxruntime's random generator, so they differ from
eager torch's under the same seed (eval() has no dropout and is deterministic). Shapes are static: a new input
shape is a new capture, each in the placement report; past dynamo's recompile_limit dynamo runs the model as
torch code on the host, and the report counts those calls in an "eager" entry.
"""

from __future__ import annotations

import builtins
import functools
import threading
import types
from typing import Any

import torch

from mpx.errors import MpxError

from ..providers import Options, Target
from .export import export_graph
from .placement_report import eager_report, graph_report
from .session_graph import SessionGraph


@functools.lru_cache(maxsize=1)
def _decompositions() -> Any:
    from torch._decomp import core_aten_decompositions

    return core_aten_decompositions()


class OrtCompiler:
    """A torch.compile backend: every graph dynamo captures runs as onnxruntime sessions on `target`."""

    def __init__(self, target: Target, session_config: Options = ()) -> None:
        self.target, self.session_config = target, session_config
        self.graphs: list[SessionGraph] = []
        self.captures: list[list[tuple[int, ...]]] = []  # the input shapes of each dynamo capture
        self.eager_calls = 0  # forward calls that ran no session: dynamo ran the model as torch code
        self._lock = threading.Lock()

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        from torch._dynamo.backends.common import aot_autograd
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with self._lock:
            capture = len(self.captures)
            self.captures.append([tuple(getattr(t, "shape", ())) for t in example_inputs])
        aot = aot_autograd(
            fw_compiler=functools.partial(self._compile, "forward", capture),
            bw_compiler=functools.partial(self._compile, "backward", capture),
            decompositions=_decompositions(),
        )
        with sdpa_kernel([SDPBackend.MATH]):  # a math path traced into plain ops, backward included
            return aot(graph, example_inputs)

    def _compile(self, kind: str, capture: int, graph: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        from torch._functorch.aot_autograd import make_boxed_func

        exported = export_graph(graph, example_inputs, kind)
        shapes = [tuple(t.shape) for t in example_inputs]
        session_graph = SessionGraph(exported, self.target, self.session_config, f"{kind} {capture}", shapes)
        with self._lock:
            self.graphs.append(session_graph)
        return make_boxed_func(session_graph)

    def placement(self) -> list[dict[str, Any]]:
        """One plain dict per compiled graph (see placement_report.graph_report), and one for the forward
        calls that ran as torch code on the host, if any."""
        with self._lock:
            graphs = list(self.graphs)
        reports = [graph_report(g) for g in graphs]
        if self.eager_calls:
            reports.append(eager_report(self.eager_calls, self.target.provider))
        return reports

    def forward_runs(self) -> int:
        """Session runs of forward graphs so far (a model call that adds none ran as torch code)."""
        return sum(g.calls for g in self.graphs if g.exported.kind == "forward")

    @property
    def compile_seconds(self) -> float:
        """Time spent exporting graphs and creating their sessions."""
        return sum(g.exported.seconds + g.session_seconds for g in self.graphs)


def compile_model(model: torch.nn.Module, compiler: OrtCompiler) -> torch.nn.Module:
    """Compile `model`'s forward in place with `compiler` (its own calls go through onnxruntime); returns it.

    The forward itself is compiled, not `model.compile()`'s call wrapper: dynamo skips that wrapper's frame
    and would run a torch.nn container (nn.Sequential) eagerly without a word. An mpx error raised while a
    graph compiles (an op the exporter cannot take, a graph the EP refuses) reaches the caller as itself,
    not wrapped in dynamo's BackendCompilerFailed.
    """
    from torch._dynamo.exc import BackendCompilerFailed

    eager = model.__dict__.get("_mpx_eager_forward") or model.forward
    compiled = torch.compile(own_frame(eager), backend=compiler, dynamic=False)

    @functools.wraps(eager)
    def forward(*args: Any, **kwargs: Any) -> Any:
        runs = compiler.forward_runs()
        try:
            result = compiled(*args, **kwargs)
        except BackendCompilerFailed as error:
            inner = getattr(error, "inner_exception", None)
            if isinstance(inner, MpxError):
                raise inner from None
            raise
        if compiler.forward_runs() == runs:
            compiler.eager_calls += 1
        return result

    model._mpx_eager_forward = eager
    model.forward = forward
    model._mpx_ort_compiler = compiler
    return model


def _calls_forward(*args: Any, **kwargs: Any) -> Any:
    return _FORWARD(*args, **kwargs)  # noqa: F821 (each copy's own globals hold _FORWARD)


def own_frame(forward: Any) -> Any:
    """A function that calls `forward`, with a code object of its own: the frame dynamo compiles.

    dynamo keeps its graphs and its recompile_limit per code object of the frame it compiles, and compiles a
    torch.nn container's forward through one shared wrapper frame: without a frame per model, every model would
    share those, and the ninth would run eagerly.
    """
    namespace = {"__builtins__": builtins, "_FORWARD": forward}
    return types.FunctionType(_calls_forward.__code__.replace(), namespace, "mpx_compiled_forward")
