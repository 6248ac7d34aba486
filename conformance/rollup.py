"""Scenario roll-up: is a backend ready for a scenario in a format column, how far, and what is missing.

A column's requirements are its op requirements (scenarios/*.toml `requires`), its model-level cases
(`models`: model/<model>/<format>/<training|inference> must pass) and the semantics measurements of every
format the column uses (its own and those its requirements resolve to, fp32 for losses and masters): a
declared overflow / subnormal behaviour that the device does not show, that was measured off the device or
not measured at all leaves every column using that format not ready.

A requirement (op, format, pass) is met when every case of it passes -- natively or through a declared
decomposition. `upcast` and `fallback` cases run with the right numbers but not in the asked format or not on
the device, so they do not make a scenario ready; they count in `runs` (the share of requirements that at
least run correctly), while `coverage` is the share that is met.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from mpx.ops import all_ops

from .cases import SEMANTIC_PROPERTIES, SEMANTICS
from .report import CaseResult, Missing, ScenarioResult
from .scenarios import Requirement, Scenario
from .status import Status, worst

_MODEL_WHY = {
    "training": "the model trains through MixedPrecision as close to fp32 as the format allows",
    "inference": "the model's outputs stay within the format's rounding bound of float64",
}
_SEMANTICS_WHY = "every reference in this format is rounded under the declared overflow / subnormal semantics"
RUNS: tuple[Status, ...] = tuple(status for status in Status if status.runs)  # the 0.1 name; use Status.runs


def roll_up(
    scenarios: Sequence[Scenario], cases: Iterable[CaseResult], formats: Sequence[str] | None = None
) -> list[ScenarioResult]:
    """One ScenarioResult per scenario x format column (columns restricted to `formats` when given)."""
    from .model_zoo import MODELS

    known_models = {f"model/{name}" for name in MODELS}
    by_key: dict[tuple[str, str, str], list[CaseResult]] = defaultdict(list)
    for case in cases:
        by_key[(case.op, case.format, case.pass_)].append(case)
        if case.model:
            known_models.add(case.op)
    known_ops = {op.name for op in all_ops()} | known_models
    results = []
    for scenario in scenarios:
        for column in scenario.formats:
            if formats is not None and column not in formats:
                continue
            results.append(_column(scenario, column, by_key, known_ops))
    return results


def _column(
    scenario: Scenario, column: str, by_key: dict[tuple[str, str, str], list[CaseResult]], known_ops: set[str]
) -> ScenarioResult:
    column_policy = scenario.policy_for(column)
    requirements = list(dict.fromkeys((r, r.resolve(column_policy).name) for r in scenario.requires))
    requirements += [
        (Requirement(f"model/{name}", scenario.model_case, "compute", _MODEL_WHY[scenario.model_case]), column)
        for name in scenario.models
    ]
    missing, met, runs = [], 0, 0
    for requirement, fmt in requirements:
        cases = by_key.get((requirement.op, fmt, requirement.pass_), [])
        reason = _unmet_reason(requirement, fmt, cases, known_ops)
        if reason is None:
            met += 1
            runs += 1
            continue
        if cases and all(c.status.runs for c in cases):
            runs += 1
        missing.append(Missing(requirement.op, fmt, requirement.pass_, requirement.why, reason))
    formats = dict.fromkeys([column, *(fmt for r, fmt in requirements if not r.op.startswith("model/"))])
    semantics = [(fmt, prop) for fmt in formats for prop in SEMANTIC_PROPERTIES]
    for fmt, prop in semantics:
        reason = _semantics_unmet(fmt, prop, by_key)
        if reason is None:
            met += 1
            runs += 1
        else:
            missing.append(Missing(SEMANTICS, fmt, prop, _SEMANTICS_WHY, reason))
    total = len(requirements) + len(semantics)
    return ScenarioResult(
        scenario.name,
        column,
        column_policy.name or str(column_policy),
        not missing and total > 0,
        met / total if total else 0.0,
        runs / total if total else 0.0,
        total,
        tuple(missing),
    )


def _semantics_unmet(fmt: str, prop: str, by_key: dict[tuple[str, str, str], list[CaseResult]]) -> str | None:
    """None when the backend's declared overflow / subnormal behaviour in `fmt` was measured on its device.

    Every reference in the format is rounded under the declaration, so it is a requirement of every column
    that uses the format: a mismatch, a measurement off the device or no measurement leaves the column not ready.
    """
    cases = [c for c in by_key.get((SEMANTICS, fmt, "forward"), []) if c.input_class == prop]
    if not cases:
        return f"no {SEMANTICS}/{fmt}/{prop} case was run in this report"
    case = cases[0]
    return None if case.status.passes else f"{case.status} in {case.id}: {case.detail}"


def _unmet_reason(requirement: Requirement, fmt: str, cases: list[CaseResult], known_ops: set[str]) -> str | None:
    """None when the requirement is met, else why not (the worst case speaks for it)."""
    if requirement.op not in known_ops:
        return f"op {requirement.op!r} is not in the op registry"
    if not cases and requirement.op.startswith("model/"):
        return f"no {requirement.op}/{fmt}/{requirement.pass_} case was run in this report"
    if not cases:
        return f"no {requirement.op} {fmt} {requirement.pass_} case was run in this report"
    if all(c.status.passes for c in cases):
        return None
    status = worst(c.status for c in cases)
    first = next(c for c in cases if c.status is status)
    bad = [c for c in cases if not c.status.passes]
    others = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
    detail = f": {first.detail}" if first.detail else ""
    return f"{status} in {first.id}{detail}{others}"
