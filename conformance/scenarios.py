"""Scenario manifests (conformance/scenarios/*.toml): what each use of a model needs from a backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mpx.errors import ConformanceError, MpxError
from mpx.formats import FP32, Format
from mpx.formats import format as lookup_format
from mpx.ops import get_op
from mpx.policy import Policy, policy

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SCENARIO_DIR = Path(__file__).parent / "scenarios"
# The policy each format column of the readiness matrix is judged under.
COLUMN_POLICY = {"fp32": "fp32", "fp16": "fp16-mixed", "bf16": "bf16-mixed", "fp8_e4m3": "fp8-hybrid"}
ROLES = ("compute", "grads", "fp32", "params")


@dataclass(frozen=True)
class Requirement:
    """An (op, format role, pass) a scenario needs, and why."""

    op: str
    pass_: str
    role: str
    why: str = ""

    def resolve(self, column_policy: Policy) -> Format:
        """The concrete format this requirement asks for under a column's policy."""
        if self.role == "fp32":
            return FP32
        if self.role == "params":
            return column_policy.params
        backward = self.role == "grads"
        try:
            return column_policy.op_format(get_op(self.op).autocast, backward)
        except MpxError:  # an op not in the registry: the roll-up reports it missing
            return column_policy.backward if backward else column_policy.compute


@dataclass(frozen=True)
class Scenario:
    """A named use (training-generative, ...), the format columns it is judged in, and its requirements."""

    name: str
    description: str
    formats: tuple[str, ...]
    requires: tuple[Requirement, ...]
    source: str = ""
    models: tuple[str, ...] = ()  # model-level cases (models.py) a column needs to pass, of kind `model_case`
    model_case: str = "training"

    @property
    def model_case_ids(self) -> dict[str, tuple[str, ...]]:
        """Per format column, the ids of the model cases it needs."""
        return {f: tuple(f"model/{m}/{f}/{self.model_case}" for m in self.models) for f in self.formats}

    def policy_for(self, column: str) -> Policy:
        return policy(COLUMN_POLICY[column])


def load_scenario(path: Path) -> Scenario:
    """Parse and validate one manifest; every mistake names the file and the entry."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConformanceError(f"scenario manifest {path}: {error}") from None
    name = data.get("scenario") or path.stem
    formats = tuple(data.get("formats", COLUMN_POLICY))
    bad = [f for f in formats if f not in COLUMN_POLICY]
    if bad:
        raise ConformanceError(
            f"scenario manifest {path}: format column {bad[0]!r} has no policy; columns: {', '.join(COLUMN_POLICY)}"
        )
    requires = []
    for index, entry in enumerate(data.get("requires", ())):
        where = f"scenario manifest {path}, requires[{index}]"
        if not isinstance(entry, dict) or "op" not in entry:
            raise ConformanceError(f"{where}: each [[requires]] needs op, pass, format")
        pass_ = entry.get("pass", "forward")
        role = entry.get("format", "compute")
        if pass_ not in ("forward", "backward"):
            raise ConformanceError(f"{where}: pass {pass_!r} must be 'forward' or 'backward'")
        if role not in ROLES:
            raise ConformanceError(f"{where}: format role {role!r} must be one of {', '.join(ROLES)}")
        requires.append(Requirement(entry["op"], pass_, role, entry.get("why", "")))
    models, model_case = _models(data, path)
    return Scenario(name, data.get("description", ""), formats, tuple(requires), str(path), models, model_case)


def _models(data: dict, path: Path) -> tuple[tuple[str, ...], str]:
    """The `models` list and `model_case` kind of a manifest, checked against the model zoo."""
    from mpx.errors import unknown_name_message

    from .model_zoo import MODELS

    models = data.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ConformanceError(f"scenario manifest {path}: models must be a list of names, e.g. ['mlp', 'cnn']")
    for name in models:
        if name not in MODELS:
            raise ConformanceError(f"scenario manifest {path}: " + unknown_name_message("model", name, MODELS))
    kind = data.get("model_case", "training")
    if kind not in ("training", "inference"):
        raise ConformanceError(f"scenario manifest {path}: model_case {kind!r} must be 'training' or 'inference'")
    return tuple(models), kind


def load_scenarios(directory: Path = SCENARIO_DIR) -> dict[str, Scenario]:
    """Every scenario manifest in `directory`, by name."""
    scenarios = {}
    for path in sorted(Path(directory).glob("*.toml")):
        scenario = load_scenario(path)
        if scenario.name in scenarios:
            raise ConformanceError(
                f"scenario {scenario.name!r} is defined twice ({scenarios[scenario.name].source}, {path})"
            )
        scenarios[scenario.name] = scenario
    return scenarios


def select_scenarios(names: Sequence[str], directory: Path = SCENARIO_DIR) -> list[Scenario]:
    """The named scenarios (all when `names` is empty); an unknown name lists the valid ones."""
    scenarios = load_scenarios(directory)
    if names and not scenarios:
        raise ConformanceError(f"no scenario manifests in {directory}; add <name>.toml files there")
    for name in names:
        if name not in scenarios:
            from mpx.errors import unknown_name_message

            raise ConformanceError(unknown_name_message("scenario", name, scenarios))
    return [scenarios[n] for n in (names or scenarios)]


def select_formats(names: Sequence[str]) -> list[Format]:
    """The named formats (all when empty); an unknown name lists the valid ones."""
    from mpx.formats import FORMATS

    chosen = []
    for name in names:
        try:
            chosen.append(lookup_format(name))
        except MpxError:
            raise ConformanceError(f"unknown format {name!r}; formats: {', '.join(f.name for f in FORMATS)}") from None
    return list(dict.fromkeys(chosen)) or list(FORMATS)
