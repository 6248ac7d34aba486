"""Model-level cases: small real models (model_zoo.py) through the real training path of a TrainingBackend.

`model/<model>/<format>/inference`: the model's outputs under `backend.autocast(policy)` against the same model
in float64; passes when the relative error ||y - y64|| / ||y64|| is within the bound model_bounds.py derives
(SAFETY x the standard rounding model evaluated on the model: a few 1e-7 for fp32, ~1e-2 for bf16).

`model/<model>/<format>/training`: STEPS full-batch steps of the format's recipe (`MixedPrecision` with the
column's policy: fp16-mixed with dynamic loss scaling, bf16-mixed, fp8-hybrid) against plain torch in fp32 from
the same seed. Passes when the loss fell (the mean of the last FINAL_STEPS losses is at most FELL x the first),
that final loss is at most LOSS_RATIO x the fp32 run's (1.05 for 16-bit formats and fp32, whose curves on the
zoo stay within 1.5 %; 1.10 for fp8, whose u is 16x bf16's and whose curves stay within 2.5 %), and at most
SKIPPED_SHARE of the steps were skipped. Both curves are recorded.

Both run the model as the backend prepares it (`prepare_model`: onnxrt compiles it into sessions on its EP).
A backend that does not train (not an mpx.TrainingBackend) gets the cases as `unsupported`; any exception in
a case is that case's `error`, and the other cases run on.
"""

from __future__ import annotations

import copy
import math
import time
import zlib
from typing import Any

import torch

from mpx.errors import PolicyError
from mpx.formats import format as lookup_format
from mpx.plugins.backend import Backend, TrainingBackend
from mpx.policy import Policy
from mpx.policy import policy as lookup_policy

from .cases import MODEL, Case
from .model_bounds import SAFETY, predicted_error, relative_error
from .model_zoo import MODELS, Batch, ModelSpec
from .report import CaseResult
from .scenarios import COLUMN_POLICY
from .status import Status

STEPS, FINAL_STEPS, FELL, SKIPPED_SHARE = 30, 5, 0.9, 0.1
LOSS_RATIO = {"fp8": 1.10, "other": 1.05}


def loss_ratio_bound(fmt: str) -> float:
    return LOSS_RATIO["fp8" if lookup_format(fmt).is_fp8 else "other"]


def _seed(name: str) -> int:
    """One seed per model, the same in every format: the runs differ only by their numerics."""
    return zlib.crc32(f"model/{name}".encode()) & 0x7FFFFFFF


def _build(spec: ModelSpec, device: str) -> tuple[torch.nn.Module, Batch]:
    torch.manual_seed(_seed(spec.name))
    model = spec.build()
    batch = spec.data(torch.Generator().manual_seed(_seed(spec.name)))
    return model.to(device), (batch[0].to(device), batch[1].to(device))


def _compact(values: list[float]) -> tuple[float, ...]:
    return tuple(float(f"{v:.5g}") if math.isfinite(v) else float("nan") for v in values)


def fp32_curve(spec: ModelSpec, device: str, cache: dict[Any, Any]) -> list[float]:
    """Plain torch in fp32 (no mpx): the run every format's training case is held against."""
    key = ("fp32-curve", spec.name, device)
    if key not in cache:
        model, batch = _build(spec, device)
        optimizer, losses = spec.optimizer(list(model.parameters())), []
        for _ in range(STEPS):
            optimizer.zero_grad()
            loss = spec.loss(model, batch)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        cache[key] = losses
    return cache[key]


def train(backend: TrainingBackend, spec: ModelSpec, policy: Policy) -> tuple[list[float], int]:
    """STEPS steps through MixedPrecision on the backend: the loss curve and the number of skipped steps."""
    from mpx.training.trainer import MixedPrecision

    model, batch = _build(spec, backend.device)
    trainer = MixedPrecision(model, spec.optimizer(list(model.parameters())), backend=backend, policy=policy)
    losses = []
    for _ in range(STEPS):
        trainer.zero_grad()
        with trainer.autocast():
            loss = spec.loss(model, batch)
        trainer.backward(loss)
        trainer.step()
        losses.append(loss.item())
    return losses, int(trainer.skipped_steps)


def _final(losses: list[float]) -> float:
    return sum(losses[-FINAL_STEPS:]) / FINAL_STEPS


