"""`mpx conformance diff`: exactly the injected regression, exit 1 on regressions, 0 otherwise."""

import json

import pytest
from conformance_helpers import full_cpu_run, load_json

import mpx
from mpx.cli import main
from mpx.conformance.diff import diff_reports
from mpx.conformance.report import Report


@pytest.fixture
def reports(tmp_path):
    old = load_json(full_cpu_run()["json"])
    new = json.loads(json.dumps(old))
    passing = [c for c in new["backends"][0]["cases"] if c["status"] == "pass"]
    return tmp_path, old, new, passing


def _write(folder, name, data):
    path = folder / name
    path.write_text(json.dumps(data))
    return str(path)


def test_one_injected_regression_is_exactly_what_diff_reports(reports, capsys):
    folder, old, new, passing = reports
    passing[3]["status"] = "fail"
    code = main(["conformance", "diff", _write(folder, "old.json", old), _write(folder, "new.json", new)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"regressed (1):\n  cpu: {passing[3]['id']}: pass -> fail" in out
    changes = diff_reports(Report.from_dict(old), Report.from_dict(new))
    assert [(c.id, c.old, c.new) for c in changes.regressed] == [(passing[3]["id"], "pass", "fail")]
    assert not changes.improved and not changes.changed and not changes.added and not changes.removed


def test_identical_reports_have_no_regressions(reports, capsys):
    folder, old, _, _ = reports
    path = _write(folder, "old.json", old)
    assert main(["conformance", "diff", path, path]) == 0
    assert "regressions: none" in capsys.readouterr().out


def test_a_fixed_case_is_an_improvement_and_exits_zero(reports):
    folder, old, new, passing = reports
    old_case = next(c for c in old["backends"][0]["cases"] if c["id"] == passing[0]["id"])
    old_case["status"] = "crash"
    changes = diff_reports(Report.from_dict(old), Report.from_dict(new))
    assert [(c.id, c.old, c.new) for c in changes.improved] == [(passing[0]["id"], "crash", "pass")]
    assert main(["conformance", "diff", _write(folder, "o.json", old), _write(folder, "n.json", new)]) == 0


def test_a_scenario_that_stops_being_ready_is_a_regression(reports):
    _, old, new, _ = reports
    if not new["backends"][0]["scenarios"]:
        pytest.fail("the cpu report has no scenario roll-up")
    scenario = new["backends"][0]["scenarios"][0]
    scenario["ready"], scenario["coverage"] = False, 0.5
    changes = diff_reports(Report.from_dict(old), Report.from_dict(new))
    assert [(c.scenario, c.format, c.new_ready) for c in changes.scenarios_regressed] == [
        (scenario["scenario"], scenario["format"], False)
    ]
    assert changes.has_regressions


def test_upcast_to_pass_is_improvement_and_pass_to_upcast_regression(reports):
    _, old, new, passing = reports
    passing[0]["status"] = "upcast"
    forward = diff_reports(Report.from_dict(old), Report.from_dict(new))
    backward = diff_reports(Report.from_dict(new), Report.from_dict(old))
    assert len(forward.regressed) == 1 and len(backward.improved) == 1


def test_diff_of_a_file_that_is_not_a_report_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "something-else"}')
    assert main(["conformance", "diff", str(bad), str(bad)]) == 2
    assert "is not an mpx conformance report" in capsys.readouterr().err


def test_diff_of_a_missing_file_names_it():
    with pytest.raises(mpx.ConformanceError, match="cannot read report '/no/such.json'"):
        Report.load("/no/such.json")
