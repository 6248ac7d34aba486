"""Conformance cases: stable ids, deterministic seeds, selection by format/op/id."""

import pytest

import mpx
from mpx.conformance.cases import Case, generate, parse_case_id
from mpx.ops import all_ops


def test_case_id_names_op_format_pass_and_input_class():
    assert Case("matmul", "bf16", "backward", "long-reduction").id == "matmul/bf16/backward/long-reduction"


def test_case_ids_parse_back_to_the_same_case():
    for case in generate():
        assert parse_case_id(case.id) == case


def test_seed_depends_only_on_the_id():
    a, b = Case("add", "fp16", "forward", "normal"), Case("add", "fp16", "forward", "normal")
    assert a.seed == b.seed
    assert a.seed != Case("add", "fp16", "forward", "special").seed


def test_every_op_contributes_cases_in_each_format_it_defines():
    ids = {c.id for c in generate()}
    for op in all_ops():
        for fmt in mpx.FORMATS:
            if op.supports_format(fmt):
                assert f"{op.name}/{fmt.name}/forward/{op.input_classes[0]}" in ids


def test_semantics_cases_measure_overflow_and_subnormals_per_format():
    ids = {c.id for c in generate()}
    for fmt in mpx.FORMATS:
        assert {f"semantics/{fmt.name}/overflow", f"semantics/{fmt.name}/subnormals"} <= ids


def test_format_and_op_selection_narrow_the_cases():
    cases = generate([mpx.format("bf16")], ["add"])
    assert cases and all(c.op == "add" and c.format == "bf16" for c in cases)


def test_a_case_id_selects_exactly_that_case():
    assert [c.id for c in generate(case_ids=["add/fp16/backward/special"])] == ["add/fp16/backward/special"]


def test_unknown_op_lists_the_known_ones():
    with pytest.raises(mpx.ConformanceError, match="unknown op 'matmull'.*matmul"):
        generate(ops=["matmull"])


def test_malformed_case_id_shows_the_expected_shape():
    with pytest.raises(mpx.ConformanceError, match="op/format/pass/input-class"):
        generate(case_ids=["add-fp16"])


def test_unknown_case_id_suggests_a_close_one():
    with pytest.raises(mpx.ConformanceError, match="did you mean add/fp16/forward/normal"):
        generate(case_ids=["add/fp61/forward/normal"])
