"""The error bound of a model-level inference case: the standard rounding model, evaluated on the model itself.

Wilkinson's standard model says a computed value is the exact one times (1 + delta), |delta| <= u (the unit
roundoff, eps / 2), plus an absolute eta <= min_subnormal / 2 where a result falls below the normal range.
Under a mixed-precision policy the rounding sites of a forward pass are known: every low-precision GEMM
(mm, addmm, bmm, convolution, attention, ...) rounds each float input to the compute format and its output to
the GEMM output format (bf16 for fp8), and every other arithmetic op rounds its output to fp32.

`predicted_error` runs the model in float64 with exactly that: each site's values multiplied by (1 + u * s),
s = +-1 at random, plus eta * s' for formats with subnormals. Its relative error ||y_probe - y|| / ||y|| is the
first-order error the policy's roundings cause in *this* model on *these* inputs, with every error at the
largest magnitude the model allows. The bound of the case is SAFETY times that:

- real round-to-nearest errors are at most u and mostly smaller (RMS u / sqrt(3)), so a correct backend's
  error is typically ~0.6 of the probe;
- SAFETY = 4 covers what the probe does not randomise: a weight rounds the same way at each of its uses,
  fp32 accumulation inside a GEMM (up to sqrt(n) u_fp32, only visible in the fp32 column), and rounding sites
  inside fused kernels that the probe sees as one op.

So a correct backend sits around 0.1-0.3 of its bound, while one that rounds to a format with an 8x larger u
(fp16 claimed, bf16 delivered) or 16x (bf16 claimed, fp8 e4m3 delivered), or adds noise of a few u, fails.
fp32 is held to the same rule with u = 2^-24: a bound of a few 1e-7, not a tolerance that fp32 could not fail.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from mpx.formats import FP32, Format
from mpx.policy import Policy, gemm_output_format

SAFETY = 2.5
PROBE_SEED = 20240607
# aten ops that torch.autocast runs in low precision, as a float64 forward reaches them (after decomposition)
GEMM_OPS = frozenset(
    """mm addmm bmm baddbmm addbmm mv addmv dot matmul linear convolution _convolution conv2d conv1d
    scaled_dot_product_attention _scaled_dot_product_flash_attention_for_cpu _scaled_dot_product_attention_math
    _native_multi_head_attention mkldnn_rnn_layer _thnn_fused_lstm_cell lstm_cell""".split()
)
# ops that compute (not move) values and are not pointwise-tagged: their outputs round to fp32
ARITHMETIC_OPS = frozenset(
    """_softmax _log_softmax native_layer_norm native_batch_norm _native_batch_norm_legit_no_training mean sum
    var_mean _log_softmax_backward_data logsumexp""".split()
)


def unit_roundoff(fmt: Format) -> float:
    """u = eps / 2: the largest relative error of round-to-nearest in `fmt`."""
    return fmt.eps / 2


class _Perturb(TorchDispatchMode):
    """Multiplies the values at each rounding site by (1 + u s) with random signs s (see the module docstring)."""

    def __init__(self, policy: Policy, seed: int) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(seed)
        compute, output = policy.compute, gemm_output_format(policy.compute)
        self.low = policy.compute != FP32
        self.inputs = (unit_roundoff(compute), compute.min_subnormal / 2 if compute.is_fp8 else 0.0)
        self.outputs = (unit_roundoff(output), 0.0)
        self.fp32 = (unit_roundoff(FP32), 0.0)

    def _signs(self, like: torch.Tensor) -> torch.Tensor:
        bits = torch.randint(0, 2, like.shape, generator=self.generator, device="cpu")
        return (2.0 * bits - 1.0).to(like.dtype).to(like.device)

    def _perturbed(self, value: Any, size: tuple[float, float]) -> Any:
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.numel() == 0:
            return value
        relative, absolute = size
        result = value * (1 + relative * self._signs(value))
        if absolute:
            result = result + absolute * self._signs(value) * (value != 0)  # zero rounds exactly
        return torch.where(value.isfinite(), result, value)  # -inf in an attention mask stays -inf

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in GEMM_OPS and self.low:
            args, kwargs = tree_map(lambda v: self._perturbed(v, self.inputs), (args, kwargs))
            return tree_map(lambda v: self._perturbed(v, self.outputs), func(*args, **kwargs))
        out = func(*args, **kwargs)
        if name in GEMM_OPS or name in ARITHMETIC_OPS or torch.Tag.pointwise in func.tags:
            if name.endswith("_") and isinstance(out, torch.Tensor):  # in place: perturb the tensor itself
                return out.copy_(self._perturbed(out, self.fp32))
            return tree_map(lambda v: self._perturbed(v, self.fp32), out)
        return out


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """||got - want||_2 / ||want||_2 over every output element, in float64 (inf when got is not finite)."""
    got, want = got.detach().to("cpu", torch.float64), want.detach().to("cpu", torch.float64)
    if not torch.isfinite(got).all():
        return float("inf")
    return float(torch.linalg.vector_norm(got - want) / torch.linalg.vector_norm(want))


def predicted_error(model64: nn.Module, inputs: torch.Tensor, policy: Policy, reference: torch.Tensor) -> float:
    """The relative output error of `policy`'s roundings on the float64 model, at their largest magnitude."""
    with torch.no_grad(), _Perturb(policy, PROBE_SEED):
        probed = model64(inputs)
    return relative_error(probed, reference)
