"""Bad command-line input is one line on stderr and exit 2, before any work and with nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpx.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--lr", "-1"], "--lr: '-1' must be a finite number > 0"),
        (["train", "--lr", "nan"], "must be a finite number > 0"),
        (["train", "--batch-size", "0"], "--batch-size: '0' must be an integer >= 1"),
        (["train", "--hidden", "-5"], "--hidden: '-5' must be an integer >= 1"),
        (["train", "--steps", "0"], "--steps: '0' must be an integer >= 1"),
        (["train", "--seed", str(2**70)], "must be an integer in [0, 2**63)"),
        (["train", "--json", ""], "an empty path"),
        (["conformance", "--backend", "cpu", "--op", "add", "--timeout", "nan"], "--timeout must be a positive"),
        (["conformance", "--backend", "cpu", "--op", "add", "--timeout", "inf"], "--timeout must be a positive"),
        (["conformance", "--backend", "cpu", "--op", "add", "--json", ""], "--json got an empty path"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_two_reports_on_one_path_are_refused_before_any_case_runs(capsys, tmp_path) -> None:
    path = tmp_path / "r.json"
    assert main(["conformance", "--backend", "cpu", "--op", "add", "--json", str(path), "--html", str(path)]) == 2
    assert "two reports would be written" in capsys.readouterr().err
    assert not path.exists()


def test_train_checks_its_json_path_before_training(capsys, tmp_path) -> None:
    missing = tmp_path / "no" / "such" / "folder" / "x.json"
    assert main(["train", "--steps", "500", "--json", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not Path(missing).parent.exists()
