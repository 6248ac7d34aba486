"""Model-level conformance cases: real small models through autocast + MixedPrecision, bounds that can fail."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch

import mpx
from mpx.conformance import models
from mpx.conformance.cases import MODEL_PASSES, generate, parse_case_id
from mpx.conformance.diff import diff_reports
from mpx.conformance.model_zoo import MODELS
from mpx.conformance.render import html
from mpx.conformance.report import BackendReport, CaseResult, Report
from mpx.conformance.rollup import roll_up
from mpx.conformance.runner import ReferenceCache, one_thread, run_case, run_cases
from mpx.conformance.scenarios import load_scenario, select_scenarios
from mpx.conformance.status import Status
from mpx.plugins.backend import Backend
from mpx.policy import Policy
from mpx.policy import policy as lookup_policy

CACHE = ReferenceCache()  # fp32 curves and float64 references, shared by the tests of this module


def run(backend: Backend, case_id: str) -> CaseResult:
    with one_thread():  # as the suite runs cases
        return run_case(backend, parse_case_id(case_id), CACHE)


class Fp8InsteadOfBf16(mpx.get_backend("cpu").__class__):
    """Claims bf16-mixed but rounds like fp8 e4m3 (a driver that quietly uses a narrower unit)."""

    @contextlib.contextmanager
    def autocast(self, policy: Policy | str, native: bool | None = None) -> Iterator[None]:
        wanted = lookup_policy(policy)
        if wanted.compute.name == "bf16":
            wanted = Policy(wanted.params, mpx.format("fp8_e4m3"), wanted.output, name="fp8-in-disguise")
        with super().autocast(wanted, native):
            yield


class NoisyBackend(mpx.get_backend("cpu").__class__):
    """Adds 2 % relative noise to every Linear, Conv2d, MHA and LSTM output under autocast."""

    @contextlib.contextmanager
    def autocast(self, policy: Policy | str, native: bool | None = None) -> Iterator[None]:
        def noise(module: torch.nn.Module, args: object, output: object) -> object:
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                return output * (1 + 0.02 * torch.randn_like(output))
            return None

        handle = torch.nn.modules.module.register_module_forward_hook(noise)
        try:
            with super().autocast(policy, native):
                yield
        finally:
            handle.remove()


@pytest.mark.parametrize("fmt", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_case_passes_on_cpu(model: str, fmt: str) -> None:
    for pass_ in MODEL_PASSES:
        result = run(mpx.get_backend("cpu"), f"model/{model}/{fmt}/{pass_}")
        assert result.status is Status.PASS, result.detail


@pytest.mark.parametrize("model", ["mlp", "cnn", "lstm"])
def test_fp8_hybrid_model_cases_pass_on_cpu(model: str) -> None:
    for pass_ in MODEL_PASSES:
        result = run(mpx.get_backend("cpu"), f"model/{model}/fp8_e4m3/{pass_}")
        assert result.status is Status.PASS, result.detail


def test_gpt_trains_under_emulated_fp8_hybrid() -> None:
    """The causal mask's -inf is added to bf16 scores: it must not be rounded to e4m3, which has no inf."""
    result = run(mpx.get_backend("cpu"), "model/gpt/fp8_e4m3/training")
    assert result.status is Status.PASS, result.detail


def test_fp32_inference_bound_is_tight_and_met() -> None:
    result = run(mpx.get_backend("cpu"), "model/gpt/fp32/inference")
    assert result.status is Status.PASS
    bound = float(result.detail.split("bound ")[1].split(" ")[0])
    assert bound < 1e-6  # a few fp32 unit roundoffs: bf16 (u = 2^-9) could never meet it


def test_training_case_records_both_loss_curves_and_the_loss_falls() -> None:
    result = run(mpx.get_backend("cpu"), "model/mlp/fp16/training")
    assert len(result.curve) == len(result.fp32_curve) == models.STEPS
    assert result.curve[-1] < result.curve[0] and result.skipped_steps == 0


@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_backend_that_rounds_to_fp8_when_asked_for_bf16_fails_inference(model: str) -> None:
    result = run(Fp8InsteadOfBf16(), f"model/{model}/bf16/inference")
    assert result.status is Status.FAIL, result.detail


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_a_backend_that_adds_noise_fails_inference(model: str) -> None:
    result = run(NoisyBackend(), f"model/{model}/bf16/inference")
    assert result.status is Status.FAIL, result.detail