def _training(backend: TrainingBackend, spec: ModelSpec, case: Case, cache: dict) -> tuple[Status, str, dict]:
    reference = fp32_curve(spec, backend.device, cache)
    if not _final(reference) <= FELL * reference[0]:
        raise RuntimeError(
            f"the fp32 reference run of {spec.name} did not learn ({reference[0]:.4g} -> {_final(reference):.4g})"
        )
    losses, skipped = train(backend, spec, lookup_policy(COLUMN_POLICY[case.format]))
    final, bound = _final(losses), loss_ratio_bound(case.format)
    ratio = final / _final(reference)
    extra = {"curve": _compact(losses), "fp32_curve": _compact(reference), "skipped_steps": skipped}
    facts = (
        f"final loss {final:.4g} = {ratio:.4f}x fp32's {_final(reference):.4g} (bound {bound:.2f}x), "
        f"first {losses[0]:.4g}, {skipped}/{STEPS} steps skipped (bound {int(SKIPPED_SHARE * STEPS)})"
    )
    problems = []
    if not math.isfinite(final) or not ratio <= bound:
        problems.append("final loss above the bound")
    if not final <= FELL * losses[0]:
        problems.append(f"the loss did not fall below {FELL:g}x its first value")
    if skipped > SKIPPED_SHARE * STEPS:
        problems.append("too many skipped steps")
    return (Status.FAIL if problems else Status.PASS), "; ".join([*problems, facts]), {**extra, "ratio": ratio}


def _inference(backend: TrainingBackend, spec: ModelSpec, case: Case, cache: dict) -> tuple[Status, str, dict]:
    policy = lookup_policy(COLUMN_POLICY[case.format])
    key = ("float64", spec.name, case.format)
    model, (inputs, _) = _build(spec, backend.device)
    model.eval()
    if key not in cache:
        model64 = copy.deepcopy(model).to("cpu", torch.float64)
        inputs64 = inputs.to("cpu", torch.float64) if inputs.is_floating_point() else inputs.cpu()
        with torch.no_grad():
            reference = model64(inputs64)
        cache[key] = reference, predicted_error(model64, inputs64, policy, reference)
    reference, predicted = cache[key]
    model = backend.prepare_model(model, policy)  # where the backend compiles models (onnxrt): run as compiled
    with torch.no_grad(), backend.autocast(policy):
        outputs = model(inputs)
    error, bound = relative_error(outputs, reference), SAFETY * predicted
    eps = lookup_format(case.format).eps
    detail = (
        f"relative error {error:.3g} ({error / eps:.3g} eps of {case.format}), bound {bound:.3g} "
        f"({SAFETY:g} x the standard rounding model's {predicted:.3g}), {error / bound:.2f} of the bound"
    )
    passed = math.isfinite(error) and error <= bound
    return (Status.PASS if passed else Status.FAIL), detail, {"error_eps": error / eps}


def run_model_case(backend: Backend, case: Case, cache: dict[Any, Any] | None = None) -> CaseResult:
    """Run one model case on the backend; never raises."""
    start = time.perf_counter()
    name = case.op.removeprefix(f"{MODEL}/")

    def result(status: Status, detail: str, extra: dict[str, Any] | None = None) -> CaseResult:
        extra = extra or {}
        return CaseResult(
            case.id,
            case.op,
            case.format,
            case.pass_,
            case.input_class,
            status,
            extra.get("error_eps"),
            detail,
            time.perf_counter() - start,
            model=name,
            curve=extra.get("curve", ()),
            fp32_curve=extra.get("fp32_curve", ()),
            skipped_steps=extra.get("skipped_steps"),
        )

    if not isinstance(backend, TrainingBackend):
        return result(
            Status.UNSUPPORTED,
            f"{backend.name} runs ops but does not train torch models (not an mpx.TrainingBackend): "
            "model cases need autocast and the training protocol",
        )
    try:
        spec = MODELS[name]
        run = _training if case.pass_ == "training" else _inference
        eager_before = _eager_calls(backend)
        status, detail, extra = run(backend, spec, case, cache if cache is not None else {})
        eager = _eager_calls(backend) - eager_before
    except PolicyError as error:  # the backend does not train or run in this format at all: it says why
        return result(Status.UNSUPPORTED, f"{backend.name} refuses the {case.format} recipe: {error}")
    except Exception as error:
        return result(Status.ERROR, f"{type(error).__name__}: {error}".strip()[:2000])
    if eager and status == Status.PASS:  # right numbers, but not from the backend's device
        detail = f"{eager} model calls ran as torch code on the host, not on {backend.name}'s device; {detail}"
        status = Status.FALLBACK
    return result(status, detail, extra)


def _eager_calls(backend: TrainingBackend) -> int:
    """Model calls a compiling backend ran as torch code on the host (its placement's "eager" entries)."""
    return sum(int(graph.get("runs") or 0) for graph in backend.placement() if graph.get("kind") == "eager")
