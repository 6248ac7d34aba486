"""What mpx costs at import: `import mpx` + its public API over `import torch`, and an unrelated pytest run.

1. Fresh interpreters, alternately: one imports torch; the other imports torch, then mpx, then reads the
   public API (`mpx.MixedPrecision`, `mpx.get_backend`, `mpx.format`: `import mpx` alone loads names on
   first use). The bar: what mpx adds after torch < 0.5 s. Also checks onnxruntime / onnx are not imported.
2. An unrelated project's pytest run (one trivial test, in a temporary folder) with the mpx pytest plugin
   installed, against the same run with the plugin disabled (`-p no:mpx`), alternately. The bar: < 0.1 s.
Exits 1 if a bar is missed.

    python benchmarks/bench_import.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORT_BAR, PYTEST_BAR = 0.5, 0.1
PROBE = """
import json, sys, time
start = time.perf_counter()
import torch
torch_seconds = time.perf_counter() - start
if {with_mpx}:
    import mpx
    mpx.MixedPrecision, mpx.get_backend, mpx.format("bf16")
total = time.perf_counter() - start
heavy = sorted(m for m in ("onnxruntime", "onnx") if m in sys.modules)
print(json.dumps({{"torch": torch_seconds, "total": total, "heavy": heavy}}))
"""


def import_time(with_mpx: bool) -> dict:
    """Seconds to import torch (and then mpx and its API) in a new interpreter, and heavy modules imported."""
    command = [sys.executable, "-c", PROBE.format(with_mpx=with_mpx)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def pytest_time(project: Path, plugin: bool) -> float:
    """Wall seconds of `pytest -q` on `project`, with or without the mpx plugin."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)]
    if not plugin:
        command[3:3] = ["-p", "no:mpx"]
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True, cwd=project)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    import_time(with_mpx=True)  # warm the file cache
    torch_alone, mpx_after_torch, heavy = [], [], set()
    for _ in range(args.repeats):
        torch_alone.append(import_time(with_mpx=False)["total"])
        probe = import_time(with_mpx=True)
        mpx_after_torch.append(probe["total"] - probe["torch"])
        heavy.update(probe["heavy"])
    extra = statistics.median(mpx_after_torch)
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        (project / "test_unrelated.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
        pytest_time(project, True)  # warm the file cache
        with_plugin, without = [], []
        for _ in range(args.repeats):
            with_plugin.append(pytest_time(project, True))
            without.append(pytest_time(project, False))
    pytest_extra = statistics.median(with_plugin) - statistics.median(without)
    print(f"fresh interpreters, median of {args.repeats}")
    print(f"import torch                                   {statistics.median(torch_alone):.3f} s")
    verdict = "ok" if extra < IMPORT_BAR else "OVER THE BAR"
    print(f"import mpx + public API, after torch (the bar) {extra:.3f} s (< {IMPORT_BAR} s): {verdict}")
    print(f"heavy modules imported: {', '.join(sorted(heavy)) or 'none (no onnxruntime, no onnx)'}")
    print(f"unrelated pytest run, plugin disabled          {statistics.median(without):.3f} s")
    print(f"unrelated pytest run, mpx plugin loaded        {statistics.median(with_plugin):.3f} s")
    verdict = "ok" if pytest_extra < PYTEST_BAR else "OVER THE BAR"
    print(f"what the mpx plugin adds (the bar)             {pytest_extra:+.3f} s (< {PYTEST_BAR} s): {verdict}")
    return 0 if extra < IMPORT_BAR and not heavy and pytest_extra < PYTEST_BAR else 1


if __name__ == "__main__":
    sys.exit(main())
