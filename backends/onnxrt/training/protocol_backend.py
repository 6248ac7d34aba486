"""The TrainingBackend half of the onnxrt backend: models compiled for the EP (compile_backend.py), and the
protocol methods MixedPrecision and the precision ops' conformance cases call, run as EP graphs (protocol.py),
with torch on the host where those graphs do not apply."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from typing_extensions import override

from mpx.errors import PolicyError
from mpx.formats import Format
from mpx.ops.spec import OpSpec
from mpx.plugins.backend import Tensors, TrainingBackend
from mpx.policy import Policy
from mpx.training.state_formats import FP32_STATE, StateFormats

from ..graph import output_dtypes
from ..providers import Options, Target
from .protocol import EpProtocol


class EpTrainingProtocol(TrainingBackend):
    """Unscale + check, masked SGD/AdamW updates and cast back on the EP; torch tensors stay in host memory
    (`device` is "cpu"), so the skip flag and the scale are host values the sessions read without a sync."""

    target: Target
    session_config: Options
    provider: str

    @property
    def protocol(self) -> EpProtocol:
        """The protocol's sessions on this backend's EP (made on first use)."""
        protocol = self.__dict__.get("_protocol")
        if protocol is None:
            protocol = self.__dict__["_protocol"] = EpProtocol(self.target, self.session_config)
        return protocol

    @override
    def prepare_model(self, model: torch.nn.Module, policy: Policy) -> torch.nn.Module:
        """Compile `model` in place: its forward and backward graphs run as sessions on the EP."""
        from .compile_backend import OrtCompiler, compile_model

        compiler = getattr(model, "_mpx_ort_compiler", None)
        if not isinstance(compiler, OrtCompiler) or compiler.target != self.target:
            compiler = OrtCompiler(self.target, self.session_config)
            compile_model(model, compiler)
        compilers = self.__dict__.setdefault("_compilers", [])
        if all(c is not compiler for c in compilers):
            compilers.append(compiler)
        return model

    @override
    def placement(self) -> list[dict[str, Any]]:
        """Per graph: the prepared models' forward/backward graphs, then the protocol's (graph, kind, provider,
        nodes, nodes_on_provider, share_on_provider, fallback/upcast/decomposed ops, GEMM dtypes)."""
        graphs = [report for c in self.__dict__.get("_compilers", []) for report in c.placement()]
        return graphs + self.protocol.placements()

    @override
    def check_policy(self, policy: Policy) -> None:
        super().check_policy(policy)
        if policy.params.is_fp8:
            raise PolicyError(f"backend {self.name!r} keeps parameters in fp32, fp16 or bf16, not {policy.params.name}")

    @override
    def saturation_limit(self, fmt: Format) -> float | None:
        """fmt.max where the EP was measured to saturate `fmt` (then clamped gradients count as overflow)."""
        semantics = self.semantics.get(fmt.name)  # type: ignore[attr-defined]
        return fmt.max if semantics is not None and semantics.overflow == "saturate" else None

    @override
    def unscale_and_check_(
        self,
        grads: Sequence[torch.Tensor],
        found_inf: torch.Tensor,
        inv_scale: torch.Tensor,
        saturation_limit: float | None = None,
    ) -> torch.Tensor:
        if not self.protocol.unscale_and_check_(grads, found_inf, inv_scale, saturation_limit):
            return super().unscale_and_check_(grads, found_inf, inv_scale, saturation_limit)
        return found_inf

    @override
    def fused_unscale_and_step(
        self,
        optimizer: torch.optim.Optimizer,
        grads: Mapping[torch.Tensor, torch.Tensor],
        found_inf: torch.Tensor,
        inv_scale: torch.Tensor,
        saturation_limit: float | None,
        state_formats: StateFormats | None,
    ) -> bool:
        formats = state_formats or FP32_STATE
        return self.protocol.fused_unscale_and_step(optimizer, grads, found_inf, inv_scale, saturation_limit, formats)

    @override
    def masked_step(
        self,
        optimizer: torch.optim.Optimizer,
        grads: Mapping[torch.Tensor, torch.Tensor],
        skip: torch.Tensor,
        state_formats: StateFormats | None = None,
    ) -> None:
        """SGD / Adam / AdamW on the EP; any other optimizer (or state format) steps with torch on the host, masked."""
        if not self.protocol.masked_step(optimizer, grads, skip, state_formats or FP32_STATE):
            super().masked_step(optimizer, grads, skip, state_formats)

    @override
    def cast_back(self, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        rest = self.protocol.cast_back(pairs)
        if rest:
            super().cast_back(rest)

    def protocol_op(self, op: OpSpec, fmt: Format, inputs: Tensors) -> Tensors:
        """A precision op of conformance computed by the protocol above, in the op's output dtypes."""
        results = self._run_protocol_op(op, fmt, inputs)
        assert results is not None  # the caller asks only for the protocol's ops
        dtypes = output_dtypes(op, fmt, "forward")
        return tuple(r.to(d) for r, d in zip(results, dtypes, strict=True))
