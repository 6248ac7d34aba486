"""`mpx conformance --repro DIR`: a bundle per failing case that reproduces it outside the suite."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpx.cli import main


def _reproduce(bundle: Path, isolated: bool) -> subprocess.CompletedProcess[str]:
    """Run the bundle's reproduce.py in its folder. isolated: `python -I -S` with only the folders holding
    onnxruntime, onnx and numpy on sys.path (no .pth files, so no editable mpx, checked first) and no torch."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    if not isolated:
        return subprocess.run([sys.executable, "reproduce.py"], cwd=bundle, env=env, capture_output=True, text=True)
    import numpy
    import onnx
    import onnxruntime

    folders = sorted({str(Path(m.__file__).parent.parent) for m in (numpy, onnx, onnxruntime)})
    # mpx is not on that path; torch shares numpy's folder, so importing it is made to fail as well
    prelude = f"import sys; sys.path += {folders!r}; import importlib.util, runpy; sys.modules['torch'] = None; "
    probe = "sys.exit(importlib.util.find_spec('mpx') is not None)"
    assert subprocess.run([sys.executable, "-I", "-S", "-c", prelude + probe], cwd=bundle, env=env).returncode == 0
    run = prelude + "runpy.run_path('reproduce.py', run_name='__main__')"
    return subprocess.run([sys.executable, "-I", "-S", "-c", run], cwd=bundle, env=env, capture_output=True, text=True)


def test_an_onnxrt_bundle_reproduces_with_plain_onnxruntime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    from mpx.backends.onnxrt import graph
    from mpx.backends.onnxrt.graph.base import OpGraph

    right = graph.GRAPHS["mul"]

    def wrong(ctx):  # noqa: ANN001, ANN202 - a GraphContext in, output names out
        (out,) = right.forward(ctx)
        return [ctx.node("Add", out, ctx.b.const(0.5, graph.base.ONNX_OF_TORCH[ctx.fmt.torch_dtype]))]

    monkeypatch.setitem(graph.GRAPHS, "mul", OpGraph(wrong, right.backward))
    out = tmp_path / "repro"
    argv = ["conformance", "--backend", "onnxrt", "--op", "mul", "--format", "fp32", "--case"]
    argv += [
        "mul/fp32/forward/normal",
        "--repro",
        str(out),
        "--exit-zero",
        "--quiet",
        "--json",
        str(tmp_path / "r.json"),
    ]
    assert main(argv) == 0
    bundle = out / "onnxrt" / "mul__fp32__forward__normal"
    names = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert {"model.onnx", "session.json", "README.md", "reproduce.py", "tolerance.json"} <= names
    assert {"test_data_set_0/input_0.pb", "test_data_set_0/input_1.pb", "test_data_set_0/output_0.pb"} <= names
    assert "fail" in (bundle / "README.md").read_text()
    done = _reproduce(bundle, isolated=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "REPRODUCED" in done.stdout and "max abs difference 0.5" in done.stdout


def test_a_torch_backend_bundle_reproduces(tmp_path: Path) -> None:
    out = tmp_path / "repro"
    argv = ["conformance", "--backend", "cpu", "--backend-option", "gemm_inputs=bf16", "--op", "matmul", "--case"]
    argv += [
        "matmul/fp32/forward/normal",
        "--repro",
        str(out),
        "--exit-zero",
        "--quiet",
        "--json",
        str(tmp_path / "r.json"),
    ]
    assert main(argv) == 0
    bundle = out / "cpu" / "matmul__fp32__forward__normal"
    assert {p.name for p in bundle.iterdir()} >= {"case.pt", "reproduce.py", "README.md"}
    assert "downcast" in (bundle / "README.md").read_text()
    done = _reproduce(bundle, isolated=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "REPRODUCED" in done.stdout


def test_repro_dir_that_is_a_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    argv = ["conformance", "--backend", "cpu", "--op", "add", "--repro", str(path), "--json", str(tmp_path / "r.json")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file" in err[0]
    assert not (tmp_path / "r.json").exists()
