"""onnxrt availability: decided with real sessions, EP selection by name, bad EP names and options."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mpx
from mpx.backends.onnxrt import providers


def test_onnxrt_is_listed_available_here():
    entry = next(e for e in mpx.list_backends() if e.name == "onnxrt")
    assert entry.available, entry.reason


def test_default_ep_is_the_first_installed_one_that_really_runs():
    installed = providers.installed_providers()
    chosen = mpx.get_backend("onnxrt").provider
    before = installed[: installed.index(chosen)]
    assert providers.probe(chosen) is None
    assert all(providers.probe(p) is not None for p in before)  # listed, but no session runs on them here


def test_listed_eps_that_do_not_start_are_unavailable_with_the_reason():
    for provider in providers.installed_providers():
        reason = providers.probe(provider)
        if reason is None:
            assert mpx.get_backend(f"onnxrt:{provider}").provider == provider
        else:
            with pytest.raises(mpx.BackendUnavailableError, match=provider):
                mpx.get_backend(f"onnxrt:{provider}")


def test_cpu_ep_by_name():
    backend = mpx.get_backend("onnxrt:CPUExecutionProvider")
    assert backend.name == "onnxrt:CPUExecutionProvider"
    assert backend.provider == "CPUExecutionProvider" and backend.describe()["device"] == "CPUExecutionProvider"
    assert backend.device == "cpu"  # where the torch tensors it trains live


def test_unknown_ep_names_the_eps_present():
    with pytest.raises(mpx.BackendUnavailableError) as error:
        mpx.get_backend("onnxrt:AcmeExecutionProvider")
    for provider in providers.installed_providers():
        assert provider in str(error.value)


def test_provider_options_that_are_not_flat_strings_are_an_mpx_error():
    with pytest.raises(mpx.BackendUnavailableError, match="device_id"):
        mpx.get_backend("onnxrt:CPUExecutionProvider", provider_options={"device_id": {"nested": 1}})


def test_provider_options_must_be_a_mapping():
    with pytest.raises(mpx.BackendUnavailableError, match="dict"):
        mpx.get_backend("onnxrt", provider_options=["device_id=0"])


def test_an_ep_that_reports_its_options_rejects_unknown_keys():
    class Session:
        def get_provider_options(self):
            return {"AcmeExecutionProvider": {"device_id": "0", "precision": "fp16"}}

    reason = providers.ignored_options("AcmeExecutionProvider", (("devcie_id", "0"),), Session())
    assert "devcie_id" in reason and "device_id" in reason


def test_unknown_backend_option_is_an_mpx_error():
    with pytest.raises(mpx.MpxError, match="options"):
        mpx.get_backend("onnxrt", threads=3)


def test_import_mpx_does_not_import_onnxruntime():
    code = "import sys, mpx; mpx.get_backend('cpu'); print('onnxruntime' in sys.modules, 'onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_model_versions_are_ones_the_installed_runtime_loads():
    from mpx.backends.onnxrt.builder import model_versions

    ir_version, opset = model_versions()
    assert ir_version >= 8 and opset >= 18
