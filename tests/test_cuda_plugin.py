"""The cuda backend's registration and device module: availability with the reason, cheaply, and device selection."""

import pytest
import torch

import mpx
from mpx.backends.cuda import device

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
cpu_only_torch = pytest.mark.skipif(torch.backends.cuda.is_built(), reason="checks a CPU-only torch build")


@cpu_only_torch
def test_a_cpu_only_torch_build_is_the_reason_here():
    assert device.unavailable() == f"torch was built without CUDA (torch {torch.__version__})"


@cpu_only_torch
def test_list_backends_shows_cuda_unavailable_with_the_reason():
    entry = next(e for e in mpx.list_backends() if e.name == "cuda")
    assert not entry.available
    assert "without CUDA" in entry.reason


@cpu_only_torch
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_get_backend_raises_backend_unavailable_with_the_reason(name):
    with pytest.raises(mpx.BackendUnavailableError, match="torch was built without CUDA"):
        mpx.get_backend(name)


def test_no_visible_gpu_is_named(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert device.unavailable() == "no NVIDIA GPU visible (torch.cuda.device_count() == 0)"


def test_a_gpu_index_past_the_visible_ones_is_named(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device.unavailable("1") is None
    assert device.unavailable("2") == "cuda:2 does not exist: 2 GPU(s) visible (cuda:0 .. cuda:1)"
    assert "not a GPU index" in device.unavailable("x")


def test_the_availability_check_does_not_initialize_cuda():
    device.unavailable()
    device.unavailable("0")
    assert not torch.cuda.is_initialized()


def test_a_non_cuda_device_option_is_refused(monkeypatch):
    with pytest.raises(mpx.BackendUnavailableError, match="use the 'cpu' backend"):
        device.device_index("cpu")
    assert device.device_index("cuda:1") == 1
    assert device.device_index("cuda") is None


@needs_gpu
def test_device_selection_by_variant_and_by_option():
    last = torch.cuda.device_count() - 1
    assert mpx.get_backend(f"cuda:{last}").device == f"cuda:{last}"
    assert mpx.get_backend("cuda", device=f"cuda:{last}").device == f"cuda:{last}"
