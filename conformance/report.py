"""The report dataclasses and their JSON form (schema "mpx-conformance/1")."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mpx.errors import ConformanceError

from .accuracy_tables import AccuracyTables
from .status import STATUSES, Status

SCHEMA = "mpx-conformance/1"
MODEL_FIELDS = ("model", "curve", "fp32_curve", "skipped_steps")
SEVERITY = {status.value: status.severity for status in Status}  # the 0.1 name; use Status.severity


@dataclass(frozen=True)
class CaseResult:
    """One case on one backend: its status, the largest error in ULPs of the output format, and why."""

    id: str
    op: str
    format: str
    pass_: str
    input_class: str
    status: Status  # a JSON string is accepted and turned into its Status
    max_error_ulp: float | None = None
    detail: str = ""
    time_s: float = 0.0
    support: str = ""
    measured: str = ""
    model: str = ""  # model cases only (models.py): the model, both loss curves and the skipped steps
    curve: tuple[float, ...] = ()
    fp32_curve: tuple[float, ...] = ()
    skipped_steps: int | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "status", Status(self.status))
        except ValueError:
            raise ConformanceError(
                f"case {self.id!r}: unknown status {self.status!r}; statuses: {', '.join(STATUSES)}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pass"] = data.pop("pass_")
        error = self.max_error_ulp
        data["max_error_ulp"] = error if error is not None and math.isfinite(error) else None
        if not self.model:  # op and semantics cases keep the 0.1 shape
            for key in MODEL_FIELDS:
                del data[key]
        else:  # NaN is not JSON: a diverged step's loss is null
            for key in ("curve", "fp32_curve"):
                data[key] = [v if math.isfinite(v) else None for v in data[key]]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseResult:
        data = dict(data)
        data["pass_"] = data.pop("pass")
        for key in ("curve", "fp32_curve"):
            data[key] = tuple(math.nan if v is None else float(v) for v in data.get(key) or ())
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Missing:
    """A requirement of a scenario that this backend does not meet, and why."""

    op: str
    format: str
    pass_: str
    why: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "format": self.format, "pass": self.pass_, "why": self.why, "reason": self.reason}


@dataclass(frozen=True)
class ScenarioResult:
    """Readiness of one scenario in one format column (under that column's policy)."""

    scenario: str
    format: str
    policy: str
    ready: bool
    coverage: float
    runs: float
    required: int
    missing: tuple[Missing, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["missing"] = [m.to_dict() for m in self.missing]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScenarioResult:
        missing = tuple(
            Missing(m["op"], m["format"], m["pass"], m.get("why", ""), m.get("reason", ""))
            for m in data.get("missing", ())
        )
        return cls(
            data["scenario"],
            data["format"],
            data.get("policy", ""),
            bool(data["ready"]),
            float(data["coverage"]),
            float(data.get("runs", data["coverage"])),
            int(data.get("required", 0)),
            missing,
        )


@dataclass
class BackendReport:
    """Everything measured on one backend (or why it could not run)."""

    name: str
    available: bool
    reason: str = ""
    description: dict[str, Any] = field(default_factory=dict)
    isolated: bool = False
    cases: list[CaseResult] = field(default_factory=list)
    scenarios: list[ScenarioResult] = field(default_factory=list)
    accuracy: AccuracyTables | None = None  # the exhaustive 16-bit accuracy tables (accuracy_tables.py)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "available": self.available,
            "reason": self.reason,
            "describe": self.description,
            "isolated": self.isolated,
            "cases": [c.to_dict() for c in self.cases],
            "scenarios": [s.to_dict() for s in self.scenarios],
            "accuracy": self.accuracy.to_dict() if self.accuracy is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackendReport:
        return cls(
            data["name"],
            bool(data["available"]),
            data.get("reason", ""),
            data.get("describe", {}),
            data.get("isolated", False),
            [CaseResult.from_dict(c) for c in data.get("cases", ())],
            [ScenarioResult.from_dict(s) for s in data.get("scenarios", ())],
            AccuracyTables.from_dict(data["accuracy"]) if data.get("accuracy") else None,
        )

    def counts(self) -> dict[Status, int]:
        """How many cases have each status (every status, in Status order)."""
        counts = dict.fromkeys(Status, 0)
        for case in self.cases:
            counts[case.status] += 1
        return counts


@dataclass
class Report:
    """A whole conformance run: metadata and one BackendReport per backend."""

    metadata: dict[str, Any]
    backends: list[BackendReport]
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "metadata": self.metadata, "backends": [b.to_dict() for b in self.backends]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Any, source: str = "report") -> Report:
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise ConformanceError(
                f"{source} is not an mpx conformance report (schema {found!r}, expected {SCHEMA!r}); "
                "write one with 'mpx conformance --json PATH'"
            )
        try:
            return cls(data.get("metadata", {}), [BackendReport.from_dict(b) for b in data["backends"]])
        except (KeyError, TypeError, ValueError) as error:
            raise ConformanceError(
                f"{source} is a malformed {SCHEMA} report ({type(error).__name__}: {error})"
            ) from None

    @classmethod
    def load(cls, path: str | Path) -> Report:
        """Read a JSON report written by `mpx conformance --json` (report_input refuses anything else)."""
        from .report_input import check_types, read_json

        data = read_json(path)
        if isinstance(data, dict) and data.get("schema") == SCHEMA:  # else from_dict names the schema
            check_types(data, repr(str(path)))
        return cls.from_dict(data, source=repr(str(path)))
