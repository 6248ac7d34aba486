"""CpuBackend: runs every registry op in every format by rounding where real hardware rounds."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from typing_extensions import override

from mpx.errors import MpxError, OpError
from mpx.formats import FORMATS, Format, Overflow, Subnormals
from mpx.formats import format as format_of
from mpx.ops.definitions.elementwise import ELEMENTWISE_OPS
from mpx.ops.reference import flush, flush_inputs, result_formats, vjp
from mpx.ops.spec import OpSpec, Pass
from mpx.plugins.backend import Tensors, TrainingBackend
from mpx.policy import Policy
from mpx.policy import policy as lookup_policy


def compute_dtype(op: OpSpec) -> torch.dtype:
    """fp32 for ops that accumulate (as GEMM units and reduction kernels do); float64 for the rest.

    float64 math on exactly stored inputs, then one rounding, is the correctly rounded result an
    element-wise unit delivers: element-wise ops get it even where their tolerance admits more.
    """
    return torch.float32 if op.tolerance.accumulation and op.name not in ELEMENTWISE_OPS else torch.float64


class CpuBackend(TrainingBackend):
    """Emulates a device on the CPU: inputs stored in the format, fp32 accumulation, outputs rounded to the format.

    overflow="saturate" clamps results to +-max like some NPUs; subnormals="flush" reads subnormal inputs
    as zero and flushes subnormal results. native=True makes autocast() use torch's own CPU autocast kernels.
    gemm_inputs="bf16" (or "fp16") rounds the floating inputs of GEMM-class ops (matmul, linear, conv2d,
    attention) asked in a wider format to it first, as CPU EPs that silently use bf16 units do: the conformance
    suite must call that `downcast`. support() is the base class's: native for every (op, format, pass).
    """

    name = "cpu"
    device = "cpu"
    formats = FORMATS

    def __init__(
        self,
        overflow: Overflow = "inf",
        subnormals: Subnormals = "keep",
        native: bool = False,
        gemm_inputs: str | None = None,
    ) -> None:
        if overflow not in ("inf", "saturate"):
            raise OpError(f"cpu backend: overflow must be 'inf' or 'saturate', not {overflow!r}")
        if subnormals not in ("keep", "flush"):
            raise OpError(f"cpu backend: subnormals must be 'keep' or 'flush', not {subnormals!r}")
        if not isinstance(native, bool):
            raise OpError(f"cpu backend: native must be True or False, not {native!r}")
        if gemm_inputs is not None and format_of_name(gemm_inputs) is None:
            raise OpError(f"cpu backend: gemm_inputs must be a format name such as 'bf16' or None, not {gemm_inputs!r}")
        self.overflow, self.subnormals, self.native = overflow, subnormals, native
        self.gemm_inputs: Format | None = format_of_name(gemm_inputs) if gemm_inputs is not None else None

    @override
    def _run(self, op: OpSpec, fmt: Format, inputs: Tensors, pass_: Pass, grad_outputs: Tensors | None) -> Tensors:
        """Forward: the op's outputs in their formats (precision ops through the training protocol).

        Backward: gradients of the differentiable args.
        """
        dtype = compute_dtype(op)
        values = tuple(_load(t, dtype) for t in inputs)
        values = flush_inputs(op, fmt, values, self.subnormals)
        narrow = self.gemm_inputs
        if narrow is not None and op.autocast == "lowp" and narrow.mantissa_bits < fmt.mantissa_bits:
            values = tuple(narrow.round(v) if v.is_floating_point() else v for v in values)
            grad_outputs = grad_outputs and tuple(narrow.round(g.to(dtype)) for g in grad_outputs)
        results = self._run_protocol_op(op, fmt, values) if pass_ == "forward" else None
        if results is None and pass_ == "forward":
            with torch.no_grad():
                results = op.reference(*values, **op.attrs)
        elif results is None:
            assert grad_outputs is not None  # run() checked: one per output
            grads = tuple(
                flush(_load(g, dtype), f, self.subnormals)
                for g, f in zip(grad_outputs, op.output_formats(fmt), strict=False)
            )
            results = vjp(op.reference, op.differentiable_args, values, grads, op.attrs)
        return tuple(self._store(r, f) for r, f in zip(results, result_formats(op, fmt, pass_), strict=False))

    def _store(self, result: torch.Tensor, fmt: Format) -> torch.Tensor:
        rounded = fmt.round(result, overflow=self.overflow, subnormals=self.subnormals)
        return rounded.to(fmt.torch_dtype)

    @override
    @torch.no_grad()
    def cast_back(self, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Round masters into the parameters' formats under this backend's overflow and subnormal rules."""
        for param, master in pairs:
            if master is param:
                continue
            fmt = format_of(param.dtype)
            if self.overflow == "inf" and self.subnormals == "keep" and not fmt.is_fp8:
                param.copy_(master)  # torch's own cast rounds exactly so (its fp8 casts saturate, even inf)
            else:
                param.copy_(fmt.round(master.float(), overflow=self.overflow, subnormals=self.subnormals))

    @override
    def check_policy(self, policy: Policy) -> None:
        from .autocast import check_policy

        check_policy(policy, self.native)

    @override
    @contextlib.contextmanager
    def autocast(self, policy: Policy | str, native: bool | None = None) -> Iterator[None]:
        """Run model code in the policy's compute format: emulated rounding, or torch's CPU autocast when native.

        `native` overrides the backend's own setting for this block.
        """
        from .autocast import emulated_autocast

        backend = self
        if native is not None and native != self.native:
            gemm_inputs = self.gemm_inputs.name if self.gemm_inputs else None
            backend = CpuBackend(self.overflow, self.subnormals, native=native, gemm_inputs=gemm_inputs)
        with emulated_autocast(lookup_policy(policy), backend):
            yield

    @override
    def describe(self) -> dict[str, Any]:
        facts = {**super().describe(), "native_autocast": self.native}
        if self.gemm_inputs is not None:  # a test option: reports of ordinary runs keep their shape
            facts["gemm_inputs"] = self.gemm_inputs.name
        return facts


def format_of_name(name: object) -> Format | None:
    """The format a gemm_inputs option names, or None when it names none."""
    if not isinstance(name, str):
        return None
    try:
        return format_of(name)
    except MpxError:
        return None


def _load(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A stored input in the compute dtype (integer and boolean inputs as they are)."""
    return tensor.to(dtype) if tensor.is_floating_point() else tensor
