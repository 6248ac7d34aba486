"""A vendor backend that aborts or hangs in one case still yields a complete report."""

import sys

import pytest
from conformance_helpers import install_fake_plugin, load_json

from mpx.cli import main
from mpx.conformance.cases import generate
from mpx.conformance.isolation import BackendRef, run_isolated
from mpx.formats import format as lookup_format
from mpx.plugins.manager import reload_plugins

CRASHING = "add/fp16/forward/odd-shape"
HANGING = "add/bf16/forward/odd-shape"


@pytest.fixture
def aborting_plugin(tmp_path):
    site = install_fake_plugin(tmp_path / "site")
    sys.path.insert(0, str(site))
    reload_plugins()
    yield "aborting"
    sys.path.remove(str(site))
    sys.modules.pop("aborting_plugin", None)
    reload_plugins()


def test_os_abort_in_one_case_is_crash_and_the_rest_run(aborting_plugin):
    cases = generate([lookup_format("fp16")], ["add"])
    results, description = run_isolated(BackendRef(aborting_plugin), cases, timeout=30)
    statuses = {r.id: r.status for r in results}
    assert len(results) == len(cases)
    assert statuses.pop(CRASHING) == "crash"
    assert set(statuses.values()) == {"pass"}
    assert description["name"] == "aborting"


def test_crash_detail_names_the_signal(aborting_plugin):
    cases = generate(case_ids=[CRASHING])
    (result,), _ = run_isolated(BackendRef(aborting_plugin), cases, timeout=30)
    assert "SIGABRT" in result.detail


def test_a_hang_becomes_timeout_and_the_next_cases_still_run(aborting_plugin):
    cases = generate(case_ids=[HANGING, "add/bf16/forward/normal", "add/bf16/backward/odd-shape"])
    results, _ = run_isolated(BackendRef(aborting_plugin), cases, timeout=2, workers=1)
    assert [r.status for r in results] == ["timeout", "pass", "pass"]
    assert "no answer within 2 s" in results[0].detail


def test_cli_isolates_a_plugin_backend_by_default_and_writes_a_complete_report(aborting_plugin, tmp_path):
    report = tmp_path / "r.json"
    argv = ["conformance", "--backend", "aborting", "--op", "add", "--format", "fp16", "bf16", "--timeout", "3"]
    assert main([*argv, "--json", str(report), "--quiet"]) == 1, "a crash and a timeout fail the run"
    (backend,) = load_json(report)["backends"]
    statuses = {c["id"]: c["status"] for c in backend["cases"]}
    assert backend["isolated"] is True
    assert len(statuses) == len(generate([lookup_format("fp16"), lookup_format("bf16")], ["add"]))
    assert statuses[CRASHING] == "crash" and statuses[HANGING] == "timeout"
    assert sum(s == "pass" for s in statuses.values()) == len(statuses) - 2


def test_a_backend_that_cannot_start_turns_every_case_into_error():
    cases = generate(case_ids=["add/fp16/forward/normal"])
    (result,), _ = run_isolated(BackendRef("cpu", {"overflow": "wrap"}), cases, timeout=30)
    assert result.status == "error" and "overflow must be 'inf' or 'saturate'" in result.detail
