"""Conformance cases: op x format x pass x input class, each with a stable id and a deterministic seed."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mpx.errors import ConformanceError, unknown_name_message
from mpx.formats import FORMATS, Format
from mpx.ops import all_ops
from mpx.ops.spec import INPUT_CLASSES, OpSpec

PASSES = ("forward", "backward")
SEMANTICS = "semantics"  # the pseudo-op of the cases that measure overflow and subnormal handling
SEMANTIC_PROPERTIES = ("overflow", "subnormals")
MODEL = "model"  # the pseudo-op of the model-level cases (models.py): model/<name>/<format>/<training|inference>
MODEL_PASSES = ("training", "inference")


@dataclass(frozen=True)
class Case:
    """One thing to run: `matmul/bf16/backward/long-reduction`, or `semantics/fp16/overflow`."""

    op: str
    format: str
    pass_: str
    input_class: str

    @property
    def id(self) -> str:
        if self.op == SEMANTICS:
            return f"{SEMANTICS}/{self.format}/{self.input_class}"
        if self.is_model:
            return f"{self.op}/{self.format}/{self.pass_}"
        return f"{self.op}/{self.format}/{self.pass_}/{self.input_class}"

    @property
    def seed(self) -> int:
        """The same seed for the same id, in every process and every run."""
        return zlib.crc32(self.id.encode()) & 0x7FFFFFFF

    @property
    def is_semantics(self) -> bool:
        return self.op == SEMANTICS

    @property
    def is_model(self) -> bool:
        return self.op.startswith(f"{MODEL}/")


def op_cases(op: OpSpec, formats: Iterable[Format] = FORMATS) -> list[Case]:
    """Every case of one op: the formats it is defined in, its passes and its input classes."""
    passes = PASSES if op.has_backward else PASSES[:1]
    return [
        Case(op.name, fmt.name, pass_, input_class)
        for fmt in formats
        if op.supports_format(fmt)
        for pass_ in passes
        for input_class in op.input_classes
        if op.defines(fmt, pass_, input_class)
    ]


def model_case(name: str, fmt: str, pass_: str) -> Case:
    """The case of one model in one format column, training or inference."""
    return Case(f"{MODEL}/{name}", fmt, pass_, MODEL)


def model_cases(formats: Iterable[str], names: Iterable[str] = ()) -> list[Case]:
    """Every model case of `names` (all models of the zoo when empty) in the given format columns."""
    from .model_zoo import MODELS
    from .scenarios import COLUMN_POLICY

    columns = [f for f in formats if f in COLUMN_POLICY]
    return [model_case(n, f, p) for n in (names or MODELS) for f in columns for p in MODEL_PASSES]


def semantic_cases(formats: Iterable[Format] = FORMATS) -> list[Case]:
    """One overflow and one subnormal case per format."""
    return [Case(SEMANTICS, fmt.name, "forward", prop) for fmt in formats for prop in SEMANTIC_PROPERTIES]


def generate(
    formats: Sequence[Format] = FORMATS,
    ops: Sequence[str] = (),
    case_ids: Sequence[str] = (),
) -> list[Case]:
    """The cases selected by format, op name and case id (empty selections select everything).

    The pseudo-ops 'semantics' and 'model' select the semantics measurements and the model-level cases.
    """
    known_ops = {op.name: op for op in all_ops()}
    unknown = [name for name in ops if name not in known_ops and name not in (SEMANTICS, MODEL)]
    if unknown:
        raise ConformanceError(unknown_name_message("op", unknown[0], [*known_ops, SEMANTICS, MODEL]))
    chosen = [known_ops[name] for name in known_ops if not ops or name in ops]
    cases = [case for op in chosen for case in op_cases(op, formats)]
    if not ops or SEMANTICS in ops:
        cases += semantic_cases(formats)
    if not ops or MODEL in ops:
        cases += model_cases(f.name for f in formats)
    if case_ids:
        by_id = {case.id: case for case in cases}
        for case_id in case_ids:
            if case_id not in by_id:
                raise ConformanceError(_unknown_case_message(case_id, known_ops.values()))
        cases = [by_id[case_id] for case_id in dict.fromkeys(case_ids)]
    return cases


def parse_case_id(case_id: str) -> Case:
    """The case a stable id names (the inverse of Case.id)."""
    parts = case_id.split("/")
    if len(parts) == 3 and parts[0] == SEMANTICS and parts[2] in SEMANTIC_PROPERTIES:
        return Case(SEMANTICS, parts[1], "forward", parts[2])
    if len(parts) == 4 and parts[0] == MODEL and parts[3] in ("training", "inference"):
        return Case(f"{MODEL}/{parts[1]}", parts[2], parts[3], MODEL)
    if len(parts) == 4 and parts[2] in PASSES and parts[3] in INPUT_CLASSES:
        return Case(*parts)
    raise ConformanceError(
        f"bad case id {case_id!r}: write op/format/pass/input-class (e.g. 'matmul/bf16/backward/long-reduction') "
        f"or semantics/format/{'|'.join(SEMANTIC_PROPERTIES)} or model/name/format/training|inference"
    )


def _unknown_case_message(case_id: str, ops: Iterable[OpSpec]) -> str:
    parse_case_id(case_id)  # a malformed id gets the message that shows the shape
    every = {c.id for op in ops for c in op_cases(op)} | {c.id for c in semantic_cases()}
    every |= {c.id for c in model_cases(f.name for f in FORMATS)}
    if case_id in every:
        return f"case {case_id!r} is excluded by the --op/--format selection; drop those options to run it"
    import difflib

    near = difflib.get_close_matches(case_id, sorted(every), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(near)}?" if near else "; list the ids with 'mpx conformance --json PATH'"
    return f"unknown case {case_id!r}{hint}"
