"""`mpx backends`, `mpx formats` and the CLI's handling of mistakes: one line on stderr, exit 2, no traceback."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import mpx
from mpx.cli import main

FAKE_PLUGINS = Path(__file__).parent / "fake_plugins"


def run_mpx(*args: str, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m mpx ARGS` in a fresh interpreter, optionally with a fake vendor distribution on its path."""
    env = {k: v for k, v in os.environ.items() if k != "MPX_DISABLE_PLUGINS"}
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), env.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "mpx", *args], capture_output=True, text=True, env=env, timeout=120)


def row(output: str, name: str) -> str:
    rows = [line for line in output.splitlines() if line.startswith(f"│ {name} ")]
    assert len(rows) == 1, f"no single table row for {name!r} in:\n{output}"
    return rows[0]


def test_backends_lists_cpu_as_available_in_a_fresh_process() -> None:
    done = run_mpx("backends")
    assert done.returncode == 0, done.stderr
    assert "│ yes " in row(done.stdout, "cpu")
    assert done.stderr == ""


def test_backends_lists_every_registered_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    mpx.reload_plugins()
    assert main(["backends"]) == 0
    output = capsys.readouterr().out
    for entry_point in importlib.metadata.entry_points(group="mpx"):
        row(output, entry_point.name)


def test_backends_rows_are_not_wrapped_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    mpx.reload_plugins()
    main(["backends"])
    cpu = next(e for e in mpx.list_backends() if e.name == "cpu")
    assert cpu.description in row(capsys.readouterr().out, "cpu")


def test_backends_shows_a_broken_plugin_with_its_error_and_cpu_still_works() -> None:
    done = run_mpx("backends", extra_path=FAKE_PLUGINS / "broken")
    assert done.returncode == 0, done.stderr
    broken = row(done.stdout, "brokennpu")
    assert "│ no " in broken and "libbrokennpu.so: cannot open shared object file" in broken
    assert "│ yes " in row(done.stdout, "cpu")


def test_backends_json_has_one_entry_per_backend_with_its_fields(capsys: pytest.CaptureFixture[str]) -> None:
    mpx.reload_plugins()
    assert main(["backends", "--json"]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert set(entries["cpu"]) == {"name", "available", "reason", "formats", "source", "description"}
    assert (entries["cpu"]["available"], entries["cpu"]["source"]) == (True, "mpx-precision:cpu")
    for entry in entries.values():
        assert entry["available"] or entry["reason"], f"{entry['name']} is unavailable without a reason"


def test_backends_json_lists_plugin_failures(install_plugins: Callable[..., None], capsys) -> None:
    install_plugins("malformed")
    main(["backends", "--json"])
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert not entries["notaspec"]["available"]
    assert "must yield mpx.BackendSpec" in entries["notaspec"]["reason"]


def test_formats_json_gives_every_format_with_its_limits(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["formats", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2"]
    for r in rows:
        fmt = mpx.format(r["name"])
        assert (r["max"], r["min_normal"], r["bits"], r["has_inf"]) == (fmt.max, fmt.min_normal, fmt.bits, fmt.has_inf)


def test_formats_table_shows_each_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["formats"]) == 0
    output = capsys.readouterr().out
    assert "65504" in row(output, "fp16")
    assert "448" in row(output, "fp8_e4m3") and "NaN (no inf)" in row(output, "fp8_e4m3")
    assert "57344" in row(output, "fp8_e5m2")


@pytest.mark.parametrize(
    "args",
    [(), ("backends", "--bogus"), ("nosuchcommand",), ("formats", "extra")],
    ids=["no-command", "unknown-option", "unknown-command", "extra-argument"],
)
def test_bad_usage_is_one_line_and_exit_2(args: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(list(args)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("mpx: error: ") and captured.err.count("\n") == 1
    assert "--help" in captured.err


def test_bad_usage_in_a_fresh_process_prints_no_traceback() -> None:
    done = run_mpx("backends", "--bogus")
    assert done.returncode == 2
    assert done.stderr == "mpx: error: unrecognized arguments: --bogus (see 'mpx --help')\n"


def test_an_mpx_error_in_a_command_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail() -> list:
        raise mpx.PluginError("backend name 'npu' is claimed by several plugins: a:npu, b:npu")

    monkeypatch.setattr("mpx.cli.backends.list_backends", fail)
    assert main(["backends"]) == 2
    assert capsys.readouterr().err == "mpx: error: backend name 'npu' is claimed by several plugins: a:npu, b:npu\n"


def test_version_and_help_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mpx {mpx.__version__}"
    assert main(["backends", "--help"]) == 0
    assert "--json" in capsys.readouterr().out


def test_import_mpx_imports_neither_onnxruntime_nor_onnx() -> None:
    probe = "import sys, mpx; print(sorted(m for m in ('onnxruntime', 'onnx') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_selecting_cpu_imports_no_onnxruntime() -> None:
    probe = "import sys, mpx; mpx.get_backend('cpu'); print('onnxruntime' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_readme_carries_the_formats_table_that_mpx_formats_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["formats", "--markdown"]) == 0
    table = capsys.readouterr().out.strip()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert table in readme, "paste `mpx formats --markdown` into the README's formats section"