def test_a_failing_model_case_makes_its_scenario_column_not_ready() -> None:
    scenario = select_scenarios(["inference-classification"])[0]
    good = [run(mpx.get_backend("cpu"), case_id) for case_id in scenario.model_case_ids["bf16"]]
    bad = [run(Fp8InsteadOfBf16(), case_id) for case_id in scenario.model_case_ids["bf16"]]
    op_passes = [CaseResult("x", "conv2d", "bf16", "forward", "normal", Status.PASS)]
    assert roll_up([scenario], op_passes + good, ["bf16"])[0].missing[0].op != "model/mlp"
    column = roll_up([scenario], op_passes + bad, ["bf16"])[0]
    assert not column.ready
    assert {m.op for m in column.missing} >= {"model/mlp", "model/cnn"}
    assert "fail in model/mlp/bf16/inference" in next(m.reason for m in column.missing if m.op == "model/mlp")


def test_scenario_without_model_cases_in_the_report_is_not_ready() -> None:
    scenario = select_scenarios(["training-generative"])[0]
    column = roll_up([scenario], [], ["bf16"])[0]
    assert "no model/gpt/bf16/training case was run" in next(m.reason for m in column.missing if m.op == "model/gpt")


def test_an_exception_in_one_model_is_its_error_and_the_others_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode() -> torch.nn.Module:
        raise RuntimeError("the model could not be built")

    monkeypatch.setitem(MODELS, "mlp", MODELS["mlp"].__class__("mlp", explode, *list(vars(MODELS["mlp"]).values())[2:]))
    cases = [parse_case_id(i) for i in ("model/mlp/bf16/inference", "model/cnn/bf16/inference")]
    results = run_cases(mpx.get_backend("cpu"), cases, cache=ReferenceCache())
    assert [r.status for r in results] == [Status.ERROR, Status.PASS]
    assert "RuntimeError: the model could not be built" in results[0].detail


def test_a_backend_that_does_not_train_gets_unsupported_model_cases() -> None:
    class OpsOnly(Backend):
        name = "ops-only"

    result = run(OpsOnly(), "model/gpt/bf16/training")
    assert result.status is Status.UNSUPPORTED and "not an mpx.TrainingBackend" in result.detail


def test_a_backend_that_only_runs_ops_gets_unsupported_model_cases() -> None:
    class OpsOnly(Backend):
        name = "ops-only"

    result = run(OpsOnly(), "model/mlp/fp16/inference")
    assert result.status is Status.UNSUPPORTED and "does not train" in result.detail


def test_onnxrt_runs_its_model_cases_on_the_ep() -> None:
    try:
        backend = mpx.get_backend("onnxrt")
    except mpx.MpxError as error:
        pytest.skip(f"onnxrt is not available here: {error}")
    result = run(backend, "model/mlp/fp16/inference")
    assert result.status is Status.PASS, result.detail
    assert any(graph["kind"] == "forward" for graph in backend.placement())  # it ran as a session on the EP


def test_model_case_ids_parse_back_and_select_with_the_model_pseudo_op() -> None:
    cases = generate([mpx.format("bf16"), mpx.format("fp8_e5m2")], ["model"])
    assert {c.id for c in cases} == {f"model/{m}/bf16/{p}" for m in MODELS for p in MODEL_PASSES}
    assert all(parse_case_id(c.id) == c for c in cases)


def test_manifest_with_an_unknown_model_names_the_known_ones(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "s.toml"
    path.write_text('scenario = "s"\nformats = ["fp32"]\nmodels = ["mpl"]\n')
    with pytest.raises(mpx.ConformanceError, match="mlp"):
        load_scenario(path)


def _report(case: CaseResult) -> Report:
    return Report({}, [BackendReport("cpu", True, cases=[case])])


def test_json_round_trip_keeps_the_curves_and_diff_sees_a_model_regression() -> None:
    passed = run(mpx.get_backend("cpu"), "model/lstm/bf16/training")
    data = _report(passed).to_dict()
    assert data["backends"][0]["cases"][0]["curve"] == list(passed.curve)
    assert Report.from_dict(data).to_dict() == data
    failed = CaseResult(**{**vars(passed), "status": Status.FAIL})
    assert [c.id for c in diff_reports(_report(passed), _report(failed)).regressed] == [passed.id]


def test_op_cases_keep_the_0_1_json_shape() -> None:
    data = CaseResult("add/fp16/forward/normal", "add", "fp16", "forward", "normal", Status.PASS).to_dict()
    assert not {"model", "curve", "fp32_curve", "skipped_steps"} & set(data)


def test_html_shows_each_training_case_as_an_inline_svg() -> None:
    passed = run(mpx.get_backend("cpu"), "model/cnn/fp16/training")
    page = html.render(_report(passed))
    assert page.count("<svg") == 1 and "data-case='model/cnn/fp16/training'" in page
    assert page.count("<polyline") == 2 and "http://" not in page and "https://" not in page
