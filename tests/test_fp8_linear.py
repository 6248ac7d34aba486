"""Fp8Linear: fp8 GEMMs with per-tensor scales, emulated on the CPU, torch._scaled_mm on fp8 GPUs."""

import copy

import pytest
import torch

from mpx import BackendUnavailableError
from mpx.formats import FP8_E4M3, FP8_E5M2
from mpx.fp8 import CurrentScaling, DelayedScaling, Fp8Linear, convert_to_fp8, gemm_mode

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _layer(recipe, seed=0, features=(48, 32)):
    torch.manual_seed(seed)
    return Fp8Linear(*features, recipe=recipe)


def _quantization_error(t, scale, fmt):
    """Largest error of t quantized with `scale` in `fmt`, per element (normal: half an ulp; subnormal: fixed)."""
    return torch.maximum(t.abs() * 2.0 ** -(fmt.mantissa_bits + 1), torch.full_like(t, fmt.min_subnormal / 2) / scale)


def _product_bound(a, ea, b, eb):
    """Error bound of a @ b with operand errors ea, eb, plus fp32 accumulation."""
    inner = a.shape[-1]
    return a.abs() @ eb + ea @ b.abs() + ea @ eb + inner * 2.0**-23 * (a.abs() @ b.abs())


def test_forward_matches_the_float64_reference_within_the_e4m3_bound():
    layer = _layer(CurrentScaling())
    x = torch.randn(64, 48)
    y = layer(x)
    x64, w64 = x.double(), layer.weight.detach().double()
    want = x64 @ w64.T + layer.bias.detach().double()
    bound = _product_bound(
        x64,
        _quantization_error(x64, 448 / x64.abs().max(), FP8_E4M3),
        w64.T,
        _quantization_error(w64.T, 448 / w64.abs().max(), FP8_E4M3),
    )
    error = (y.double() - want).abs()
    assert (error <= bound).all()
    assert error.max() > 1e-4  # it really computed in fp8


def test_backward_matches_the_float64_reference_within_the_e5m2_and_e4m3_bounds():
    layer = _layer(CurrentScaling())
    x = torch.randn(64, 48, requires_grad=True)
    grad_y = torch.randn(64, 32)
    layer(x).backward(grad_y)
    x64, w64, g64 = x.detach().double(), layer.weight.detach().double(), grad_y.double()
    ex = _quantization_error(x64, 448 / x64.abs().max(), FP8_E4M3)
    ew = _quantization_error(w64, 448 / w64.abs().max(), FP8_E4M3)
    eg = _quantization_error(g64, 57344 / g64.abs().max(), FP8_E5M2)
    assert ((x.grad.double() - g64 @ w64).abs() <= _product_bound(g64, eg, w64, ew)).all()
    assert ((layer.weight.grad.double() - g64.T @ x64).abs() <= _product_bound(g64.T, eg.T, x64, ex)).all()
    assert torch.allclose(layer.bias.grad.double(), g64.sum(0), rtol=1e-6)


def test_fp8_hybrid_quantizes_forward_in_e4m3_and_gradients_in_e5m2():
    layer = _layer(CurrentScaling())
    x = torch.randn(16, 48) * 3
    grad_y = torch.randn(16, 32) * 5
    layer(x).backward(grad_y)
    assert torch.isclose(layer.input_scaling.scale, 448 / x.abs().max())
    assert torch.isclose(layer.grad_output_scaling.scale, 57344 / grad_y.abs().max())
    assert (layer.input_scaling.fmt, layer.grad_output_scaling.fmt) == (FP8_E4M3, FP8_E5M2)


@pytest.mark.parametrize("recipe", [CurrentScaling, DelayedScaling])
def test_the_scaled_mm_path_agrees_with_the_emulation(recipe):
    emulated = _layer(recipe(gemm="emulated"))
    scaled_mm = copy.deepcopy(emulated)
    scaled_mm.recipe = recipe(gemm="scaled_mm")  # torch's CPU _scaled_mm kernel: the GPU code path's layouts
    for step in range(2):
        x = torch.randn(20, 48, generator=torch.Generator().manual_seed(step))  # 20 rows: padded for the wgrad
        outputs = []
        for layer in (emulated, scaled_mm):
            layer.zero_grad()
            x_ = x.clone().requires_grad_(True)
            y = layer(x_)
            y.square().sum().backward()
            outputs.append((y, x_.grad, layer.weight.grad, layer.bias.grad))
        for a, b in zip(*outputs, strict=True):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)


def test_under_autocast_the_output_is_in_the_autocast_dtype():
    layer = _layer(CurrentScaling())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(4, 48)).dtype == torch.bfloat16


def test_delayed_scaling_trains_a_small_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 1))
    convert_to_fp8(model, DelayedScaling(amax_history_len=16))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(256, 16)
    y = x[:, :1] * 2 - x[:, 1:2]
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.1 * losses[0]


def test_convert_to_fp8_shares_parameters_and_respects_exclude():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    weight = model[0].weight
    convert_to_fp8(model, exclude=lambda name, layer: layer.out_features == 2)
    assert isinstance(model[0], Fp8Linear) and model[0].weight is weight
    assert type(model[2]) is torch.nn.Linear


def test_an_older_gpu_gets_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-80GB")
    with pytest.raises(BackendUnavailableError, match=r"compute capability >= 8.9.*A100.*sm_80"):
        gemm_mode(torch.device("cuda:0"))


def test_a_hopper_gpu_uses_scaled_mm(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert gemm_mode(torch.device("cuda:0")) == "scaled_mm"
    assert gemm_mode(torch.device("cpu")) == "emulated"


@needs_gpu
def test_on_the_gpu_fp8_linear_matches_its_cpu_emulation():
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("needs a CUDA GPU with fp8 tensor cores (compute capability >= 8.9)")
    cpu = _layer(CurrentScaling(), features=(256, 128))
    gpu = copy.deepcopy(cpu).cuda()
    x = torch.randn(64, 256)
    assert torch.allclose(gpu(x.cuda()).cpu(), cpu(x), rtol=1e-4, atol=1e-4)
