"""Comparing two reports: which cases and scenarios improved or regressed between, say, two driver releases.

A case regresses when its status gets worse on the scale pass > runs, but not as asked (Status.runs: upcast,
fallback) > everything else; it improves when it gets better. A scenario column regresses when it stops being
ready or its coverage drops. A backend that was available and is not any more is a regression too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .report import Report
from .status import Status


def rank(status: Status | str) -> int:
    """0: passes, 1: right numbers but not as asked, 2: anything else (lower is better)."""
    status = Status(status)
    return 0 if status.passes else 1 if status.runs else 2


@dataclass(frozen=True)
class CaseChange:
    """One case whose status changed; '' for a report that does not have it."""

    backend: str
    id: str
    old: str
    new: str


@dataclass(frozen=True)
class ScenarioChange:
    """One scenario column whose readiness or coverage changed."""

    backend: str
    scenario: str
    format: str
    old_ready: bool
    new_ready: bool
    old_coverage: float
    new_coverage: float


@dataclass
class ReportDiff:
    """What changed between two reports."""

    improved: list[CaseChange] = field(default_factory=list)
    regressed: list[CaseChange] = field(default_factory=list)
    changed: list[CaseChange] = field(default_factory=list)  # status changed within the same rank
    added: list[CaseChange] = field(default_factory=list)
    removed: list[CaseChange] = field(default_factory=list)
    scenarios_improved: list[ScenarioChange] = field(default_factory=list)
    scenarios_regressed: list[ScenarioChange] = field(default_factory=list)
    backends_lost: list[str] = field(default_factory=list)
    backends_gained: list[str] = field(default_factory=list)

    @property
    def has_regressions(self) -> bool:
        return bool(self.regressed or self.scenarios_regressed or self.backends_lost)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["has_regressions"] = self.has_regressions
        return data


def diff_reports(old: Report, new: Report) -> ReportDiff:
    """Case by case and scenario by scenario, per backend present in either report."""
    result = ReportDiff()
    old_backends = {b.name: b for b in old.backends}
    new_backends = {b.name: b for b in new.backends}
    for name in dict.fromkeys([*old_backends, *new_backends]):
        before, after = old_backends.get(name), new_backends.get(name)
        was, now = bool(before and before.available), bool(after and after.available)
        if was and not now:
            result.backends_lost.append(name)
        elif now and not was:
            result.backends_gained.append(name)
        old_cases = {c.id: c.status for c in before.cases} if before else {}
        new_cases = {c.id: c.status for c in after.cases} if after else {}
        for case_id in dict.fromkeys([*old_cases, *new_cases]):
            old_status, new_status = old_cases.get(case_id, ""), new_cases.get(case_id, "")
            change = CaseChange(name, case_id, old_status, new_status)
            if not old_status:
                result.added.append(change)
            elif not new_status:
                result.removed.append(change)
            elif rank(new_status) > rank(old_status):
                result.regressed.append(change)
            elif rank(new_status) < rank(old_status):
                result.improved.append(change)
            elif new_status != old_status:
                result.changed.append(change)
        old_scenarios = {(s.scenario, s.format): s for s in before.scenarios} if before else {}
        for scenario in after.scenarios if after else ():
            previous = old_scenarios.get((scenario.scenario, scenario.format))
            if previous is None:
                continue
            change = ScenarioChange(
                name,
                scenario.scenario,
                scenario.format,
                previous.ready,
                scenario.ready,
                previous.coverage,
                scenario.coverage,
            )
            if (previous.ready and not scenario.ready) or scenario.coverage < previous.coverage:
                result.scenarios_regressed.append(change)
            elif (scenario.ready and not previous.ready) or scenario.coverage > previous.coverage:
                result.scenarios_improved.append(change)
    return result


def render_text(diff: ReportDiff) -> str:
    """The diff for a terminal or a CI log."""
    lines = []

    def cases(title: str, changes: list[CaseChange]) -> None:
        if changes:
            lines.append(f"{title} ({len(changes)}):")
            lines.extend(f"  {c.backend}: {c.id}: {c.old or '-'} -> {c.new or '-'}" for c in changes)

    def scenarios(title: str, changes: list[ScenarioChange]) -> None:
        if changes:
            lines.append(f"{title} ({len(changes)}):")
            for c in changes:
                ready = lambda r: "ready" if r else "not ready"  # noqa: E731
                lines.append(
                    f"  {c.backend}: {c.scenario} / {c.format}: {ready(c.old_ready)} {c.old_coverage:.0%} -> "
                    f"{ready(c.new_ready)} {c.new_coverage:.0%}"
                )

    if diff.backends_lost:
        lines.append(f"backends no longer available: {', '.join(diff.backends_lost)}")
    if diff.backends_gained:
        lines.append(f"backends now available: {', '.join(diff.backends_gained)}")
    cases("regressed", diff.regressed)
    cases("improved", diff.improved)
    cases("changed", diff.changed)
    scenarios("scenarios regressed", diff.scenarios_regressed)
    scenarios("scenarios improved", diff.scenarios_improved)
    if diff.added or diff.removed:
        lines.append(f"{len(diff.added)} cases added, {len(diff.removed)} removed")
    lines.append("regressions: " + ("yes" if diff.has_regressions else "none"))
    return "\n".join(lines)
