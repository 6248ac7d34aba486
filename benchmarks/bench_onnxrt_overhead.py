"""Per-op call overhead of the onnxrt backend vs calling the same cached InferenceSession directly.

Same inputs, same run, interleaved: for every op (fp32, forward, normal inputs) the backend's run() and
session.run() on the session it cached (fed the same tensors' numpy views) alternate in short blocks; the
ratio of the median times is
printed per op and over all ops (target <= 1.2). Then a full pass over ops x formats x passes x input
classes, as the conformance runner makes it (support, then run), prints the session-cache hit rate; a
first pass compiles one session per (op, format, pass, shape class), a second pass reuses them all.

    python benchmarks/bench_onnxrt_overhead.py
"""

from __future__ import annotations

import statistics
import time

import torch

import mpx
from mpx.ops import all_ops
from mpx.ops.reference import prepare

ROUNDS, BLOCK = 30, 20


def _median_call(call, rounds_out: list[float]) -> None:
    start = time.perf_counter()
    for _ in range(BLOCK):
        call()
    rounds_out.append((time.perf_counter() - start) / BLOCK)


def overhead(backend) -> list[tuple[str, float, float]]:
    """(op, backend seconds per call, direct seconds per call) for every op that runs in fp32."""
    fmt = mpx.format("fp32")
    results = []
    for op in all_ops():
        prepared = prepare(op, fmt, "normal", "forward")
        inputs = prepared.storage_inputs
        backend.run(op, fmt, inputs)
        entry = backend.compiled(op, fmt, "forward", tuple(tuple(t.shape) for t in inputs))
        names, session = entry.input_names, entry.session
        read = [inputs[i] for i in entry.input_index] if entry.input_index is not None else inputs

        def direct_call(names=names, session=session, inputs=read):
            # the least a caller of the session itself does with the same tensors: numpy views in, arrays out
            return session.run(None, {name: t.numpy() for name, t in zip(names, inputs, strict=True)})

        via_backend, direct = [], []
        for _ in range(ROUNDS):  # interleaved blocks: both see the same machine state
            _median_call(lambda op=op, inputs=inputs: backend.run(op, fmt, inputs), via_backend)
            _median_call(direct_call, direct)
        results.append((op.name, statistics.median(via_backend), statistics.median(direct)))
    return results


def full_pass_hit_rate(backend) -> dict:
    """Session-cache counters after support + run of every case, as a conformance pass makes them."""
    backend.cache.hits = backend.cache.misses = 0
    for op in all_ops():
        for fmt in backend.formats:
            if not op.supports_format(fmt):
                continue
            for pass_ in ("forward", "backward") if op.has_backward else ("forward",):
                for input_class in op.input_classes:
                    if not op.defines(fmt, pass_, input_class) or input_class == "sequence":
                        continue  # as the suite's case list (sequences step the optimizer themselves)
                    prepared = prepare(op, fmt, input_class, pass_)
                    shapes = tuple(tuple(t.shape) for t in prepared.storage_inputs)
                    if not backend.support(op, fmt, pass_, shapes).runs:
                        continue
                    try:
                        backend.run(op, fmt, prepared.storage_inputs, pass_, prepared.storage_grad_outputs)
                    except mpx.OpError:
                        pass  # a case the EP cannot run at these shapes: its verdict is cached like any other
    return backend.cache.stats()


def main() -> None:
    torch.set_num_threads(1)
    backend = mpx.get_backend("onnxrt")
    print(f"backend {backend.name} on {backend.provider}; {ROUNDS} interleaved rounds of {BLOCK} calls per op")
    rows = overhead(backend)
    print(f"{'op':32s} {'backend us':>11s} {'session us':>11s} {'ratio':>6s}")
    for name, ours, direct in rows:
        print(f"{name:32s} {ours * 1e6:11.1f} {direct * 1e6:11.1f} {ours / direct:6.3f}")
    total_ours, total_direct = sum(r[1] for r in rows), sum(r[2] for r in rows)
    geomean = statistics.geometric_mean([r[1] / r[2] for r in rows])
    print(
        f"all ops: backend {total_ours * 1e6:.1f} us vs session {total_direct * 1e6:.1f} us per pass: "
        f"ratio {total_ours / total_direct:.3f} (geometric mean of per-op ratios {geomean:.3f}; target <= 1.2)"
    )
    fresh = mpx.get_backend("onnxrt")
    for label in ("first full pass", "second full pass"):
        start = time.perf_counter()
        stats = full_pass_hit_rate(fresh)
        print(
            f"{label} (ops x formats x passes x input classes, support + run) in "
            f"{time.perf_counter() - start:.1f} s: {stats['entries']} sessions, {stats['hits']} hits, "
            f"{stats['misses']} misses, hit rate {stats['hit_rate']:.3f}"
        )


if __name__ == "__main__":
    main()
