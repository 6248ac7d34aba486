"""The inspector's compiled host pass (host_kernel.py) counts and bounds exactly what the torch formulation
does: every bucket count and every extreme, over fp32's whole range, special values, every dtype, tensors
shared between segments and recorded-step rows added to one after another."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from test_inspect_stats import FORMATS, values

from mpx.inspection import host_kernel
from mpx.inspection.buffers import Buffers
from mpx.inspection.stats import Buckets, overflow_threshold

pytestmark = pytest.mark.skipif(not host_kernel.available(), reason="numba is not installed (the torch path runs)")


def _batches(seed: int) -> list[list[tuple[int, torch.Tensor]]]:
    """Two batches of (segment, tensor): fp32, bf16, fp16 and fp64 tensors with specials and subnormals; one
    tensor in two segments (a module's output, the next one's input, with and without an integer tensor between);
    non-contiguous, 0-d and empty tensors."""
    x = values(seed, n=6000)
    tiny = torch.tensor([1e-45, -3e-42, 2.0**-137, 2.0**-138, 1e-40, 0.0])  # fp32 subnormals, both sides of 2^-137
    shared = x[:700].reshape(7, 100).bfloat16()
    first = [
        (0, torch.cat([x[:2000], tiny])),
        (1, shared),
        (2, shared),
        (3, x[2000:3000].half()),
        (4, x[3000:4000].double()),
        (5, x[4000:4800].reshape(40, 20).t()),  # not contiguous
        (6, torch.tensor(3.5)),
    ]
    again, empty = x[5200:6000].bfloat16(), torch.zeros(0)
    second = [
        (0, x[4800:5200] * 1e-3),
        (2, again),
        (5, torch.arange(9)),  # token ids between two entries of one tensor: left out
        (3, again),
        (1, empty),  # empty, twice: left out, not taken for the tensor before it
        (1, empty),
        (6, torch.tensor(-0.0)),
    ]
    return [first, second]


def _measured(host: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    buckets = Buckets([overflow_threshold(f) for f in FORMATS])
    buffers = Buffers(7, buckets, torch.device("cpu"))
    buffers.host = host
    for row, batch in enumerate(_batches(seed)):
        buffers.add(batch, row)
        buffers.add(batch[:2], row)  # a second batch into the same recorded step
    many = values(seed + 20, n=1000)
    buffers.add([(i % 7, many[10 * i : 10 * i + 10]) for i in range(100)], 1)  # more rows than the first plan holds
    changed = values(seed + 10, n=500)
    buffers.add([(3, changed)], 1)
    changed.mul_(1e30)  # an in-place module between two measurements of one tensor: measured again
    buffers.add([(4, changed)], 1)
    return buffers.joint.numpy().copy(), buffers.extremes[:2].numpy().copy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_host_pass_counts_and_bounds_bit_for_bit_as_the_torch_ops(seed):
    got_joint, got_extremes = _measured(True, seed)
    want_joint, want_extremes = _measured(False, seed)
    assert got_joint.sum() > 0 and np.array_equal(got_joint, want_joint)
    assert np.array_equal(got_extremes, want_extremes)


def test_the_exponent_tables_give_every_pattern_the_bucket_tables_bucket():
    buckets = Buckets([overflow_threshold(f) for f in FORMATS])
    tables = host_kernel.ExponentTables(buckets.table, Buckets.SHIFT)
    patterns = np.concatenate(
        [
            np.random.default_rng(0).integers(0, 1 << 31, 200_000),
            np.flatnonzero(np.diff(buckets.table)) + 1 << Buckets.SHIFT,  # every edge ...
            (np.flatnonzero(np.diff(buckets.table)) + 1 << Buckets.SHIFT) - 1,  # ... and the pattern below it
        ]
    )
    want = buckets.table[patterns >> Buckets.SHIFT]
    exponent = patterns >> 23
    got = tables.base[exponent].copy()
    for i, (pattern, e) in enumerate(zip(patterns, exponent, strict=True)):
        k = tables.first_edge[e]
        while pattern >= tables.edges[k]:
            got[i] += 1
            k += 1
    assert np.array_equal(got, want)


def _exotic_entries() -> list[tuple[int, torch.Tensor]]:
    torch.manual_seed(0)
    dense, freed = torch.randn(3, 3), torch.randn(5)
    freed.untyped_storage().resize_(0)  # what FSDP does to an unsharded parameter's storage
    with warnings.catch_warnings():  # the strided nested layout is a prototype (warned once a process)
        warnings.simplefilter("ignore", UserWarning)
        nested = torch.nested.nested_tensor([torch.randn(2, 3), torch.randn(4, 3)])
    jagged = torch.nested.nested_tensor([torch.randn(2, 3), torch.randn(4, 3)], layout=torch.jagged)
    captured = []
    torch.func.vmap(lambda t: captured.append(t) or t)(torch.randn(3, 2))  # a tensor with no storage of its own
    return [
        (0, dense.to_sparse()),
        (1, dense.to_mkldnn()),
        (2, torch.empty(3, device="meta")),
        (3, freed),
        (4, jagged),
        (5, nested),
        (6, captured[0]),
        (7, dense),
    ]


def test_tensors_not_readable_by_address_are_measured_as_values_or_counted_never_read():
    """Sparse, mkldnn and nested tensors are measured through their values; meta, freed, jagged and torch.func
    tensors are counted as unmeasured (reading them by address would crash); both formulations agree."""
    got = {}
    for host in (True, False):
        buckets = Buckets([overflow_threshold(f) for f in FORMATS])
        buffers = Buffers(8, buckets, torch.device("cpu"))
        buffers.host = host
        buffers.add(_exotic_entries(), 0)
        got[host] = (buffers.joint.view(8, -1).sum(1).tolist(), buffers.extremes[0].tolist(), buffers.unmeasured)
    assert got[True][:2] == got[False][:2]
    assert got[True][0] == [9, 9, 0, 0, 0, 18, 0, 9]
    assert sum(got[True][2].values()) == sum(got[False][2].values()) == 4
