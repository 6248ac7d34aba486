"""The model's real dtypes against the policy: the parameters' storage format, and the loss scaling they need."""

from __future__ import annotations

import logging

import torch

from mpx.formats import FP8_E4M3, FP8_E5M2, FP16
from mpx.policy import Policy

logger = logging.getLogger("mpx")


def apply_params_format(model: torch.nn.Module, policy: Policy, kept: set[int]) -> None:
    """Store float parameters and buffers in the policy's params format when it is fp16/bf16 (kept ones: fp32).

    Under a params=fp32 policy a model the user cast to fp16/bf16 stays so: mpx keeps fp32 masters of its
    parameters and, for fp16 gradients, dynamic loss scaling; a logged warning names the policy and the dtype.
    """
    target = policy.params.torch_dtype
    low: set[torch.dtype] = set()
    with torch.no_grad():
        for module in model.modules():
            tensors = [*module._parameters.values(), *module._buffers.values()]
            for tensor in (t for t in tensors if t is not None and t.is_floating_point()):
                kept_fp32 = id(tensor) in kept
                if not kept_fp32 and target == torch.float32:
                    if tensor.dtype in (torch.float16, torch.bfloat16):
                        low.add(tensor.dtype)
                    continue
                dtype = torch.float32 if kept_fp32 else target
                if tensor.dtype != dtype:
                    tensor.data = tensor.data.to(dtype)
    if low:
        found = " and ".join(sorted(str(d).removeprefix("torch.") for d in low))
        scaling = "dynamic loss scaling (fp16 gradients underflow)" if torch.float16 in low else "no loss scaling"
        logger.warning(
            "mpx: policy %s keeps parameters in fp32, but the model's are %s: training %s parameters with fp32 "
            "master copies and %s; call model.float() first to train fp32 parameters",
            policy,
            found,
            found,
            scaling,
        )


def default_loss_scale(policy: Policy, model: torch.nn.Module) -> str:
    """'dynamic' when gradients can underflow: fp16 parameters, or fp16/fp8 compute; else 'none'."""
    fp16_params = any(p.dtype == torch.float16 for p in model.parameters() if p.requires_grad)
    low_compute = {policy.compute, policy.backward} & {FP16, FP8_E4M3, FP8_E5M2}
    return "dynamic" if fp16_params or low_compute else policy.default_loss_scale
