"""FSDP2 (`fully_shard`) models under MixedPrecision: their mesh, their local shards, their overflow group.

FSDP2 keeps each parameter as a DTensor sharded over a DeviceMesh; under a MixedPrecisionPolicy it
all-gathers them in param_dtype for compute and reduce-scatters the gradients in reduce_dtype. The fp32
sharded parameters are then the master weights: mpx unscales and checks each rank's local gradient shards
and all-reduces found_inf over every rank of the mesh, so all ranks skip the same steps.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import torch

from mpx.errors import PolicyError


def in_process_group() -> bool:
    """Whether this process is one rank of a torch.distributed job (a default process group exists)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def is_dtensor(tensor: object) -> bool:
    """Whether `tensor` is a DTensor (without importing torch.distributed.tensor when nothing made one)."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(tensor, module.DTensor)


def local_tensors(tensors: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor's local shard (a view: in-place work on it changes the DTensor); plain tensors as they are."""
    return [t._local_tensor if is_dtensor(t) else t for t in tensors]


def sharding_mesh(model: torch.nn.Module) -> Any:
    """The DeviceMesh of the model's DTensor parameters, or None for a model that is not sharded.

    Raises PolicyError when its parameters live on different meshes (mpx all-reduces over one).
    """
    meshes: list[Any] = []
    for param in model.parameters():
        if is_dtensor(param) and param.device_mesh not in meshes:  # fully_shard without mesh= makes equal ones
            meshes.append(param.device_mesh)
    if len(meshes) > 1:
        raise PolicyError(
            f"the model's parameters are sharded over {len(meshes)} different device meshes; shard them all with "
            "one mesh (fully_shard(..., mesh=mesh) on every module) so one all-reduce covers every rank"
        )
    return meshes[0] if meshes else None


def overflow_group(mesh: Any) -> Any:
    """The process group spanning every rank of `mesh` (hybrid meshes too): found_inf is all-reduced over it."""
    if mesh.ndim == 1:
        return mesh.get_group()
    if mesh.size() == torch.distributed.get_world_size():
        return None  # the default group: every rank of the job
    return mesh._flatten().get_group()


def check_sharded_policy(policy: Any, model: torch.nn.Module) -> None:
    """FSDP2's sharded parameters are the fp32 masters: a policy that stores parameters in fp16/bf16 cannot work."""
    low = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters() if p.dtype != torch.float32})
    if policy.params.name != "fp32" or low:
        stored = ", ".join(low) if low else policy.params.name
        raise PolicyError(
            f"a model sharded with fully_shard keeps its parameters in {stored}, but FSDP2's sharded parameters are "
            f"mpx's fp32 master weights: keep them fp32 and pass mp_policy={_suggest(policy)} to fully_shard"
        )


def _suggest(policy: Any) -> str:
    compute = policy.compute.name
    preset = {"fp16": "fp16-mixed", "bf16": "bf16-mixed"}.get(compute, "bf16-mixed")
    return f"mpx.policy({preset!r}).fsdp_mixed_precision()"


def fsdp_policy(
    policy: Any, reduce_dtype: torch.dtype | None = torch.float32, output_dtype: torch.dtype | None = None
) -> Any:
    """The MixedPrecisionPolicy that runs `policy` under fully_shard: param_dtype = the compute format."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if policy.params.name != "fp32":
        raise PolicyError(
            f"policy {policy} stores parameters in {policy.params.name}; under FSDP2 the sharded fp32 parameters "
            f"are the master weights: use {_suggest(policy)}"
        )
    if policy.compute.is_fp8 or policy.backward.is_fp8:
        raise PolicyError(
            f"FSDP2 all-gathers parameters in the compute dtype and torch does not compute in {policy.compute.name}; "
            "shard with mpx.policy('bf16-mixed').fsdp_mixed_precision() and use mpx.fp8 layers for fp8 GEMMs"
        )
    if output_dtype is None and policy.output != policy.compute:
        output_dtype = policy.output.torch_dtype
    param_dtype = None if policy.compute.name == "fp32" else policy.compute.torch_dtype
    return MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype, output_dtype=output_dtype)
