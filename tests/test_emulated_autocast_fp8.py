"""fp8-hybrid on whole modules (MHA, LSTM, GRU, TransformerEncoderLayer): e4m3 GEMM inputs, bf16 biases and
outputs, gradients rounded to e5m2 arriving and to bf16 leaving, the same as rounding by hand around each GEMM."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mpx

E4M3, E5M2, BF16 = (mpx.format(n) for n in ("fp8_e4m3", "fp8_e5m2", "bf16"))


class _Round(torch.autograd.Function):
    """Manual rounding: the value to `forward`, the gradient to `backward`."""

    @staticmethod
    def forward(ctx, x, forward, backward):  # noqa: ANN001, ANN205
        ctx.backward_format = backward
        return forward.round(x)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        return ctx.backward_format.round(grad), None, None


def _in(t: torch.Tensor) -> torch.Tensor:
    return _Round.apply(t, E4M3, BF16)


def _out(t: torch.Tensor) -> torch.Tensor:
    return _Round.apply(t, BF16, E5M2)


def _bias(t: torch.Tensor) -> torch.Tensor:
    """A bias is added to the GEMM's bf16 result: bf16, as fp8 GEMMs take it (and its gradient leaves as bf16)."""
    return _Round.apply(t, BF16, BF16)


def _linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    return _out(F.linear(_in(x), _in(layer.weight), _bias(layer.bias)))


def _mha(mha: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    qkv = _out(F.linear(_in(x), _in(mha.in_proj_weight), _bias(mha.in_proj_bias)))
    heads = mha.num_heads
    q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in qkv.chunk(3, -1))
    attention = _out(F.scaled_dot_product_attention(_in(q), _in(k), _in(v)))
    return _linear(attention.transpose(1, 2).flatten(2), mha.out_proj)


def _gru(gru: nn.GRU, x: torch.Tensor) -> torch.Tensor:
    """torch's CPU GRU: the input projection of the whole sequence, then one hidden GEMM per step."""
    projected = _out(F.linear(_in(x), _in(gru.weight_ih_l0), _bias(gru.bias_ih_l0)))
    hidden, outputs = torch.zeros(x.shape[0], gru.hidden_size), []
    for step in projected.unbind(1):
        recurrent = _out(F.linear(_in(hidden), _in(gru.weight_hh_l0), _bias(gru.bias_hh_l0)))
        (i_r, i_z, i_n), (h_r, h_z, h_n) = step.chunk(3, 1), recurrent.chunk(3, 1)
        reset, update = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        new = torch.tanh(i_n + reset * h_n)
        hidden = (hidden - new) * update + new
        outputs.append(hidden)
    return torch.stack(outputs, 1)


def _lstm(lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """torch's CPU LSTM runs as one oneDNN layer op: inputs and weights e4m3, the output bf16."""
    zeros = torch.zeros(1, x.shape[0], lstm.hidden_size)
    w_ih, w_hh, b_ih, b_hh = lstm._flat_weights
    weights = [_in(w_ih), _in(w_hh), _bias(b_ih), _bias(b_hh)]
    return _out(torch._VF.lstm(_in(x), (zeros, zeros), weights, True, 1, 0.0, True, False, True)[0])


def _encoder_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    x = layer.norm1(x + _mha(layer.self_attn, x))
    return layer.norm2(x + _linear(F.relu(_linear(x, layer.linear1)), layer.linear2))


def _module(name: str) -> tuple[nn.Module, object]:
    torch.manual_seed(0)
    return {
        "mha": (nn.MultiheadAttention(8, 2, batch_first=True), lambda m, x: m(x, x, x, need_weights=False)[0], _mha),
        "gru": (nn.GRU(8, 6, batch_first=True), lambda m, x: m(x)[0], _gru),
        "lstm": (nn.LSTM(8, 6, batch_first=True), lambda m, x: m(x)[0], _lstm),
        "transformer": (
            nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
            lambda m, x: m(x),
            _encoder_layer,
        ),
    }[name]


def _ulps(x: torch.Tensor, reference: torch.Tensor) -> float:
    scale = BF16.ulp(reference.detach().abs().max().reshape(1))
    return float(((x.detach().double() - reference.detach().double()).abs() / scale).max())


@pytest.mark.parametrize("name", ["mha", "gru", "lstm", "transformer"])
def test_fp8_module_matches_manual_rounding_forward_and_backward(name):
    module, run, manual = _module(name)
    x = torch.randn(2, 5, 8, requires_grad=True)
    tensors = [*module.parameters(), x]
    with mpx.get_backend("cpu").autocast("fp8-hybrid"):
        emulated = run(module, x)
    emulated.square().sum().backward()
    emulated_grads = [t.grad for t in tensors]
    for t in tensors:
        t.grad = None
    expected = manual(module, x)
    expected.square().sum().backward()
    assert _ulps(emulated, expected) <= 2
    assert all(_ulps(g, t.grad) <= 4 for g, t in zip(emulated_grads, tensors, strict=True))
    if name != "transformer":  # every parameter's gradient leaves a GEMM as bf16 (norm weights do not)
        assert all(torch.equal(BF16.round(g), g) for g in emulated_grads)
