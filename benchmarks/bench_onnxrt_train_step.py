"""fp32 training step through mpx's onnxrt compile backend (CPU EP) vs the same step in eager torch.

Same model, data and optimizer (AdamW, on the host in both) in one run; the onnxrt model is compiled once
(its compile time is printed on its own line) and then timed in interleaved rounds against the eager twin.
Prints the median step-time ratio per model against the bar (<= 1.5) for both: the compiled model with
torch's AdamW on the host, and the whole MixedPrecision(backend="onnxrt", policy="fp32") step, whose overflow
check and AdamW update also run as EP graphs (the step a user of the onnxrt backend trains with).

    python benchmarks/bench_onnxrt_train_step.py [--rounds 7] [--steps 20] [--models mlp,gpt] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

import mpx
from mpx.backends.onnxrt.providers import CPU, target
from mpx.backends.onnxrt.training import OrtCompiler, compile_model
from mpx.backends.onnxrt.training.placement_report import summary_line
from mpx.conformance.model_zoo import VOCAB, TinyGPT, sequence_data
from mpx.training.synthetic import make_model, make_task

BAR = 1.5


def mlp_case(batch: int):
    """The MLP of `mpx train` (32-128-128-1, GELU) on its teacher task, MSE loss."""
    x, y = make_task(0)
    x, y = x[:batch], y[:batch]
    return make_model(0), (x, y), lambda out, target_: F.mse_loss(out, target_)


def gpt_case(batch: int):
    """The conformance zoo's tiny GPT (MHA, LayerNorm, GELU) on its Markov-chain task, cross-entropy."""
    torch.manual_seed(0)
    tokens, targets = sequence_data(torch.Generator().manual_seed(0))
    repeats = max(1, batch // tokens.shape[0])
    tokens, targets = tokens.repeat(repeats, 1), targets.repeat(repeats, 1)
    return TinyGPT(), (tokens, targets), lambda out, t: F.cross_entropy(out.reshape(-1, VOCAB), t.reshape(-1))


CASES = {"mlp": mlp_case, "gpt": gpt_case}


def plain_step(model: torch.nn.Module, batch, loss_fn):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs, targets = batch

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(inputs), targets).backward()
        optimizer.step()

    return step


def trainer_step(model: torch.nn.Module, batch, loss_fn, backend: str):
    trainer = mpx.MixedPrecision(model, torch.optim.AdamW(model.parameters(), lr=1e-3), backend, "fp32")
    inputs, targets = batch

    def step() -> None:
        trainer.zero_grad()
        with trainer.autocast():
            out = trainer.model(inputs)
        trainer.backward(loss_fn(out, targets))
        trainer.step()

    return step, trainer


def time_steps(step, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def run_case(name: str, batch: int, rounds: int, steps: int) -> float:
    base, data, loss_fn = CASES[name](batch)
    compiler = OrtCompiler(target(CPU))
    compiled = compile_model(copy.deepcopy(base), compiler)
    loops = {"torch eager fp32": plain_step(copy.deepcopy(base), data, loss_fn)}
    loops["onnxrt CPU EP fp32"] = plain_step(compiled, data, loss_fn)
    start = time.perf_counter()
    loops["onnxrt CPU EP fp32"]()  # compiles the forward and backward graphs
    first = time.perf_counter() - start
    print(
        f"[{name}] compile: first step {first:.1f} s (export {sum(g.exported.seconds for g in compiler.graphs):.1f} s"
        f", sessions {sum(g.session_seconds for g in compiler.graphs):.2f} s, {len(compiler.graphs)} graphs)"
    )
    step, trainer = trainer_step(copy.deepcopy(base), data, loss_fn, "onnxrt")
    step()
    loops["MixedPrecision onnxrt fp32"] = step
    for loop in loops.values():  # warm-up
        time_steps(loop, 3)
    times: dict[str, list[float]] = {key: [] for key in loops}
    for _ in range(rounds):
        for key, loop in loops.items():
            times[key].append(time_steps(loop, steps))
    anchor = statistics.median(times["torch eager fp32"])
    params = sum(p.numel() for p in base.parameters())
    print(f"[{name}] {params} parameters, batch {tuple(data[0].shape)}, AdamW, {torch.get_num_threads()} threads")
    for key, values in times.items():
        median = statistics.median(values)
        print(f"  {key:28s} {1000 * median:8.3f} ms   ratio vs eager {median / anchor:.3f}")
    for report in compiler.placement():
        print(f"  placement {summary_line(report)}")
    ratio = statistics.median(times["onnxrt CPU EP fp32"]) / anchor
    whole = statistics.median(times["MixedPrecision onnxrt fp32"]) / anchor
    print(f"[{name}] onnxrt (CPU EP) fp32 step / torch eager fp32 step: {ratio:.3f} (bar <= {BAR})")
    print(f"[{name}] whole MixedPrecision onnxrt fp32 step / torch eager fp32 step: {whole:.3f} (bar <= {BAR})")
    return max(ratio, whole)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128, help="MLP rows; the GPT takes batch // 8 sequences of 12")
    parser.add_argument("--models", default="mlp,gpt")
    parser.add_argument("--threads", type=int, default=0, help="torch and onnxruntime intra-op threads (0: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # the sessions take torch.get_num_threads() too
    ratios = {}
    for name in args.models.split(","):
        batch = args.batch if name == "mlp" else max(16, args.batch // 8)
        ratios[name] = run_case(name, batch, args.rounds, args.steps)
    verdict = "meets" if all(r <= BAR for r in ratios.values()) else "misses"
    worst = ", ".join(f"{k} {v:.3f}" for k, v in ratios.items())
    print(f"summary (the larger of the two ratios per model): {worst} -> {verdict} the bar <= {BAR}")


if __name__ == "__main__":
    main()
