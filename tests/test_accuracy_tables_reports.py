"""Accuracy tables in a conformance run: JSON round trip, HTML and Markdown sections, the CLI options, isolation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mpx.cli import main
from mpx.conformance.accuracy_tables import AccuracyTables, TableRequest, TableRow
from mpx.conformance.accuracy_tables_run import table_request, tables_in_process, tables_isolated
from mpx.conformance.isolation import BackendRef
from mpx.conformance.render import html, markdown
from mpx.conformance.report import BackendReport, Report
from mpx.plugins import get_backend

ROWS = [
    TableRow("exp", "forward", "fp16", "measured", inputs=65536, worst_input=("0.5",), limit=3.0, support="upcast"),
    TableRow(
        "exp",
        "backward",
        "fp16",
        "measured",
        inputs=65536,
        max_ulp=math.inf,
        max_ulp_exact=math.inf,
        not_correctly_rounded=3,
        worst_input=("inf",),
        worst_got="nan",
        worst_want="inf",
        limit=3.0,
        within=False,
    ),
    TableRow("exp", "forward", "bf16", "unsupported", detail="no <bf16> units | here"),
]


def _report(tables: AccuracyTables | None = None) -> Report:
    tables = tables if tables is not None else AccuracyTables("cuda", list(ROWS), 1.5)
    return Report({"mpx": "0.2.0"}, [BackendReport("vendor", True, "", {}, False, [], [], tables)])


def test_json_round_trip_keeps_every_row_and_writes_inf_as_a_string() -> None:
    report = _report()
    text = report.to_json()  # allow_nan=False: an inf would raise here
    data = json.loads(text)["backends"][0]["accuracy"]
    assert data["profile"] == "cuda" and "CUDA" in data["profile_source"] and data["profile_metric"] == "rounded"
    assert data["rows"][1]["max_ulp"] == "inf" and data["rows"][1]["pass"] == "backward"
    loaded = Report.from_dict(json.loads(text)).backends[0].accuracy
    assert loaded is not None and loaded.rows == ROWS and loaded.profile == "cuda"


def test_a_report_without_tables_still_loads() -> None:
    data = json.loads(_report().to_json())
    del data["backends"][0]["accuracy"]
    assert Report.from_dict(data).backends[0].accuracy is None


def test_markdown_has_a_table_per_format_and_the_rows_that_are_not_correctly_rounded() -> None:
    text = markdown.render(_report())
    section = text[text.index("## Accuracy tables") :]
    assert "### fp16 (exhaustive, all 65,536 values)" in section
    assert "| exp | forward | CR (upcast) |" in section  # right numbers, not as asked: the cell says so
    assert "| exp | backward | inf ulp, 3 not CR · over cuda |" in section
    assert "| exp | forward | unsupported |" in section  # the bf16 table says so, never drops the row
    assert "no &lt;bf16&gt; units \\| here" in section  # the backend's reason, escaped
    assert "| exp | backward | fp16 | inf | inf | 3 of 65,536 | inf | nan | inf | 3 ULP | no |" in section


def test_html_cells_carry_the_numbers() -> None:
    text = html.render(_report())
    assert "<h2 id='accuracy'>Accuracy tables</h2>" in text
    assert "class='acc-over' data-backend='vendor' data-op='exp' data-pass='backward'" in text
    assert "data-max-ulp='inf' data-not-cr='3'" in text
    assert "class='acc-cr'" in text and "class='acc-unsupported'" in text
    assert "no &lt;bf16&gt; units | here" in text


def test_skipped_tables_say_why() -> None:
    skipped = AccuracyTables("opencl", [], 0.0, "not made (--no-accuracy-tables)")
    assert "vendor: accuracy tables not made (--no-accuracy-tables)" in markdown.render(_report(skipped))
    assert "not made (--no-accuracy-tables)" in html.render(_report(skipped))


def test_the_request_follows_the_selection() -> None:
    every = ["fp32", "fp16", "bf16", "fp8_e4m3"]
    assert table_request(True, "cuda", [], every, [], None) == TableRequest((), ("fp16", "bf16", "fp32"), "cuda")
    assert table_request(True, "strict", ["exp", "matmul"], ["bf16"], [], None).ops == ("exp",)
    assert "no element-wise op" in table_request(True, "opencl", ["matmul"], every, [], None).skipped
    assert "no fp16, bf16 or fp32" in table_request(True, "opencl", [], ["fp8_e4m3"], [], None).skipped
    assert "--case" in table_request(True, "opencl", [], every, ["add/fp16/forward/normal"], None).skipped
    assert "--no-accuracy-tables" in table_request(False, "opencl", [], every, [], None).skipped


def test_cli_writes_the_tables_into_every_report(tmp_path: Path) -> None:
    paths = {kind: tmp_path / f"r.{kind}" for kind in ("json", "html", "md")}
    argv = ["conformance", "--backend", "cpu", "--op", "relu", "--format", "bf16", "--tolerance", "strict", "--quiet"]
    argv += ["--json", str(paths["json"]), "--html", str(paths["html"]), "--markdown", str(paths["md"])]
    assert main(argv) == 0
    tables = json.loads(paths["json"].read_text())["backends"][0]["accuracy"]
    assert tables["profile"] == "strict" and tables["skipped"] == ""
    assert [(r["op"], r["format"], r["pass"], r["status"]) for r in tables["rows"]] == [
        ("relu", "bf16", "forward", "measured"),
        ("relu", "bf16", "backward", "measured"),
    ]
    assert all(r["inputs"] == 65536 and r["not_correctly_rounded"] == 0 and r["within"] for r in tables["rows"])
    assert "### bf16 (exhaustive, all 65,536 values)" in paths["md"].read_text()
    assert "data-format='bf16'" in paths["html"].read_text()


def test_cli_no_tables_and_bad_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r.json"
    argv = ["conformance", "--backend", "cpu", "--op", "relu", "--format", "fp16", "--quiet", "--json", str(report)]
    assert main([*argv, "--no-accuracy-tables"]) == 0
    tables = json.loads(report.read_text())["backends"][0]["accuracy"]
    assert tables["rows"] == [] and "--no-accuracy-tables" in tables["skipped"]
    assert main([*argv, "--tolerance", "ieee"]) == 2
    assert "--tolerance: invalid choice: 'ieee'" in capsys.readouterr().err
    assert main([*argv, "--accuracy-chunk", "0"]) == 2
    assert "--accuracy-chunk must be at least 1, not 0" in capsys.readouterr().err


def test_isolated_tables_match_in_process_and_a_late_build_is_every_rows_error() -> None:
    request = TableRequest(("sqrt",), ("fp16",), "opencl")
    here = tables_in_process(get_backend("cpu"), request)
    child = tables_isolated(BackendRef("cpu"), request, timeout=120.0)
    strip = [(r.op, r.pass_, r.format, r.status, r.max_ulp, r.worst_input) for r in here.rows]
    assert [(r.op, r.pass_, r.format, r.status, r.max_ulp, r.worst_input) for r in child.rows] == strip
    late = tables_isolated(BackendRef("cpu"), request, timeout=1e-6)  # start-up is allowed; the build is not
    assert [r.status for r in late.rows] == ["error", "error"]
    assert all(r.detail == "the backend did not build within 1e-06 s (--timeout)" for r in late.rows)
