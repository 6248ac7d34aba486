"""The one Status enum: the JSON strings, worst-of ordering, and what each status means to JUnit, pytest and CI."""

import json

import pytest

from mpx.conformance.diff import rank
from mpx.conformance.report import CaseResult
from mpx.conformance.status import Status, worst
from mpx.errors import ConformanceError

JSON_STRINGS = ["pass", "fail", "unsupported", "upcast", "downcast", "fallback", "error", "crash", "timeout"]


def test_values_are_exactly_the_json_strings_of_the_schema():
    assert [s.value for s in Status] == JSON_STRINGS
    assert all(s == s.value and str(s) == s.value and f"{s}" == s.value for s in Status)


def test_a_case_result_reads_a_json_string_and_writes_it_back_unchanged():
    case = CaseResult("add/fp16/forward/normal", "add", "fp16", "forward", "normal", "upcast")
    assert case.status is Status.UPCAST
    assert json.loads(json.dumps(case.to_dict()))["status"] == "upcast"
    assert '"status": "upcast"' in json.dumps(case.to_dict())


def test_an_unknown_status_is_refused_with_the_valid_ones():
    with pytest.raises(ConformanceError, match="unknown status 'passed'; statuses: pass, fail"):
        CaseResult("add/fp16/forward/normal", "add", "fp16", "forward", "normal", "passed")


def test_worst_of_orders_pass_then_not_as_asked_then_unsupported_then_wrong_then_broken():
    order = ["pass", "upcast", "fallback", "unsupported", "downcast", "fail", "error", "timeout", "crash"]
    assert sorted(Status, key=lambda s: s.severity) == [Status(s) for s in order]
    assert worst(["pass", "upcast", "pass"]) is Status.UPCAST
    assert worst([Status.FAIL, Status.CRASH, Status.UNSUPPORTED]) is Status.CRASH


def test_only_pass_passes_and_only_right_numbers_run():
    assert [s for s in Status if s.passes] == [Status.PASS]
    assert {s for s in Status if s.runs} == {Status.PASS, Status.UPCAST, Status.FALLBACK}


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("pass", "passed"),
        ("fail", "failure"),
        ("downcast", "failure"),
        ("error", "error"),
        ("crash", "error"),
        ("timeout", "error"),
        ("unsupported", "skipped"),
        ("upcast", "skipped"),
        ("fallback", "skipped"),
    ],
)
def test_junit_kind(status, kind):
    assert Status(status).junit == kind
    assert Status(status).problem == (kind in ("failure", "error"))


def test_diff_rank_follows_passes_and_runs():
    assert [rank(s) for s in ("pass", "upcast", "fallback", "unsupported", "downcast", "crash")] == [0, 1, 1, 2, 2, 2]


def test_every_status_has_its_colours_and_a_meaning():
    for status in Status:
        assert status.colour.terminal and status.colour.background.startswith("#") and status.meaning
    assert len({s.colour.background for s in Status}) == len(Status), "two statuses look alike in HTML"
