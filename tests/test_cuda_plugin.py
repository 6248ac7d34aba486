"""The cuda backend's registration: availability with the reason, cheaply, and device selection."""

import pytest
import torch
from mpx.backends.cuda import plugin

import mpx

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
cpu_only_torch = pytest.mark.skipif(torch.backends.cuda.is_built(), reason="checks a CPU-only torch build")


@cpu_only_torch
def test_a_cpu_only_torch_build_is_the_reason_here():
    assert plugin.unavailable() == f"torch was built without CUDA (torch {torch.__version__})"


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
    assert plugin.unavailable() == "no NVIDIA GPU visible (torch.cuda.device_count() == 0)"


def test_a_gpu_index_past_the_visible_ones_is_named(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert plugin.unavailable("1") is None
    assert plugin.unavailable("2") == "cuda:2 does not exist: 2 GPU(s) visible (cuda:0 .. cuda:1)"
    assert "not a GPU index" in plugin.unavailable("x")


def test_the_availability_check_does_not_initialize_cuda():
    plugin.unavailable()
    plugin.unavailable("0")
    assert not torch.cuda.is_initialized()


def test_a_non_cuda_device_option_is_refused(monkeypatch):
    from mpx.backends.cuda.backend import _device_index

    with pytest.raises(mpx.BackendUnavailableError, match="use the 'cpu' backend"):
        _device_index("cpu")
    assert _device_index("cuda:1") == 1
    assert _device_index("cuda") is None


@needs_gpu
def test_device_selection_by_variant_and_by_option():
    last = torch.cuda.device_count() - 1
    assert mpx.get_backend(f"cuda:{last}").device == f"cuda:{last}"
    assert mpx.get_backend("cuda", device=f"cuda:{last}").device == f"cuda:{last}"
