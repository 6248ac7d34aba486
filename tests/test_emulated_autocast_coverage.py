"""The emulated autocast rounds every op torch.autocast runs in low precision, on the CPU and CUDA lists."""

import pytest
import torch
import torch.nn.functional as F

import mpx
from mpx.backends.cpu import autocast_lists
from mpx.backends.cpu.autocast import KERNELS

FP16 = mpx.format("fp16")
aten = torch.ops.aten


def _on_grid(x: torch.Tensor) -> bool:
    return torch.equal(FP16.round(x.detach().float()), x.detach().float())


@pytest.mark.parametrize("dispatch_key", ["AutocastCPU", "AutocastCUDA"])
def test_every_torch_autocast_op_is_classified(dispatch_key):
    """Fails when torch adds an autocast op: decide whether it is low precision (then emulate it) or not."""
    known = autocast_lists.LOWP | autocast_lists.FP32 | autocast_lists.PROMOTE
    assert sorted(autocast_lists.torch_autocast_ops(dispatch_key) - known) == []


def test_every_lowp_op_gets_an_mpx_kernel_while_emulating():
    names = [f"{n}.{o}" if o else n for n, o in autocast_lists.present(autocast_lists.LOWP)]
    with mpx.get_backend("cpu").autocast("fp16-mixed"):
        missing = [n for n in names if "autocast.py" not in _autocast_cpu_line(n)]
    assert len(names) >= 40 and missing == []


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_kept_kernels_are_torch_autocast_bit_for_bit_outside_emulation(dtype):
    """After an emulated autocast mpx's kernels stay registered: a plain torch.autocast runs torch's own."""
    with mpx.get_backend("cpu").autocast("fp16-mixed"):
        pass
    outputs = []
    for registered in (True, False):
        KERNELS.register() if registered else KERNELS.unregister()
        assert ("autocast.py" in _autocast_cpu_line("aten::mm")) == registered
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=dtype):
            outputs.append([SAMPLES[name]() for name in sorted(SAMPLES)])
        x, weight = torch.randn(3, 5, requires_grad=True), torch.randn(4, 5, requires_grad=True)
        with torch.autocast("cpu", dtype=dtype):
            F.linear(x, weight).float().square().sum().backward()
        outputs[-1] += [x.grad, weight.grad]
    KERNELS.register()
    assert all(o.dtype == t.dtype and torch.equal(o, t) for o, t in zip(*outputs, strict=True))


def _autocast_cpu_line(qualified: str) -> str:
    dump = torch._C._dispatch_dump(qualified)
    return next((line for line in dump.splitlines() if line.startswith("AutocastCPU:")), "")


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape) * 3


