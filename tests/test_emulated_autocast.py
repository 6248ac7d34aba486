"""Emulated autocast numerics: every path to a lowp op rounds as torch.autocast does; fp32 regions escape."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mpx

FP16, BF16, E4M3, E5M2 = (mpx.format(n) for n in ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2"))
DTYPES = {"fp16-mixed": (torch.float16, FP16), "bf16-mixed": (torch.bfloat16, BF16)}


def _case(name: str):  # noqa: ANN202 - a zero-argument callable
    torch.manual_seed(0)
    a, b, seq = torch.randn(4, 8), torch.randn(8, 5), torch.randn(2, 4, 8)
    module = {
        "bilinear": nn.Bilinear(8, 8, 3),
        "lstm_cells": nn.LSTMCell(8, 6),
        "gru": nn.GRU(8, 6, batch_first=True),
        "mha": nn.MultiheadAttention(8, 2, batch_first=True),
        "linear": nn.Linear(8, 5),
        "transformer": nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
    }.get(name)
    image, kernel = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3)
    q, k, v = torch.randn(3, 1, 2, 4, 8)
    return {
        "einsum": lambda: torch.einsum("ij,jk->ik", a, b),
        "tensordot": lambda: torch.tensordot(a, b, dims=1),
        "linalg.matmul": lambda: torch.linalg.matmul(a, b),
        "inner": lambda: torch.inner(a, b.T),
        "F.linear": lambda: F.linear(a, b.T),
        "conv2d": lambda: F.conv2d(image, kernel),
        "sdpa": lambda: F.scaled_dot_product_attention(q, k, v),
        "bilinear": lambda: module(a, a),
        "lstm_cells": lambda: torch.stack([module(seq[:, t])[0] for t in range(seq.shape[1])]),
        "gru": lambda: module(seq)[0],
        "mha": lambda: module(seq, seq, seq)[0],
        "transformer": lambda: module(seq),
        "linear": lambda: module(a),
    }[name]


CASES = [
    "einsum",
    "tensordot",
    "linalg.matmul",
    "inner",
    "F.linear",
    "conv2d",
    "sdpa",
    "bilinear",
    "lstm_cells",
    "gru",
    "mha",
    "transformer",
]


def _ulps(x: torch.Tensor, reference: torch.Tensor, fmt) -> float:
    """Largest error in units of the format's spacing at the reference's largest magnitude."""
    scale = fmt.ulp(reference.detach().abs().max().reshape(1))
    return float(((x.detach().double() - reference.detach().double()).abs() / scale).max())


@pytest.mark.parametrize("policy", sorted(DTYPES))
@pytest.mark.parametrize("name", CASES)
def test_emulation_matches_torch_autocast(name, policy):
    dtype, fmt = DTYPES[policy]
    run = _case(name)
    with mpx.get_backend("cpu").autocast(policy):
        emulated = run()
    with torch.autocast("cpu", dtype=dtype):
        native = run()
    assert emulated.dtype == torch.float32
    # torch runs the elementwise math between GEMMs (RNN gates, residuals) in the low format, mpx in fp32
    assert _ulps(emulated, native, fmt) <= (8 if name in ("gru", "lstm_cells", "transformer") else 2)


@pytest.mark.parametrize("name", CASES)
def test_enabled_false_inside_emulation_is_fp32(name):
    run = _case(name)
    with mpx.get_backend("cpu").autocast("fp16-mixed"), torch.autocast("cpu", enabled=False):
        inside = run()
    assert torch.equal(inside, run())


def test_fp32_policy_inside_emulation_opens_an_fp32_region():
    run = _case("mha")
    backend = mpx.get_backend("cpu")
    with backend.autocast("fp16-mixed"), backend.autocast("fp32"):
        inside = run()
    assert torch.equal(inside, run())


@pytest.mark.parametrize(
    ("name", "manual"),
    [
        ("F.linear", lambda a, b: a @ b),
        ("einsum", lambda a, b: a @ b),
        ("tensordot", lambda a, b: a @ b),
        ("linalg.matmul", lambda a, b: a @ b),
    ],
)
def test_fp8_gemms_round_inputs_to_e4m3_and_write_bf16(name, manual):
    torch.manual_seed(0)
    a, b = torch.randn(4, 8), torch.randn(8, 5)
    with mpx.get_backend("cpu").autocast("fp8-hybrid"):
        out = _case(name)()
    assert torch.equal(out, BF16.round(manual(E4M3.round(a), E4M3.round(b))))


def test_fp8_conv_and_attention_match_manual_rounding():
    torch.manual_seed(0)
    image, kernel = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3)
    q, k, v = torch.randn(3, 1, 2, 4, 8)
    with mpx.get_backend("cpu").autocast("fp8-hybrid"):
        conv, attention = F.conv2d(image, kernel), F.scaled_dot_product_attention(q, k, v)
    assert torch.equal(conv, BF16.round(F.conv2d(E4M3.round(image), E4M3.round(kernel))))
    expected = BF16.round(F.scaled_dot_product_attention(E4M3.round(q), E4M3.round(k), E4M3.round(v)))
    assert torch.equal(attention, expected)


@pytest.mark.parametrize("policy", ["fp16-mixed", "bf16-mixed", "fp8-hybrid"])
def test_gradients_are_rounded_to_the_backward_format(policy):
    backward = mpx.policy(policy).backward
    torch.manual_seed(0)
    x, weight = torch.randn(4, 8, requires_grad=True), torch.randn(5, 8, requires_grad=True)
    with mpx.get_backend("cpu").autocast(policy):
        out = torch.einsum("ij,kj->ik", x, weight)
    grad_out = torch.randn(4, 5)
    out.backward(grad_out)
    written = BF16 if backward.is_fp8 else backward
    forward = mpx.policy(policy).compute
    assert torch.equal(x.grad, written.round(backward.round(grad_out) @ forward.round(weight.detach())))


def test_saturate_and_flush_rules_reach_every_path():
    big = torch.full((1, 1, 1), 300.0)
    with mpx.get_backend("cpu", overflow="saturate").autocast("fp16-mixed"):
        assert float(torch.einsum("bij,bjk->bik", big, big)) == FP16.max
    tiny, small = torch.diag(torch.tensor([2.0**-12, 0.0])), torch.diag(torch.tensor([2.0**-6, 0.0]))  # mm, not dot
    with mpx.get_backend("cpu", subnormals="flush").autocast("fp16-mixed"):
        assert float(torch.tensordot(tiny, small, dims=1)[0, 0]) == 0.0
    with mpx.get_backend("cpu").autocast("fp16-mixed"):
        assert float(torch.tensordot(tiny, small, dims=1)[0, 0]) == 2.0**-18


def test_fp32_list_ops_stay_fp32():
    torch.manual_seed(0)
    x = torch.randn(4, 16)
    with mpx.get_backend("cpu").autocast("bf16-mixed"):
        outputs = [torch.softmax(x, -1), F.layer_norm(x, (16,)), x.exp(), x.sum(), F.mse_loss(x, x * 2)]
    expected = [torch.softmax(x, -1), F.layer_norm(x, (16,)), x.exp(), x.sum(), F.mse_loss(x, x * 2)]
    assert all(o.dtype == torch.float32 and torch.equal(o, e) for o, e in zip(outputs, expected, strict=True))


def test_a_model_stored_in_the_compute_format_stays_in_it_as_under_native_autocast():
    """bf16-pure: a bf16 Linear fed fp32 data answers in bf16, so the bf16 LayerNorm after it runs (as natively)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2)).bfloat16()
    x = torch.randn(3, 4)
    outputs = {}
    for native in (False, True):
        with mpx.get_backend("cpu", native=native).autocast("bf16-pure"):
            outputs[native] = model(x)
    assert outputs[False].dtype == outputs[True].dtype == torch.bfloat16
