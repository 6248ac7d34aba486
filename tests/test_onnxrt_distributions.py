"""onnxruntime is an extra: mpx runs without it, names the install command, and flags two runtimes at once."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from mpx.backends.onnxrt import distributions

ROOT = Path(__file__).resolve().parents[1]


def test_the_core_dependencies_have_no_onnxruntime_and_the_extra_has_the_whole_stack():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith("onnx")]
    extra = {d.split(">")[0].split("=")[0].strip() for d in project["optional-dependencies"]["onnxrt"]}
    assert extra == {"onnxruntime-gpu", "onnx", "onnxconverter-common", "onnxscript"}
    assert "mpx-precision[onnxrt]" in project["optional-dependencies"]["dev"]


def test_without_onnxruntime_mpx_backends_says_how_to_install_it_and_cpu_still_works(tmp_path):
    blocker = tmp_path / "onnxruntime"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('No module named onnxruntime (hidden by the test)')\n")
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from mpx.cli import main; sys.exit(main())"
    run = subprocess.run(
        [sys.executable, "-c", code, "backends", "--json"], capture_output=True, text=True, timeout=120, check=True
    )
    rows = {row["name"]: row for row in json.loads(run.stdout)}
    assert not rows["onnxrt"]["available"]
    assert "pip install 'mpx-precision[onnxrt]'" in rows["onnxrt"]["reason"]
    assert rows["cpu"]["available"]


@pytest.fixture
def two_runtimes(tmp_path, monkeypatch):
    """onnxruntime and onnxruntime-gpu both installed (dist-info folders that each claim onnxruntime/)."""
    for name in ("onnxruntime", "onnxruntime_gpu"):
        dist = tmp_path / f"{name}-1.31.1.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 1.31.1\n")
        (dist / "RECORD").write_text("onnxruntime/__init__.py,,\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    distributions.conflict.cache_clear()
    yield
    distributions.conflict.cache_clear()


def test_two_runtimes_over_each_other_are_named_with_the_fix(two_runtimes):
    message = distributions.conflict()
    assert "onnxruntime 1.31.1" in message and "onnxruntime-gpu 1.31.1" in message
    assert "keep one" in message and "pip uninstall" in message


def test_a_plugin_ep_package_is_not_a_second_runtime(tmp_path, monkeypatch):
    dist = tmp_path / "onnxruntime_qnn-2.7.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: onnxruntime-qnn\nVersion: 2.7.0\n")
    (dist / "RECORD").write_text("onnxruntime_qnn/__init__.py,,\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert not [r for r in distributions.installed_runtimes() if r.startswith("onnxruntime-qnn")]


def test_the_backend_warns_when_two_runtimes_are_installed(two_runtimes):
    from mpx.backends.onnxrt.backend import OnnxRuntimeBackend

    with pytest.warns(RuntimeWarning, match="installed over each other"):
        OnnxRuntimeBackend("CPUExecutionProvider")
