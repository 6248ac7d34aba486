"""`mpx conformance diff` on files that are not reports (issue 16, point 7): deeply nested, non-UTF-8 or
wrong-typed JSON, devices, FIFOs and folders are one line and exit 2; /dev/zero is refused, not read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mpx.cli import main

CASE = {"id": "add/fp16/forward/normal", "op": "add", "format": "fp16", "pass": "forward"}
CASE |= {"input_class": "normal", "status": "pass"}
SCENARIO = {"scenario": "training", "format": "fp16", "ready": True, "coverage": 1.0, "missing": []}


def report(**backend: object) -> dict:
    base = {"name": "cpu", "available": True, "cases": [dict(CASE)], "scenarios": [dict(SCENARIO)]}
    return {"schema": "mpx-conformance/1", "metadata": {}, "backends": [{**base, **backend}]}


def diff(capsys, tmp_path: Path, new: Path | str) -> str:
    old = tmp_path / "old.json"
    old.write_text(json.dumps(report()))
    assert main(["conformance", "diff", str(old), str(new)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def written(tmp_path: Path, content: bytes | str) -> Path:
    path = tmp_path / "new.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_a_well_formed_pair_still_diffs(capsys, tmp_path):
    old, new = written(tmp_path, json.dumps(report())), tmp_path / "other.json"
    new.write_text(json.dumps(report(cases=[{**CASE, "status": "fail"}])))
    assert main(["conformance", "diff", str(old), str(new)]) == 1
    assert "cpu: add/fp16/forward/normal: pass -> fail" in capsys.readouterr().out


def test_deeply_nested_json(capsys, tmp_path):
    err = diff(capsys, tmp_path, written(tmp_path, "[" * 200_000 + "]" * 200_000))
    assert "nested too deeply" in err


def test_non_utf8(capsys, tmp_path):
    err = diff(capsys, tmp_path, written(tmp_path, b'{"schema": "\xff\xfe"}'))
    assert "is not UTF-8 (byte 12)" in err


def test_an_integer_too_long_to_convert(capsys, tmp_path):
    err = diff(capsys, tmp_path, written(tmp_path, '{"a": ' + "9" * 5000 + "}"))
    assert "is not JSON" in err


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ({"name": ["cpu"]}, "backends[0].name must be of JSON type str, not list"),
        ({"name": 7}, "backends[0].name must be of JSON type str, not int"),
        ({"available": "yes"}, "backends[0].available must be of JSON type bool, not str"),
        ({"cases": {"a": 1}}, "backends[0].cases must be of JSON type list, not dict"),
        ({"cases": [[1, 2]]}, "backends[0].cases[0] must be of JSON type dict, not list"),
        ({"cases": [{**CASE, "id": 3}]}, "backends[0].cases[0].id must be of JSON type str, not int"),
        ({"cases": [{**CASE, "detail": None}]}, "backends[0].cases[0].detail must be of JSON type str"),
        ({"scenarios": [5]}, "backends[0].scenarios[0] must be of JSON type dict, not int"),
        ({"scenarios": [{**SCENARIO, "coverage": "all"}]}, "coverage must be of JSON type int or float, not str"),
        ({"scenarios": [{**SCENARIO, "coverage": True}]}, "coverage must be a number, not a boolean"),
        ({"scenarios": [{**SCENARIO, "missing": 3}]}, "missing must be of JSON type list, not int"),
    ],
)
def test_wrong_typed_fields_are_named(capsys, tmp_path, backend, message):
    err = diff(capsys, tmp_path, written(tmp_path, json.dumps(report(**backend))))
    assert message in err


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2, 3], "is not an mpx conformance report (schema 'list'"),
        (42, "is not an mpx conformance report"),
        ({"schema": "mpx-conformance/1", "backends": {"cpu": {}}}, "backends must be of JSON type list, not dict"),
        ({"schema": "mpx-conformance/1", "backends": [3]}, "backends[0] must be of JSON type dict, not int"),
    ],
)
def test_a_list_or_number_where_a_report_belongs(capsys, tmp_path, data, message):
    assert message in diff(capsys, tmp_path, written(tmp_path, json.dumps(data)))


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero (POSIX)")
def test_dev_zero_is_refused_without_reading_it(capsys, tmp_path):
    assert "'/dev/zero' is not a regular file" in diff(capsys, tmp_path, "/dev/zero")


def test_a_fifo_and_a_folder_are_refused(capsys, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes: opening it for reading must not block
    assert "is not a regular file" in diff(capsys, tmp_path, fifo)
    assert "is not a regular file" in diff(capsys, tmp_path, tmp_path)


def test_a_file_over_the_size_limit_is_refused(capsys, tmp_path, monkeypatch):
    from mpx.conformance import report_input

    monkeypatch.setattr(report_input, "MAX_REPORT_BYTES", 100)
    err = diff(capsys, tmp_path, written(tmp_path, json.dumps(report())))
    assert "over the 100 byte limit" in err
