"""What `import mpx` costs on top of `import torch`, in fresh interpreters (the bar: < 0.5 s more).

Each repeat starts two new Python processes alternately: one imports torch; the other imports torch, then mpx,
timing each step. The bar is on the median time of `import mpx` after torch (what mpx adds); the difference
of the two processes' total medians is printed too (noisier: two processes). Also prints whether onnxruntime
or onnx got imported by `import mpx` (they must not be). Exits 1 if the bar is missed or they were.

    python benchmarks/bench_import.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

BAR_SECONDS = 0.5
PROBE = """
import json, sys, time
start = time.perf_counter()
import torch
torch_seconds = time.perf_counter() - start
if {with_mpx}:
    import mpx
total = time.perf_counter() - start
heavy = sorted(m for m in ("onnxruntime", "onnx") if m in sys.modules)
print(json.dumps({{"torch": torch_seconds, "total": total, "heavy": heavy}}))
"""


def import_time(with_mpx: bool) -> dict:
    """Seconds to import torch (and then mpx) in a new interpreter, and which heavy modules got imported."""
    command = [sys.executable, "-c", PROBE.format(with_mpx=with_mpx)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    import_time(with_mpx=True)  # warm the file cache
    torch_alone, torch_then_mpx, mpx_after_torch, heavy = [], [], [], set()
    for _ in range(args.repeats):
        torch_alone.append(import_time(with_mpx=False)["total"])
        probe = import_time(with_mpx=True)
        torch_then_mpx.append(probe["total"])
        mpx_after_torch.append(probe["total"] - probe["torch"])
        heavy.update(probe["heavy"])
    extra = statistics.median(mpx_after_torch)
    alone, both = statistics.median(torch_alone), statistics.median(torch_then_mpx)
    verdict = "ok" if extra < BAR_SECONDS else "OVER THE BAR"
    print(f"fresh interpreters, median of {args.repeats}")
    print(f"import torch                      {alone:.3f} s")
    print(f"import torch, then mpx            {both:.3f} s")
    print(f"difference of the two             {both - alone:+.3f} s")
    print(f"import mpx after torch (the bar)  {extra:.3f} s (< {BAR_SECONDS} s): {verdict}")
    print(f"heavy modules imported by `import mpx`: {', '.join(sorted(heavy)) or 'none (no onnxruntime, no onnx)'}")
    return 0 if extra < BAR_SECONDS and not heavy else 1


if __name__ == "__main__":
    sys.exit(main())
