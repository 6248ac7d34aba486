"""The cpu backend's emulated autocast: lowp ops rounded to the compute format, the rest in fp32."""

import pytest
import torch

import mpx

FP16, BF16, E4M3, E5M2 = (mpx.format(n) for n in ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2"))


def _on_grid(x: torch.Tensor, fmt) -> bool:
    return torch.equal(fmt.round(x.detach().float()), x.detach().float())


def test_linear_output_is_rounded_to_the_compute_format():
    linear = torch.nn.Linear(16, 8)
    x = torch.randn(4, 16)
    with mpx.get_backend("cpu").autocast(mpx.policy("fp16-mixed")):
        out = linear(x)
    assert out.dtype == torch.float32 and _on_grid(out, FP16) and not _on_grid(linear(x), FP16)
    expected = FP16.round(torch.nn.functional.linear(FP16.round(x), FP16.round(linear.weight), FP16.round(linear.bias)))
    assert torch.equal(out, expected)


def test_fp32_list_ops_stay_fp32_inside_autocast():
    x = torch.randn(4, 16)
    with mpx.get_backend("cpu").autocast(mpx.policy("bf16-mixed")):
        probabilities = torch.softmax(x, dim=-1)
    assert torch.equal(probabilities, torch.softmax(x, dim=-1))


def test_matmul_conv_and_attention_are_lowp():
    a, b = torch.randn(3, 5), torch.randn(5, 4)
    image, kernel = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3)
    q = k = v = torch.randn(1, 2, 4, 8)
    with mpx.get_backend("cpu").autocast(mpx.policy("bf16-mixed")):
        outputs = [
            a @ b,
            torch.nn.functional.conv2d(image, kernel),
            torch.nn.functional.scaled_dot_product_attention(q, k, v),
        ]
    assert all(_on_grid(o, BF16) for o in outputs)


def test_fp8_hybrid_rounds_forward_to_e4m3_and_gradients_to_e5m2():
    x = torch.randn(4, 16, requires_grad=True)
    weight = torch.randn(8, 16, requires_grad=True)
    with mpx.get_backend("cpu").autocast(mpx.policy("fp8-hybrid")):
        out = torch.nn.functional.linear(x, weight)
    expected = BF16.round(E4M3.round(x.detach()) @ E4M3.round(weight.detach()).T)
    assert torch.equal(out.detach(), expected)
    grad_out = torch.randn(4, 8)
    out.backward(grad_out)
    torch.testing.assert_close(x.grad, BF16.round(E5M2.round(grad_out) @ E4M3.round(weight.detach())))


def test_saturating_backend_clamps_instead_of_overflowing():
    x = torch.full((1, 1), 300.0)
    weight = torch.full((1, 1), 300.0)
    with mpx.get_backend("cpu", overflow="saturate").autocast(mpx.policy("fp16-mixed")):
        out = torch.nn.functional.linear(x, weight)
    assert float(out) == FP16.max
    with mpx.get_backend("cpu").autocast(mpx.policy("fp16-mixed")):
        assert float(torch.nn.functional.linear(x, weight)) == float("inf")


def test_flushing_backend_zeroes_subnormal_results():
    x, weight = torch.full((1, 1), 2.0**-12), torch.full((1, 1), 2.0**-6)
    with mpx.get_backend("cpu", subnormals="flush").autocast(mpx.policy("fp16-mixed")):
        assert float(torch.nn.functional.linear(x, weight)) == 0.0
    with mpx.get_backend("cpu").autocast(mpx.policy("fp16-mixed")):
        assert float(torch.nn.functional.linear(x, weight)) == 2.0**-18


def test_half_model_keeps_its_dtype_through_emulated_ops():
    linear = torch.nn.Linear(4, 4).half()
    with mpx.get_backend("cpu").autocast(mpx.policy("fp16-pure")):
        out = linear(torch.randn(2, 4).half())
    assert out.dtype == torch.float16


def test_native_backend_uses_torch_autocast():
    linear = torch.nn.Linear(4, 4)
    with mpx.get_backend("cpu", native=True).autocast(mpx.policy("bf16-mixed")):
        out = linear(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16


@pytest.mark.parametrize("policy", ["fp16-mixed", "bf16-mixed", "fp8-hybrid"])
def test_gradients_of_lowp_ops_reach_fp32_parameters(policy):
    linear = torch.nn.Linear(4, 2)
    with mpx.get_backend("cpu").autocast(mpx.policy(policy)):
        out = linear(torch.randn(3, 4))
    out.sum().backward()
    assert linear.weight.grad.dtype == torch.float32 and torch.isfinite(linear.weight.grad).all()
