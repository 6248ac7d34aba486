"""Training real torch models on the CPU with emulated low-precision numerics, at the dispatcher.

`emulated_autocast(policy, backend)` turns on `torch.autocast("cpu")` with mpx's AutocastCPU kernels for
every op torch.autocast runs in low precision (CPU and CUDA lists, autocast_lists.py): they round the float
inputs to the policy's compute format with `mpx::round_to`, compute in fp32 and round the outputs (fp8:
e4m3 in, bf16 out); gradients are rounded to the backward format. So einsum, nn.MultiheadAttention, RNNs
and Tensor methods are caught wherever they reach mm/linear/conv/SDPA, fp32-list ops (softmax, norms,
losses) stay fp32 through torch's own kernels, `torch.autocast("cpu", enabled=False)` opens an fp32 region,
and torch.compile traces the same rounding. With a native backend (CpuBackend(native=True)) this is
torch.autocast("cpu", dtype) instead.

The kernels are registered once, at the first emulated autocast, and stay: with no emulation active in the
thread (a plain torch.autocast) each calls torch's own AutocastCPU kernel, so torch's numerics are kept bit
for bit; outside any autocast the AutocastCPU key is off and they are never reached.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

from mpx.errors import PolicyError
from mpx.formats import BF16, FP16, FP32, Format
from mpx.policy import Policy, gemm_output_format

from . import rounding_op
from .autocast_lists import LOWP, additive_arguments, present

_AUTOCAST_CPU = torch._C.DispatchKey.AutocastCPU
_NO_AUTOCAST = torch._C.DispatchKeySet(_AUTOCAST_CPU)
_ExcludeAutocast = torch._C._ExcludeDispatchKeyGuard
_Rounder = Callable[[torch.Tensor, bool], torch.Tensor]


def _rounder(forward: Format, backward: Format, overflow: str, subnormals: str, region: str) -> _Rounder:
    """x -> x rounded to `forward` (as fp32), its gradient to `backward`; the custom op while tracing.

    fp16/bf16 in both directions under IEEE rules is a cast pair with torch's own autograd: `.to(fp16)` is
    a single round to nearest even (overflow to inf, subnormals kept) and its backward casts the gradient
    back the same way, the exact numerics of mpx::round_to without a Python autograd node.
    """
    names = (forward.name, overflow, subnormals, backward.name)
    cast_pair = forward == backward and forward in (FP16, BF16) and (overflow, subnormals) == ("inf", "keep")
    low = forward.torch_dtype

    def round_x(x: torch.Tensor, tracing: bool) -> torch.Tensor:
        if tracing:
            return rounding_op.round_to(x, *names, region)
        if cast_pair:
            return x.to(low).to(torch.float32)
        return rounding_op.RoundTo.apply(x, *names)

    return round_x


@functools.cache
def _rounders(policy: Policy, overflow: str, subnormals: str) -> tuple[_Rounder, _Rounder, _Rounder, str]:
    """(input rounder, output rounder, additive-input rounder, region key) of one emulation."""
    forward, backward = policy.compute, policy.backward
    region = f"{forward.name}>{backward.name}/{overflow}/{subnormals}"
    # an input: rounded to the compute format; its gradient leaves the op as the backward GEMM's output
    round_input = _rounder(forward, gemm_output_format(backward), overflow, subnormals, region)
    # an output: the GEMM's output format; the gradient arriving is rounded to the backward format
    round_output = _rounder(gemm_output_format(forward), backward, overflow, subnormals, region)
    # an input added to the GEMM's result (bias, attention mask, addmm's self): in the GEMM's output format,
    # as fp8 GEMMs take a bf16 bias (and an e4m3 mask, which has no -inf, would turn masked scores to NaN)
    output_format = gemm_output_format(forward), gemm_output_format(backward)
    round_additive = _rounder(*output_format, overflow, subnormals, region)
    return round_input, round_output, round_additive, region


class _Emulation:
    """One entered emulated autocast: its rounders and the weights rounded in this block (torch caches too)."""

    __slots__ = ("_by_role", "compute_dtype", "region", "round_output", "rounded_weights")

    def __init__(self, policy: Policy, overflow: str, subnormals: str) -> None:
        round_input, self.round_output, round_additive, self.region = _rounders(policy, overflow, subnormals)
        self._by_role = {"input": round_input, "additive": round_additive}
        self.compute_dtype = policy.compute.torch_dtype
        self.rounded_weights: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def round_input(self, x: torch.Tensor, tracing: bool) -> torch.Tensor:
        """x in fp32 on the compute format's grid."""
        return self._round_operand(x, tracing, "input")

    def round_additive(self, x: torch.Tensor, tracing: bool) -> torch.Tensor:
        """A bias or mask in fp32 on the GEMM output format's grid."""
        return self._round_operand(x, tracing, "additive")

    def _round_operand(self, x: torch.Tensor, tracing: bool, role: str) -> torch.Tensor:
        """A weight is rounded once per autocast block, so its gradient is rounded once, after accumulation."""
        rounder = self._by_role[role]
        if tracing or not (x.requires_grad and x.is_leaf and torch.is_grad_enabled()):
            return rounder(x.float(), tracing)
        cached = self.rounded_weights.get((id(x), role))
        if cached is not None and cached[0] is x:
            return cached[1]
        rounded = rounder(x.float(), tracing)
        self.rounded_weights[(id(x), role)] = (x, rounded)
        return rounded


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.stack: list[_Emulation | None] = []
        self.current: _Emulation | None = None  # stack[-1], read by every kernel call


