"""A real plugin EP package from the registry (onnxruntime-ggml), registered and selected through mpx."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import mpx
from mpx.backends.onnxrt import ep_libraries, execution_provider_backend
from mpx.ops import get_op
from mpx.ops.reference import expected, prepare
from mpx.ops.tolerance import compare

EP = "ggml"


def _skip_reason() -> str | None:
    """Why the ggml EP cannot be tried here, precisely, or None."""
    try:
        import onnxruntime_ggml
    except ImportError as error:
        return f"onnxruntime-ggml is not installed ({error}): pip install --no-deps onnxruntime-ggml"
    except Exception as error:
        return f"onnxruntime-ggml does not import here: {type(error).__name__}: {error}"
    problem = ep_libraries.register_all().get(EP)
    if problem:
        return f"onnxruntime-ggml's library ({onnxruntime_ggml.library_path()}) does not load: {problem}"
    if not ep_libraries.ep_devices(EP):
        return "onnxruntime-ggml registered but exposes no device here"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


@pytest.fixture(scope="module")
def backend():
    return mpx.get_backend(f"onnxrt:{EP}")


def test_mpx_backends_lists_the_plugin_ep_with_its_device():
    mpx.reload_plugins()
    row = next(e for e in mpx.list_backends() if e.name == "onnxrt")
    assert f"onnxrt:{EP} on cpu (package onnxruntime-ggml " in row.description


def test_sessions_run_on_the_plugin_ep_devices(backend):
    facts = backend.describe()
    assert backend.target.plugin and facts["provider"] == EP
    assert [d["type"] for d in facts["plugin_ep"]["devices"]] == ["cpu"]
    entry = backend.compiled(get_op("add"), mpx.format("fp32"), "forward", ((4,), (4,)))
    assert entry.session.get_providers()[0] == EP


@pytest.mark.parametrize(("op_name", "fmt_name"), [("add", "fp32"), ("matmul", "fp32"), ("gelu", "fp32")])
def test_cases_run_on_the_plugin_ep_within_tolerance(backend, op_name, fmt_name):
    op, fmt = get_op(op_name), mpx.format(fmt_name)
    support = backend.support(op, fmt)
    if not support.runs:
        pytest.skip(f"{EP} does not run {op_name} in {fmt_name}: {support.reason}")
    prepared = prepare(op, fmt, "normal", "forward")
    got = backend.run(op, fmt, prepared.storage_inputs)
    comparison = compare(op, fmt, got, expected(op, fmt, prepared, "forward"), prepared, "forward")
    assert comparison.passed, comparison


def test_probes_that_the_ep_cannot_run_are_unknown_never_measured_elsewhere(backend):
    for name, measured in backend.semantics.items():
        if measured.fallback:
            assert (measured.overflow, measured.subnormals) == ("unknown", "unknown"), name


def test_a_vendor_plugin_registers_the_library_itself():
    import onnxruntime_ggml

    spec = execution_provider_backend(
        "acme-ggml", ep_name=EP, library_path=onnxruntime_ggml.library_path(), device_type="cpu"
    )
    assert spec.unavailable() is None
    assert spec.factory().target.device_type == "cpu"


def test_a_device_type_the_ep_lacks_names_the_devices_it_has():
    with pytest.raises(mpx.BackendUnavailableError, match="devices: 0: cpu"):
        mpx.get_backend(f"onnxrt:{EP}", device_type="npu")


def test_an_isolated_worker_registers_the_library_in_its_own_process():
    code = (
        "import json, mpx, torch; b = mpx.get_backend('onnxrt:ggml', device_type='cpu', device_id=0);"
        "out = b.run('add', 'fp32', (torch.ones(2), torch.ones(2)))[0];"
        "print(json.dumps([b.target.plugin, out.tolist()]))"
    )
    env = {**os.environ, "ORT_GGML_LOG": "error"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == [True, [2.0, 2.0]]
