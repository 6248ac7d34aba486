"""The inspector's compiled host pass (numba), loaded by host_kernel.py on first use.

Module-level functions, so that numba's on-disk cache finds them again in the next process: the first
process compiles them (seconds), later ones load them.
"""

# ruff: noqa: ANN001, ANN201, ANN202 - numba infers the types; the intrinsic follows numba's protocol

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

SIGN_MASK = 0x7FFFFFFF


@intrinsic
def as_pointer(typingctx, address, kind):
    """An int64 address as a typed pointer (the dtype taken from `kind`'s array)."""
    pointer = types.CPointer(kind.dtype)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(types.int64, kind), codegen


@numba.njit(cache=True, nogil=True)
def count(values, shift, local, base, first_edge, edges):
    """One tensor's patterns (`values` widened by `shift`) counted into `local`; returns its largest |x|
    pattern and 2^31 minus its smallest non-zero one. A pattern's bucket: its power of two's first bucket,
    plus the edges inside that power it reaches."""
    local[:] = 0
    largest, inverted = -1, -1
    for i in range(values.shape[0]):
        b = (np.int64(values[i]) << shift) & SIGN_MASK
        exponent = b >> 23
        bucket, k = base[exponent], first_edge[exponent]
        while b >= edges[k]:  # the bucket edges inside this power of two (usually none)
            bucket += 1
            k += 1
        local[bucket] += 1
        if b > largest:
            largest = b
        inverse = (-b) & SIGN_MASK  # zeros stay 0: never the smallest non-zero
        if inverse > inverted:
            inverted = inverse
    return largest, inverted


@numba.njit(cache=True, nogil=True)
def measure(addresses, sizes, widen, segments, tables, joint, extremes, like32, like16):
    """Per entry e: the tensor at addresses[e], sizes[e] fp32 patterns (bf16 ones where widen[e] is 16), or
    where widen[e] is -1 the previous entry's tensor again (a module's output, the next one's input)."""
    base, first_edge, edges = tables
    local = np.zeros(joint.shape[1], dtype=np.int64)
    largest, inverted = -1, -1
    for e in range(addresses.shape[0]):
        if widen[e] == 0:
            values32 = numba.carray(as_pointer(addresses[e], like32), sizes[e])
            largest, inverted = count(values32, 0, local, base, first_edge, edges)
        elif widen[e] == 16:
            values16 = numba.carray(as_pointer(addresses[e], like16), sizes[e])
            largest, inverted = count(values16, 16, local, base, first_edge, edges)
        segment = segments[e]
        joint[segment, :] += local
        if largest > extremes[0, segment]:
            extremes[0, segment] = largest
        if inverted > extremes[1, segment]:
            extremes[1, segment] = inverted
