"""Shared by the trainer tests: a small model, batches, a scaled backward, a poisoned gradient, host-read tracing."""

import math

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mpx


def _model(dtype=torch.float32):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 1)).to(dtype)


def _batch(seed=0, n=32):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=generator), torch.randn(n, 1, generator=generator)


def _backward(mp, model, x, y):
    with mp.autocast():
        out = model(x.to(next(model.parameters()).dtype))
    mp.backward(mpx.mse_loss(out, y))


def _poison(model):
    next(model.parameters()).grad.view(-1)[0] = math.inf


class _HostReads(TorchDispatchMode):
    """Records every read of a tensor's value back to Python (item, bool, float, tolist...).

    `allowed` are the optimizer's step counters: torch's non-capturable Adam keeps them on the host by design and
    reads them as Python numbers; that is torch's own arithmetic (bit-identity needs it), not a device sync.
    """

    def __init__(self, allowed=()):
        super().__init__()
        self.reads = []
        self.allowed = {id(t) for t in allowed}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and id(args[0]) not in self.allowed:
            self.reads.append(func)
        return func(*args, **(kwargs or {}))


def _host_step_counts(optimizer):
    """Host-side numbers torch's own non-capturable step reads: its step counters and tensor learning rates."""
    counters = [s["step"] for s in optimizer.state.values() if isinstance(s.get("step"), torch.Tensor)]
    return counters + [g["lr"] for g in optimizer.param_groups if isinstance(g["lr"], torch.Tensor)]
