"""Scenario roll-up: ready only when every required case passes; coverage, runs and missing with reasons."""

import pytest

import mpx
from mpx.conformance.report import CaseResult
from mpx.conformance.rollup import roll_up
from mpx.conformance.scenarios import load_scenario, select_scenarios

MANIFEST = """
scenario = "tiny-training"
description = "a matmul model trained with loss scaling"
formats = ["fp32", "bf16", "fp8_e4m3"]

[[requires]]
op = "matmul"
pass = "forward"
format = "compute"
why = "linear layers"

[[requires]]
op = "matmul"
pass = "backward"
format = "grads"
why = "weight gradients"

[[requires]]
op = "cast"
pass = "forward"
format = "fp32"
why = "master weights"
"""


@pytest.fixture
def scenario(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(MANIFEST)
    return load_scenario(path)


def _case(op, fmt, pass_, status="pass", input_class="normal"):
    return CaseResult(f"{op}/{fmt}/{pass_}/{input_class}", op, fmt, pass_, input_class, status, 0.0, "why not")


def _semantics(fmt, prop, status="pass"):
    return CaseResult(f"semantics/{fmt}/{prop}", "semantics", fmt, "forward", prop, status, None, "measured")


FORMATS = ("fp32", "bf16", "fp8_e4m3", "fp8_e5m2")


def _all_pass():
    return (
        [_case("matmul", f, p) for f in FORMATS for p in ("forward", "backward")]
        + [_case("cast", "fp32", "forward")]
        + [_semantics(f, p) for f in FORMATS for p in ("overflow", "subnormals")]
    )


def test_roles_resolve_under_the_column_policy(scenario):
    fp8 = mpx.policy("fp8-hybrid")
    matmul_forward, matmul_backward, cast = scenario.requires
    assert matmul_forward.resolve(fp8).name == "fp8_e4m3"
    assert matmul_backward.resolve(fp8).name == "fp8_e5m2"
    assert cast.resolve(fp8).name == "fp32"


def test_every_column_is_ready_when_every_required_case_passes(scenario):
    results = roll_up([scenario], _all_pass())
    assert [(r.format, r.ready, r.coverage) for r in results] == [
        ("fp32", True, 1.0),
        ("bf16", True, 1.0),
        ("fp8_e4m3", True, 1.0),
    ]


def test_one_failing_input_class_makes_the_requirement_missing(scenario):
    cases = [*_all_pass(), _case("matmul", "bf16", "forward", "fail", "special")]
    bf16 = roll_up([scenario], cases, ["bf16"])[0]
    assert not bf16.ready and bf16.coverage == pytest.approx(6 / 7)
    (missing,) = bf16.missing
    assert (missing.op, missing.format, missing.pass_, missing.why) == ("matmul", "bf16", "forward", "linear layers")
    assert missing.reason == "fail in matmul/bf16/forward/special: why not"


def test_upcast_runs_but_is_not_ready(scenario):
    cases = [c for c in _all_pass() if c.format != "bf16" or c.op == "semantics"] + [
        _case("matmul", "bf16", "forward", "upcast"),
        _case("matmul", "bf16", "backward", "pass"),
    ]
    bf16 = roll_up([scenario], cases, ["bf16"])[0]
    assert not bf16.ready and bf16.coverage == pytest.approx(6 / 7) and bf16.runs == 1.0
    assert bf16.missing[0].reason.startswith("upcast in matmul/bf16/forward/normal")


def test_a_requirement_with_no_cases_is_missing_and_says_so(scenario):
    cases = [c for c in _all_pass() if c.format != "fp8_e5m2" or c.op == "semantics"]
    fp8 = roll_up([scenario], cases, ["fp8_e4m3"])[0]
    assert [m.reason for m in fp8.missing] == ["no matmul fp8_e5m2 backward case was run in this report"]


def test_semantics_of_every_format_a_column_uses_are_requirements(scenario):
    """bf16 trains with fp32 masters: an fp32 semantics mismatch leaves the bf16 column not ready too."""
    cases = [c for c in _all_pass() if c.id != "semantics/fp32/overflow"]
    cases.append(_semantics("fp32", "overflow", "fail"))
    results = {r.format: r for r in roll_up([scenario], cases)}
    for column in ("fp32", "bf16", "fp8_e4m3"):
        assert not results[column].ready
        assert [(m.op, m.format, m.pass_) for m in results[column].missing] == [("semantics", "fp32", "overflow")]
    unmeasured = roll_up([scenario], [c for c in _all_pass() if c.id != "semantics/fp8_e5m2/subnormals"])
    fp8 = next(r for r in unmeasured if r.format == "fp8_e4m3")
    assert not fp8.ready and fp8.missing[0].reason == "no semantics/fp8_e5m2/subnormals case was run in this report"
    assert all(r.ready for r in unmeasured if r.format != "fp8_e4m3")


def test_an_op_missing_from_the_registry_is_reported(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        'scenario = "s"\nformats = ["fp32"]\n[[requires]]\nop = "conv9d"\npass = "forward"\nformat = "compute"\n'
    )
    (result,) = roll_up([load_scenario(path)], [])
    assert result.missing[0].reason == "op 'conv9d' is not in the op registry"


def test_a_bad_role_names_the_file_and_the_valid_roles(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('scenario = "bad"\n[[requires]]\nop = "add"\npass = "forward"\nformat = "weights"\n')
    with pytest.raises(mpx.ConformanceError, match=r"bad.toml, requires\[0\].*compute, grads, fp32, params"):
        load_scenario(path)


def test_unknown_scenario_lists_the_valid_ones(tmp_path):
    (tmp_path / "alpha.toml").write_text('scenario = "alpha"\n')
    with pytest.raises(mpx.ConformanceError, match="unknown scenario 'alpah'.*Known: alpha"):
        select_scenarios(["alpah"], tmp_path)
