"""Training real torch models on the CPU with emulated low-precision numerics, at the dispatcher.

`emulated_autocast(policy, backend)` turns on `torch.autocast("cpu")` and, for as long as it is entered,
replaces torch's AutocastCPU kernels of every op torch.autocast runs in low precision (CPU and CUDA lists,
autocast_lists.py) with kernels that round the float inputs to the policy's compute format with
`mpx::round_to`, compute in fp32 and round the outputs (fp8: e4m3 in, bf16 out); gradients are rounded to
the backward format. So einsum, nn.MultiheadAttention, RNNs and Tensor methods are caught wherever they
reach mm/linear/conv/SDPA, fp32-list ops (softmax, norms, losses) stay fp32 through torch's own kernels,
`torch.autocast("cpu", enabled=False)` opens an fp32 region, and torch.compile traces the same rounding.
With a native backend (CpuBackend(native=True)) this is torch.autocast("cpu", dtype) instead.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._pytree import tree_flatten, tree_map

from mpx.errors import PolicyError
from mpx.formats import BF16, FP16, FP32
from mpx.policy import Policy, gemm_output_format

from . import rounding_op
from .autocast_lists import CPU_LOWP, LOWP, present

_AUTOCAST_CPU = torch._C.DispatchKey.AutocastCPU
_NO_AUTOCAST = torch._C.DispatchKeySet(_AUTOCAST_CPU)


@dataclass
class _Emulation:
    """One emulated autocast: the rounding of lowp op inputs and outputs, forward and backward."""

    policy: Policy
    overflow: str
    subnormals: str
    rounded_weights: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        forward, backward = self.policy.compute, self.policy.backward
        # an input: rounded to the compute format; its gradient leaves the op as the backward GEMM's output
        self.input_formats = (forward.name, gemm_output_format(backward).name)
        # an output: the GEMM's output format; the gradient arriving is rounded to the backward format
        self.output_formats = (gemm_output_format(forward).name, backward.name)
        self.region = f"{forward.name}>{backward.name}/{self.overflow}/{self.subnormals}"

    def _round(self, x: torch.Tensor, formats: tuple[str, str], tracing: bool) -> torch.Tensor:
        return rounding_op.round_differentiable(
            x, formats[0], self.overflow, self.subnormals, formats[1], self.region if tracing else ""
        )

    def round_input(self, x: torch.Tensor, tracing: bool) -> torch.Tensor:
        """x in fp32 on the compute format's grid; a weight is rounded once per autocast block (torch caches too)."""
        cacheable = not tracing and x.is_leaf and x.requires_grad and torch.is_grad_enabled()
        if cacheable and id(x) in self.rounded_weights and self.rounded_weights[id(x)][0] is x:
            return self.rounded_weights[id(x)][1]
        rounded = self._round(x.float(), self.input_formats, tracing)
        if cacheable:
            self.rounded_weights[id(x)] = (x, rounded)
        return rounded

    def round_output(self, x: torch.Tensor, dtype: torch.dtype, tracing: bool) -> torch.Tensor:
        return self._round(x, self.output_formats, tracing).to(dtype)


class _ThreadState(threading.local):
    stack: list[_Emulation | None]

    def __init__(self) -> None:
        self.stack = []


_STATE = _ThreadState()


def active() -> _Emulation | None:
    """The emulation active in this thread (None outside, or inside an fp32 region)."""
    return _STATE.stack[-1] if _STATE.stack else None


rounding_op.active_region = lambda: emulation.region if (emulation := active()) else ""


def _is_eligible(value: Any) -> bool:
    """A float tensor autocast would cast: torch leaves fp64 (and non-float) tensors alone."""
    return isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float64