_STATE = _ThreadState()


def active() -> _Emulation | None:
    """The emulation active in this thread (None outside, or inside an fp32 region)."""
    return _STATE.current


rounding_op.active_region = lambda: emulation.region if (emulation := _STATE.current) else ""


def _map(fn: Callable[[torch.Tensor], torch.Tensor], values: Any) -> Any:  # noqa: ANN401 - op args/outputs
    """fn applied to the tensors of an op's arguments or outputs (a tensor, or a list/tuple of them)."""
    if isinstance(values, torch.Tensor):
        return fn(values)
    if isinstance(values, (list, tuple)):
        mapped = [_map(fn, v) if isinstance(v, (torch.Tensor, list, tuple)) else v for v in values]
        return mapped if isinstance(values, list) else tuple(mapped)
    return values


def _floats(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    found = []
    for value in (*args, *kwargs.values()):
        for t in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                found.append(t)
    return found


def _make_kernel(op: torch._ops.OpOverload, torch_kernel: Any) -> Callable[..., Any]:  # noqa: ANN401
    """The AutocastCPU kernel of one lowp op: rounds under emulation, else is torch's own kernel."""

    def kernel(keyset: torch._C.DispatchKeySet, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        emulation = _STATE.current
        if emulation is None:  # a plain torch.autocast (or an fp32 region): torch's kernel, bit for bit
            if torch_kernel is None:  # torch has none for this op on the CPU: fall through
                return op.redispatch(keyset.remove(_AUTOCAST_CPU), *args, **kwargs)
            return torch_kernel.call_boxed(keyset, *args, **kwargs)
        floats = _floats(args, kwargs)
        with _ExcludeAutocast(_NO_AUTOCAST):
            dtype = floats[0].dtype if floats else torch.float32
            for t in floats[1:]:
                dtype = torch.promote_types(dtype, t.dtype)
            if dtype == torch.float64:  # autocast does not touch fp64: neither do we
                return op(*args, **kwargs)
            if any(t.dtype == emulation.compute_dtype for t in floats):
                dtype = emulation.compute_dtype  # a model stored in the compute format stays in it, as with autocast
            tracing = rounding_op.is_tracing()
            round_input = functools.partial(_round_eligible, emulation.round_input, tracing)
            round_additive = functools.partial(_round_eligible, emulation.round_additive, tracing)
            args = tuple(
                (round_additive if i in positions else round_input)(a)
                if isinstance(a, torch.Tensor)
                else _map(round_input, a)
                for i, a in enumerate(args)
            )
            kwargs = {k: _map(round_additive if k in names else round_input, v) for k, v in kwargs.items()}
            out = op(*args, **kwargs)
            return _map(functools.partial(_round_eligible, emulation.round_output, tracing, dtype=dtype), out)

    positions, names = additive_arguments(op)
    return kernel


def _round_eligible(
    rounder: _Rounder, tracing: bool, t: torch.Tensor, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """A float tensor autocast would cast, rounded (and cast to `dtype`); others as they are."""
    if not t.is_floating_point() or t.dtype == torch.float64:
        return t
    rounded = rounder(t, tracing)
    return rounded if dtype is None else rounded.to(dtype)


class _Kernels:
    """Our AutocastCPU kernels: registered at the first emulated autocast, then kept (see the docstring)."""

    def __init__(self) -> None:
        self.lock, self.library, self.users = threading.Lock(), None, 0

    def acquire(self) -> None:
        """An emulated autocast starts (in any thread): make sure our kernels are in place."""
        self.register()
        with self.lock:
            self.users += 1

    def release(self) -> None:
        with self.lock:
            self.users -= 1

    def release_to_torch(self) -> None:
        """A native autocast starts: with no emulation running anywhere, torch's kernels come back (~0.03 ms).

        Our registered kernels cost a plain torch.autocast some microseconds per low-precision op even when
        they only forward to torch's; a process that switches to native mpx does not pay that.
        """
        with self.lock:
            idle = self.users == 0
        if idle:
            self.unregister()

    def register(self) -> None:
        with self.lock:
            if self.library is not None:
                return
            library = torch.library.Library("aten", "IMPL")
            has_kernel, get_kernel = torch._C._dispatch_has_kernel_for_dispatch_key, torch.library.get_kernel
            with warnings.catch_warnings():  # "overriding a previously registered kernel": that is the point
                warnings.simplefilter("ignore", UserWarning)
                for name, overload in present(LOWP):
                    qualified = f"{name}.{overload}" if overload else name
                    op = getattr(getattr(torch.ops.aten, name.removeprefix("aten::")), overload or "default")
                    # torch's own kernel, fetched before ours replaces it
                    torch_kernel = get_kernel(op, "AutocastCPU") if has_kernel(qualified, "AutocastCPU") else None
                    kernel = _make_kernel(op, torch_kernel)
                    library.impl(qualified.removeprefix("aten::"), kernel, "AutocastCPU", with_keyset=True)
            self.library = library

    def unregister(self) -> None:
        """Give torch its kernels back (tests compare against them); the next emulated autocast registers again."""
        with self.lock:
            if self.library is not None:
                self.library._destroy()
                self.library = None


KERNELS = _Kernels()


@contextlib.contextmanager
def _emulating(emulation: _Emulation | None) -> Iterator[None]:
    state = _STATE
    state.stack.append(emulation)
    state.current = emulation
    try:
        yield
    finally:
        state.stack.pop()
        state.current = state.stack[-1] if state.stack else None


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
def emulated_autocast(policy: Policy, backend: Any) -> Iterator[None]:  # noqa: ANN401 - any backend object
    """Run the model code inside with `policy`'s compute numerics on the CPU (see the module docstring)."""
    native = bool(getattr(backend, "native", False))
    check_policy(policy, native)
    if policy.compute == FP32 and policy.backward == FP32:
        if _STATE.current is None:  # plain torch, bit for bit
            yield
            return
        with torch.autocast("cpu", enabled=False), _emulating(None):  # an fp32 region inside an emulated one
            yield
        return
    if native:
        KERNELS.release_to_torch()
        with torch.autocast("cpu", dtype=policy.compute.torch_dtype):
            yield
        return
    emulation = _Emulation(policy, getattr(backend, "overflow", "inf"), getattr(backend, "subnormals", "keep"))
    # cache_enabled=False: torch.compile guards on it, so a graph traced under native autocast is not reused here
    marker = torch.autocast(
        "cpu", dtype=policy.compute.torch_dtype if policy.compute == FP16 else torch.bfloat16, cache_enabled=False
    )
    KERNELS.acquire()
    try:
        with _emulating(emulation), marker:
            yield
    finally:
        KERNELS.release()
