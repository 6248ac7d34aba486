"""Exhaustive 16-bit accuracy tables, the data: a row per op, pass and format, a backend's tables, a request.

Every element-wise op and its backward run over all 65,536 fp16 and all 65,536 bf16 values (and a 65,536-value
fp32 sample) in one backend call each (accuracy_tables_measure, accuracy_tables_sweep). The reference is the
float64 op on the same stored inputs rounded once to the result's format: the correctly rounded result. A row
gives the largest distance from it in ULPs of the format (CUDA's metric), the largest error against the float64
value (OpenCL's and JAX's: 0.5 is correctly rounded), the worst input, how many results are not correctly rounded
and whether the errors are within the chosen tolerance profile (tolerance_profiles). A row a backend cannot run
says why ('unsupported'), never goes missing. Light on purpose: report.py imports it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .tolerance_profiles import DEFAULT_PROFILE, PROFILES

RowStatus = Literal["measured", "unsupported", "error"]


@dataclass(frozen=True)
class TableRow:
    """One op, pass and format on one backend: its accuracy over the whole sweep (or why there is none)."""

    op: str
    pass_: str
    format: str
    status: RowStatus
    detail: str = ""
    inputs: int = 0
    exhaustive: bool = True
    max_ulp: float = 0.0  # distance from the correctly rounded result, in ULPs of the format
    max_ulp_exact: float = 0.0  # error against the float64 value, in ULPs of the format
    not_correctly_rounded: int = 0
    worst_input: tuple[str, ...] = ()
    worst_got: str = ""
    worst_want: str = ""
    support: str = ""
    limit: float | None = None
    within: bool | None = None
    time_s: float = 0.0

    @property
    def correctly_rounded(self) -> bool:
        return self.status == "measured" and self.not_correctly_rounded == 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pass"] = data.pop("pass_")
        data["worst_input"] = list(self.worst_input)
        for key in ("max_ulp", "max_ulp_exact"):  # JSON has no inf: an infinite error is the string "inf"
            data[key] = data[key] if math.isfinite(data[key]) else "inf"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableRow:
        data = dict(data)
        data["pass_"] = data.pop("pass")
        data["worst_input"] = tuple(data.get("worst_input") or ())
        for key in ("max_ulp", "max_ulp_exact"):
            data[key] = float(data.get(key, 0.0))
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class AccuracyTables:
    """Every row measured on one backend, the profile the verdicts use, and how long it took."""

    profile: str = DEFAULT_PROFILE
    rows: list[TableRow] = field(default_factory=list)
    time_s: float = 0.0
    skipped: str = ""  # why no rows were made ("" when they were)

    def to_dict(self) -> dict[str, Any]:
        profile = PROFILES.get(self.profile)  # a report from another version may name a profile this one lacks
        return {
            "profile": self.profile,
            "profile_source": profile.source if profile else "",
            "profile_metric": profile.metric if profile else "",
            "time_s": round(self.time_s, 3),
            "skipped": self.skipped,
            "rows": [row.to_dict() for row in self.rows],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AccuracyTables:
        rows = [TableRow.from_dict(row) for row in data.get("rows", ())]
        return cls(data.get("profile", DEFAULT_PROFILE), rows, float(data.get("time_s", 0.0)), data.get("skipped", ""))


@dataclass(frozen=True)
class TableRequest:
    """What tables a run makes: element-wise ops (empty: all), formats (fp16, bf16, fp32 among them), the profile.

    chunk: values per backend call (None: all 65,536 in one call). skipped: why no tables are made ("" to make them).
    """

    ops: tuple[str, ...] = ()
    formats: tuple[str, ...] = ("fp16", "bf16", "fp32")
    profile: str = DEFAULT_PROFILE
    chunk: int | None = None
    skipped: str = ""