# Sample calls of the lowp ops that public code reaches on the CPU.
SAMPLES = {
    "mm": lambda: aten.mm(_x(3, 5), _x(5, 4)),
    "bmm": lambda: aten.bmm(_x(2, 3, 5), _x(2, 5, 4)),
    "addmm": lambda: aten.addmm(_x(4), _x(3, 5), _x(5, 4)),
    "_addmm_activation": lambda: aten._addmm_activation(_x(4), _x(3, 5), _x(5, 4)),
    "addbmm": lambda: aten.addbmm(_x(3, 4), _x(2, 3, 5), _x(2, 5, 4)),
    "baddbmm": lambda: aten.baddbmm(_x(2, 3, 4), _x(2, 3, 5), _x(2, 5, 4)),
    "matmul": lambda: aten.matmul(_x(3, 5), _x(5, 4)),
    "linear": lambda: aten.linear(_x(3, 5), _x(4, 5), _x(4)),
    "linalg_vecdot": lambda: aten.linalg_vecdot(_x(3, 5), _x(3, 5)),
    "addmv": lambda: aten.addmv(_x(3), _x(3, 5), _x(5)),
    "addr": lambda: aten.addr(_x(3, 4), _x(3), _x(4)),
    "mv": lambda: aten.mv(_x(3, 5), _x(5)),
    "einsum": lambda: torch.einsum("ij,jk->ik", _x(3, 5), _x(5, 4)),
    "chain_matmul": lambda: aten.chain_matmul([_x(3, 5), _x(5, 4), _x(4, 2)]),
    "linalg_multi_dot": lambda: aten.linalg_multi_dot([_x(3, 5), _x(5, 4), _x(4, 2)]),
    "conv1d": lambda: F.conv1d(_x(1, 2, 8), _x(3, 2, 3)),
    "conv1d.padding": lambda: F.conv1d(_x(1, 2, 8), _x(3, 2, 3), padding="same"),
    "conv2d": lambda: F.conv2d(_x(1, 2, 6, 6), _x(3, 2, 3, 3)),
    "conv2d.padding": lambda: F.conv2d(_x(1, 2, 6, 6), _x(3, 2, 3, 3), padding="same"),
    "conv3d": lambda: F.conv3d(_x(1, 2, 4, 4, 4), _x(3, 2, 3, 3, 3)),
    "conv3d.padding": lambda: F.conv3d(_x(1, 2, 4, 4, 4), _x(3, 2, 3, 3, 3), padding="same"),
    "conv_transpose1d": lambda: F.conv_transpose1d(_x(1, 2, 5), _x(2, 3, 3)),
    "conv_transpose2d.input": lambda: F.conv_transpose2d(_x(1, 2, 4, 4), _x(2, 3, 3, 3)),
    "conv_transpose3d.input": lambda: F.conv_transpose3d(_x(1, 2, 3, 3, 3), _x(2, 3, 2, 2, 2)),
    "conv_tbc": lambda: aten.conv_tbc(_x(6, 1, 2), _x(3, 2, 4), _x(4)),
    "convolution": lambda: aten.convolution(_x(1, 2, 6), _x(3, 2, 3), None, [1], [0], [1], False, [0], 1),
    "_convolution": lambda: aten._convolution(
        _x(1, 2, 6), _x(3, 2, 3), None, [1], [0], [1], False, [0], 1, False, False, True, True
    ),
    "_convolution.deprecated": lambda: aten._convolution.deprecated(
        _x(1, 2, 6), _x(3, 2, 3), None, [1], [0], [1], False, [0], 1, False, False, True
    ),
    "prelu": lambda: F.prelu(_x(3, 4), torch.full((1,), 0.3)),
    "scaled_dot_product_attention": lambda: F.scaled_dot_product_attention(
        _x(1, 2, 4, 8), _x(1, 2, 4, 8), _x(1, 2, 4, 8)
    ),
    "lstm_cell": lambda: aten.lstm_cell(_x(3, 5), [_x(3, 4), _x(3, 4)], _x(16, 5), _x(16, 4))[0],
    "gru_cell": lambda: aten.gru_cell(_x(3, 5), _x(3, 4), _x(12, 5), _x(12, 4)),
    "rnn_tanh_cell": lambda: aten.rnn_tanh_cell(_x(3, 5), _x(3, 4), _x(4, 5), _x(4, 4)),
    "rnn_relu_cell": lambda: aten.rnn_relu_cell(_x(3, 5), _x(3, 4), _x(4, 5), _x(4, 4)),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_lowp_op_is_rounded_under_emulated_fp16(name):
    torch.manual_seed(0)
    with mpx.get_backend("cpu").autocast("fp16-mixed"):
        out = SAMPLES[name]()
    torch.manual_seed(0)
    reference = SAMPLES[name]()
    assert out.dtype == torch.float32 and _on_grid(out) and not _on_grid(reference)


def test_every_lowp_op_reachable_from_python_has_a_sample():
    """The lowp ops without a sample are internal (cuDNN, oneDNN RNN layer, fused cells, flash attention)."""
    internal = {
        "mkldnn_rnn_layer",
        "_native_multi_head_attention",
        "cudnn_convolution",
        "cudnn_convolution_transpose",
        "_thnn_fused_lstm_cell",
        "_thnn_fused_gru_cell",
        "_scaled_dot_product_flash_attention",
        "mkldnn_reorder_linear_weight",
    }
    names = {n.removeprefix("aten::") for n in autocast_lists.LOWP}
    assert sorted(names - set(SAMPLES) - internal) == []


def test_a_native_autocast_gives_torch_its_kernels_back_when_no_emulation_runs():
    from mpx.backends.cpu.autocast import KERNELS

    x, w = torch.randn(4, 8), torch.randn(3, 8)
    with mpx.get_backend("cpu").autocast("fp16-mixed"):
        torch.nn.functional.linear(x, w)
    assert KERNELS.library is not None and KERNELS.users == 0
    with mpx.get_backend("cpu", native=True).autocast("bf16-mixed"):
        assert KERNELS.library is None  # plain torch kernels: no per-op cost for native mixed precision
        assert torch.nn.functional.linear(x, w).dtype == torch.bfloat16
