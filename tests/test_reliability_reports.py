"""Issue 16.6: text a backend or plugin supplies cannot break or inject into any report format."""

import argparse
import io
import json
import re
import xml.etree.ElementTree as ET

import pytest
from rich.console import Console

import mpx
from mpx._io import atomic_write_text
from mpx.cli import backends as backends_command
from mpx.conformance.render import html, junit, markdown
from mpx.conformance.render.sanitize import clean, markup
from mpx.conformance.render.terminal import print_summary
from mpx.conformance.report import BackendReport, CaseResult, Report, ScenarioResult
from mpx.plugins.manager import BackendEntry
from mpx.plugins.types import BackendSpec

HOSTILE = "driver said \x1b[31mred\x1b[0m \ud800 <script>alert(1)</script> a|b [/] [red]x\r\nnext \x00\x07"


def hostile_report():
    cases = [
        CaseResult("add/fwd/fp16/normal", "add", "fp16", "fwd", "normal", "fail", 3.0, detail=HOSTILE),
        CaseResult("add/fwd/fp16/<b>|`x`", "add", "fp16", "fwd", "<b>|`x`", "error", detail=HOSTILE),
        CaseResult("add/fwd/bf16/normal", "add", "bf16", "fwd", "normal", "pass"),
    ]
    scenario = ScenarioResult("training-<i>", "fp16", "amp", False, 0.5, 0.5, 2)
    plugin = BackendReport("evil", True, description={"device": HOSTILE}, cases=cases, scenarios=[scenario])
    missing = BackendReport("gone", False, reason=HOSTILE)
    return Report({"mpx": HOSTILE, "machine": {"arch": "[/]"}}, [plugin, missing])


def test_clean_removes_what_no_writer_accepts():
    text = clean(HOSTILE)
    assert "\x1b" not in text and "\ud800" not in text and "\x00" not in text
    text.encode("utf-8")  # no lone surrogate left
    assert "<script>" in text, "clean keeps the text; each format escapes its own syntax"


def test_junit_is_well_formed_xml(tmp_path):
    path = tmp_path / "r.xml"
    atomic_write_text(path, junit.render(hostile_report()))
    root = ET.parse(path).getroot()
    failures = root.findall(".//failure")
    assert failures and "red" in failures[0].text and "\x1b" not in failures[0].text
    assert "<script>alert(1)</script>" in failures[0].text, "ElementTree escapes it; the parsed text keeps it"


def test_html_has_no_live_script_from_a_plugin(tmp_path):
    text = html.render(hostile_report())
    text.encode("utf-8")
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert text.count("<script>") == 1, "only the report's own filter script"
    assert "<b>|" not in text and "<i>" not in text and "\x1b" not in text
    atomic_write_text(tmp_path / "r.html", text)


def test_markdown_has_no_raw_html_and_keeps_its_table_cells(tmp_path):
    text = markdown.render(hostile_report())
    text.encode("utf-8")
    outside_code = re.sub(r"`[^`\n]*`", "", text)  # a code span shows '<b>' as text, never as HTML
    assert "<" not in outside_code and ">" not in outside_code and "\x1b" not in text
    for line in text.splitlines():
        if line.startswith("| ") and ("add/fwd/fp16" in line):
            cells = line.replace("\\|", "").split("|")
            assert len(cells) == 6, f"a pipe or newline split the row: {line!r}"
    assert "\r" not in text
    atomic_write_text(tmp_path / "r.md", text)


def test_json_report_with_a_lone_surrogate_is_written(tmp_path):
    report = hostile_report()
    atomic_write_text(tmp_path / "r.json", report.to_json())
    assert Report.load(tmp_path / "r.json").backends[0].cases[0].op == "add"


def test_terminal_summary_prints_plugin_text_literally():
    out = io.StringIO()
    print_summary(hostile_report(), Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    assert "[/]" in text and "[red]x" in text and "training-<i>" in text


def test_markup_escape_keeps_the_text():
    out = io.StringIO()
    Console(file=out, color_system=None).print(markup(HOSTILE))
    assert "[/] [red]x" in out.getvalue()


def test_mpx_backends_table_survives_plugin_markup(monkeypatch, capsys):
    entries = [
        BackendEntry("evil", False, HOSTILE, ("fp32",), "plugin evil"),
        BackendEntry("cpu", True, "", ("fp32",), "built-in", description="[/] closing nothing"),
    ]
    monkeypatch.setattr(backends_command, "list_backends", lambda: entries)
    assert backends_command.run(argparse.Namespace(json=False)) == 0
    out = capsys.readouterr().out
    assert "[/]" in out and "evil" in out
    assert backends_command.run(argparse.Namespace(json=True)) == 0
    assert json.loads(capsys.readouterr().out)[0]["name"] == "evil"


@pytest.mark.parametrize("name", ["cpu\n", "cpu\nx", "Cpu", "-cpu", "cpu:fast", "", "cp u"])
def test_backend_names_must_match_in_full(name):
    with pytest.raises(mpx.PluginError, match="is not valid"):
        BackendSpec(name, factory=object)


def test_a_valid_backend_name_passes():
    assert BackendSpec("my-backend_2.0", factory=object).name == "my-backend_2.0"
