"""Mixed-precision inference on the onnxrt backend's EP: an MLP classifier and a tiny transformer block
exported from torch, converted to fp16 / bf16 with torch.autocast's fp32 ops kept, against fp32 on the same
EP in the same run (accuracy and median latency; ratio = converted / fp32 latency).

    python benchmarks/bench_onnxrt_mixed_inference.py
"""

from __future__ import annotations

from onnx_models import evaluate, models  # benchmarks/onnx_models.py, next to this script

import mpx


def main() -> None:
    backend = mpx.get_backend("onnxrt")
    print(f"EP {backend.provider}; latency = median of 50 runs")
    print(
        f"{'model':18s} {'policy':11s} {'status':11s} {'max abs err':>11s} {'rel L2 err':>10s} {'top-1':>6s} "
        f"{'fp32 ms':>8s} {'lowp ms':>8s} {'ratio':>6s}  kept in fp32"
    )
    for name in models():
        for policy in ("fp16-mixed", "bf16-mixed"):
            r = evaluate(name, policy, provider=backend.provider, provider_options=backend.provider_options, repeats=50)
            top1 = f"{r.top1_agreement:.3f}" if r.top1_agreement is not None else "-"
            print(
                f"{r.model:18s} {r.policy:11s} {r.status:11s} {r.max_abs_error:11.3g} {r.relative_l2_error:10.3g} "
                f"{top1:>6s} {r.fp32_ms:8.3f} {r.converted_ms:8.3f} {r.converted_ms / r.fp32_ms:6.2f}  "
                f"{', '.join(r.fp32_kept_ops)}"
            )
            if r.status != "ran":
                print(f"    {r.reason}")


if __name__ == "__main__":
    main()
