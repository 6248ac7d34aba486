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
def count(values, counts, base, first_edge, edges):
    """One fp32 tensor's patterns added into `counts`; returns its largest |x| pattern and 2^31 minus its
    smallest non-zero one. A pattern's bucket: its power of two's first bucket, plus the edges inside that
    power it reaches."""
    largest, inverted = -1, -1
    for i in range(values.shape[0]):
        b = np.int64(values[i]) & SIGN_MASK
        exponent = b >> 23
        bucket, k = base[exponent], first_edge[exponent]
        while b >= edges[k]:  # the bucket edges inside this power of two (usually none)
            bucket += 1
            k += 1
        counts[bucket] += 1
        if b > largest:
            largest = b
        inverse = (-b) & SIGN_MASK  # zeros stay 0: never the smallest non-zero
        if inverse > inverted:
            inverted = inverse
    return largest, inverted


@numba.njit(cache=True, nogil=True)
def count16(values, counts, table16):
    """count() for bf16 patterns: a bf16 magnitude's bucket read from a 32768-entry table in one load; the
    extremes widened to fp32 patterns at the end (2^31 - (h << 16) is ((-h) & 0x7FFF) << 16)."""
    largest, inverted = -1, -1
    for i in range(values.shape[0]):
        h = np.int64(values[i]) & 0x7FFF
        counts[table16[h]] += 1
        if h > largest:
            largest = h
        inverse = (-h) & 0x7FFF
        if inverse > inverted:
            inverted = inverse
    return (largest << 16 if largest > 0 else largest), (inverted << 16 if inverted > 0 else inverted)


@numba.njit(cache=True, nogil=True)
def measure(plan, rows, base, first_edge, edges, table16, joint, extremes, row, like32, like16):
    """Per plan row e < `rows` (address, elements, widening shift, segment; 4 values each in the flat `plan`):
    the tensor at that address, fp32 patterns (bf16 ones where the shift is 16), or where the shift is -1 the
    previous row's tensor again (a module's output, the next one's input). A tensor is counted straight into
    its segment's row of `joint`, or, when the next row repeats it, into a scratch row added to each of their
    segments; its extremes go into row `row` of `extremes`."""
    buckets = joint.shape[1]
    scratch = np.zeros(buckets, dtype=np.int64)
    largest, inverted = -1, -1
    for e in range(rows):
        address, size, widen, segment = plan[4 * e], plan[4 * e + 1], plan[4 * e + 2], plan[4 * e + 3]
        repeated = e + 1 < rows and plan[4 * e + 6] == -1
        if widen >= 0:
            if repeated:
                for j in range(buckets):
                    scratch[j] = 0
            counts = scratch if repeated else joint[segment]
            if widen == 0:
                values32 = numba.carray(as_pointer(address, like32), size)
                largest, inverted = count(values32, counts, base, first_edge, edges)
            else:
                values16 = numba.carray(as_pointer(address, like16), size)
                largest, inverted = count16(values16, counts, table16)
        if widen < 0 or repeated:
            for j in range(buckets):
                joint[segment, j] += scratch[j]
        if largest > extremes[row, 0, segment]:
            extremes[row, 0, segment] = largest
        if inverted > extremes[row, 1, segment]:
            extremes[row, 1, segment] = inverted
