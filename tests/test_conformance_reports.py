"""The full cpu run and its reports: JSON schema, JUnit, Markdown, atomic writes, bad input before any case."""

import json
import os
import xml.etree.ElementTree as ET

import pytest
from conformance_helpers import full_cpu_run, load_json

import mpx
from mpx._io import atomic_write_text
from mpx.cli import main
from mpx.conformance import runner
from mpx.conformance.output_paths import check_writable
from mpx.conformance.report import Report
from mpx.conformance.status import Status

SCENARIOS = {"training-classification", "training-generative", "inference-classification", "inference-generative"}


def test_json_report_follows_the_schema():
    data = load_json(full_cpu_run()["json"])
    assert data["schema"] == "mpx-conformance/1"
    (cpu,) = data["backends"]
    assert cpu["name"] == "cpu" and cpu["available"] is True and cpu["reason"] == ""
    for case in cpu["cases"]:
        assert {"id", "op", "format", "pass", "status", "max_error_ulp", "detail"} <= set(case)
        assert case["status"] in {s.value for s in Status} and case["pass"] in (
            "forward",
            "backward",
            "training",
            "inference",
        )
    for scenario in cpu["scenarios"]:
        assert {"scenario", "format", "ready", "coverage", "missing"} <= set(scenario)
        assert 0.0 <= scenario["coverage"] <= 1.0


def test_json_report_carries_the_run_metadata():
    meta = load_json(full_cpu_run()["json"])["metadata"]
    assert meta["mpx"] == mpx.__version__ and meta["torch"].startswith("2.")
    assert meta["machine"]["arch"] and meta["started"] and meta["onnxruntime"]
    assert load_json(full_cpu_run()["json"])["backends"][0]["describe"]["overflow"] == "inf"


def test_cpu_is_ready_for_all_four_scenarios_in_every_column():
    scenarios = load_json(full_cpu_run()["json"])["backends"][0]["scenarios"]
    assert {s["scenario"] for s in scenarios} == SCENARIOS
    assert {s["format"] for s in scenarios} >= {"fp32", "fp16", "bf16"}
    assert [(s["scenario"], s["format"], s["missing"]) for s in scenarios if not s["ready"]] == []


def test_cpu_passes_every_case():
    cases = load_json(full_cpu_run()["json"])["backends"][0]["cases"]
    assert [c["id"] for c in cases if c["status"] != "pass"] == []


def test_json_report_round_trips_through_the_dataclasses():
    data = load_json(full_cpu_run()["json"])
    assert Report.from_dict(data).to_dict() == data


def test_junit_has_one_testcase_per_case_id():
    root = ET.parse(full_cpu_run()["junit"]).getroot()
    names = [tc.get("name") for tc in root.iter("testcase")]
    cases = load_json(full_cpu_run()["json"])["backends"][0]["cases"]
    assert names == [c["id"] for c in cases]
    assert root.find("testsuite").get("failures") == "0"


def test_junit_maps_statuses_to_failure_error_and_skipped():
    from mpx.conformance.render import junit
    from mpx.conformance.report import BackendReport, CaseResult

    cases = [CaseResult(f"add/fp16/forward/{s}", "add", "fp16", "forward", "normal", s, None, s) for s in Status]
    root = ET.fromstring(junit.render(Report({}, [BackendReport("x", True, cases=cases)])).split("\n", 1)[1])
    kinds = {
        tc.get("name").rsplit("/", 1)[1]: [child.tag for child in tc if child.tag != "properties"]
        for tc in root.iter("testcase")
    }
    assert kinds == {
        "pass": [],
        "fail": ["failure"],
        "downcast": ["failure"],
        "error": ["error"],
        "crash": ["error"],
        "timeout": ["error"],
        "unsupported": ["skipped"],
        "upcast": ["skipped"],
        "fallback": ["skipped"],
    }


def test_markdown_has_readiness_and_the_op_matrix():
    text = full_cpu_run()["markdown"].read_text()
    assert "### Scenario readiness" in text and "| training-generative |" in text
    assert "| matmul | backward |" in text


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    target = atomic_write_text(tmp_path / "r.json", "{}")
    assert target.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_atomic_write_that_fails_keeps_the_old_report(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    target.write_text("old")

    def broken_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_report_file_gets_the_permissions_of_any_file_the_user_writes(tmp_path):
    umask = os.umask(0o022)
    try:
        assert (
            main(["conformance", "--backend", "cpu", "--op", "add", "--json", str(tmp_path / "r.json"), "--quiet"]) == 0
        )
    finally:
        os.umask(umask)
    assert oct((tmp_path / "r.json").stat().st_mode & 0o777) == oct(0o644), "a published report must be readable"


@pytest.fixture
def no_case_may_run(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a case ran before the bad input was reported")

    monkeypatch.setattr(runner, "run_case", forbidden)


def test_unwritable_output_path_fails_before_any_case(tmp_path, no_case_may_run, capsys):
    code = main(["conformance", "--backend", "cpu", "--html", str(tmp_path / "missing" / "r.html")])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot write html report" in err and "missing' does not exist" in err


def test_a_directory_as_output_path_is_an_error(tmp_path):
    with pytest.raises(mpx.ConformanceError, match="is a directory"):
        check_writable(tmp_path)


def test_unknown_scenario_name_lists_the_valid_ones(no_case_may_run, capsys):
    assert main(["conformance", "--scenario", "training-genrative"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'training-generative'" in err and "inference-classification" in err


def test_unknown_format_lists_the_valid_ones(no_case_may_run, capsys):
    assert main(["conformance", "--format", "fp12"]) == 2
    assert "unknown format 'fp12'; formats: fp32, fp16, bf16, fp8_e4m3, fp8_e5m2" in capsys.readouterr().err


def test_unknown_backend_is_an_error_before_any_case(no_case_may_run, tmp_path, capsys):
    assert main(["conformance", "--backend", "cpuu", "--json", str(tmp_path / "r.json")]) == 2
    assert "did you mean 'cpu'" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_timeout_with_no_isolate_is_refused(no_case_may_run, capsys):
    assert main(["conformance", "--backend", "cpu", "--no-isolate", "--timeout", "5"]) == 2
    assert "--timeout needs cases in child processes" in capsys.readouterr().err


def test_an_unavailable_backend_is_reported_with_its_reason(tmp_path):
    report = tmp_path / "r.json"
    code = main(["conformance", "--backend", "cuda", "--op", "add", "--json", str(report), "--quiet", "--exit-zero"])
    assert code == 0
    (cuda,) = json.loads(report.read_text())["backends"]
    assert cuda["available"] is False and cuda["reason"] and cuda["cases"] == []


def test_no_arguments_writes_the_default_html_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["conformance", "--op", "add", "--format", "fp32"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "mpx-conformance.html").stat().st_size > 0
    assert "scenario readiness" in out and "html report: mpx-conformance.html" in out