def _make_kernel(op: torch._ops.OpOverload, torch_casts: bool) -> Callable[..., Any]:
    """The AutocastCPU kernel of one lowp op: rounds under emulation, else acts as torch's own kernel would."""

    def kernel(keyset: torch._C.DispatchKeySet, *args: Any, **kwargs: Any) -> Any:
        emulation = active()
        if emulation is None:  # another thread's native torch.autocast: torch's semantics
            if not torch_casts:  # torch has no kernel here: fall through
                return op.redispatch(keyset.remove(_AUTOCAST_CPU), *args, **kwargs)
            dtype = torch.get_autocast_dtype("cpu")
            args, kwargs = tree_map(lambda t: t.to(dtype) if _is_eligible(t) else t, (args, kwargs))
            with torch._C._ExcludeDispatchKeyGuard(_NO_AUTOCAST):
                return op(*args, **kwargs)
        floats = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor) and t.is_floating_point()]
        with torch._C._ExcludeDispatchKeyGuard(_NO_AUTOCAST):
            if any(t.dtype == torch.float64 for t in floats):  # autocast does not touch fp64: neither do we
                return op(*args, **kwargs)
            tracing = rounding_op.is_tracing()
            dtype = floats[0].dtype if floats else torch.float32
            for t in floats[1:]:
                dtype = torch.promote_types(dtype, t.dtype)
            args, kwargs = tree_map(
                lambda t: emulation.round_input(t, tracing) if _is_eligible(t) else t, (args, kwargs)
            )
            out = op(*args, **kwargs)
            return tree_map(lambda t: emulation.round_output(t, dtype, tracing) if _is_eligible(t) else t, out)

    return kernel


def _overload(name: str, overload: str) -> torch._ops.OpOverload:
    packet = getattr(torch.ops.aten, name.removeprefix("aten::"))
    return getattr(packet, overload or "default")


class _Kernels:
    """Our AutocastCPU kernels, registered while any emulated autocast is entered (torch's return on exit)."""

    def __init__(self) -> None:
        self.lock, self.users, self.library = threading.Lock(), 0, None
        self.ops = [(f"{n.removeprefix('aten::')}{'.' + o if o else ''}", n, o) for n, o in present(LOWP)]

    def acquire(self) -> None:
        with self.lock:
            self.users += 1
            if self.library is not None:
                return
            library = torch.library.Library("aten", "IMPL")
            with warnings.catch_warnings():  # "overriding a previously registered kernel": that is the point
                warnings.simplefilter("ignore", UserWarning)
                for qualified, name, overload in self.ops:
                    kernel = _make_kernel(
                        _overload(name, overload), torch_casts=f"{name}{'.' * bool(overload)}{overload}" in CPU_LOWP
                    )
                    library.impl(qualified, kernel, "AutocastCPU", with_keyset=True)
            self.library = library

    def release(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0 and self.library is not None:
                self.library._destroy()
                self.library = None


_KERNELS = _Kernels()


@contextlib.contextmanager
def _emulating(emulation: _Emulation | None) -> Iterator[None]:
    _STATE.stack.append(emulation)
    try:
        yield
    finally:
        _STATE.stack.pop()
        if emulation is not None:
            emulation.rounded_weights.clear()


@contextlib.contextmanager
def _kernels_registered() -> Iterator[None]:
    _KERNELS.acquire()
    try:
        yield
    finally:
        _KERNELS.release()


def check_policy(policy: Policy, native: bool) -> None:
    """Raise PolicyError if this CPU path cannot run `policy`."""
    if native:
        unsupported = [f.name for f in {policy.compute, policy.backward} if f not in (FP32, FP16, BF16)]
        if unsupported:
            raise PolicyError(
                f"torch.autocast on the CPU has no {', '.join(unsupported)} compute; "
                "use the emulated cpu backend (mpx.get_backend('cpu')) for fp8 policies"
            )
        if policy.grads is not None and policy.grads != policy.compute:
            raise PolicyError("torch.autocast computes gradients in the forward format; use the emulated cpu backend")


@contextlib.contextmanager
def emulated_autocast(policy: Policy, backend: Any) -> Iterator[None]:
    """Run the model code inside with `policy`'s compute numerics on the CPU (see the module docstring)."""
    native = bool(getattr(backend, "native", False))
    check_policy(policy, native)
    if policy.compute == FP32 and policy.backward == FP32:
        if active() is None:  # plain torch, bit for bit
            yield
            return
        with torch.autocast("cpu", enabled=False), _emulating(None):  # an fp32 region inside an emulated one
            yield
        return
    if native:
        with torch.autocast("cpu", dtype=policy.compute.torch_dtype):
            yield
        return
    emulation = _Emulation(policy, getattr(backend, "overflow", "inf"), getattr(backend, "subnormals", "keep"))
    # cache_enabled=False: torch.compile guards on it, so a graph traced under native autocast is not reused here
    marker = torch.autocast(
        "cpu", dtype=policy.compute.torch_dtype if policy.compute == FP16 else torch.bfloat16, cache_enabled=False
    )
    with _kernels_registered(), _emulating(emulation), marker:
        yield
