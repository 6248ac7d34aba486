"""The onnxrt backend's training protocol runs as EP graphs and computes what the cpu backend (torch) computes:
unscale + check and cast back bit for bit, SGD bit for bit, AdamW's moments bit for bit and its weights within
the 2 ULPs torch's not correctly rounded fp32 sqrt costs; other optimizers step with torch on the host."""

from __future__ import annotations

import pytest
import torch

import mpx
from mpx.training.state_formats import FP32_STATE, LEAN_ADAM

FP32 = mpx.format("fp32")


@pytest.fixture(scope="module")
def onnxrt():
    return mpx.get_backend("onnxrt")


@pytest.fixture(scope="module")
def cpu():
    return mpx.get_backend("cpu")


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous().view(torch.int32 if tensor.element_size() == 4 else torch.int16)


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and torch.equal(_bits(a), _bits(b))


def _grads(seed: int, special: bool = False) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    grads = [torch.randn(shape, generator=generator) * 2.0**12 for shape in ((16, 8), (8,), (3, 5, 7), ())]
    if special:
        grads[2][1, 2, 3] = float("nan")
        grads[0][0, 0] = float("-inf")
    return grads


def _unscale(backend, grads, saturation_limit=None):
    grads = [g.clone() for g in grads]
    found_inf = torch.zeros(1)
    backend.unscale_and_check_(grads, found_inf, torch.tensor([2.0**-12]), saturation_limit)
    return grads, found_inf


@pytest.mark.parametrize("special", [False, True])
def test_unscale_and_check_match_the_cpu_backend_bit_for_bit(onnxrt, cpu, special):
    got, got_flag = _unscale(onnxrt, _grads(0, special))
    want, want_flag = _unscale(cpu, _grads(0, special))
    assert float(got_flag) == float(want_flag) == float(special)
    assert all(_same_bits(g, w) for g, w in zip(got, want, strict=True))


def test_unscale_and_check_runs_on_the_ep_not_on_the_host(onnxrt, monkeypatch):
    import mpx.training.overflow as host

    monkeypatch.setattr(host, "unscale_and_check_", lambda *args: pytest.fail("the host path ran"))
    _, flag = _unscale(onnxrt, _grads(1, special=True))
    assert float(flag) == 1.0
    graphs = {p["protocol"]: p for p in onnxrt.placement() if p["kind"] == "protocol"}
    unscale = graphs["unscale_check"]
    assert unscale["status"] == "native" and unscale["nodes"] == unscale["nodes_on_provider"] > 0


def test_saturated_gradients_count_as_overflow(onnxrt, cpu):
    """On an EP that clamps overflow to max, |grad| reaching the limit is the only overflow sign left."""
    grads = _grads(2)
    grads[1][3] = 65504.0
    got, got_flag = _unscale(onnxrt, grads, saturation_limit=65504.0)
    want, want_flag = _unscale(cpu, grads, saturation_limit=65504.0)
    assert float(got_flag) == float(want_flag) == 1.0
    assert all(_same_bits(g, w) for g, w in zip(got, want, strict=True))
    assert float(_unscale(onnxrt, _grads(2), saturation_limit=65504.0)[1]) == 0.0


def _stepped(backend, make_optimizer, steps: int, skip_at: int = -1, state_formats=FP32_STATE):
    """A few masked steps of a fresh optimizer on fixed parameters and gradients: (params, optimizer)."""
    generator = torch.Generator().manual_seed(5)
    params = [torch.randn(shape, generator=generator) for shape in ((16, 8), (8,), (4, 3, 2))]
    optimizer = make_optimizer(params)
    for step in range(steps):
        grads = {p: torch.randn(p.shape, generator=generator) for p in params}
        backend.masked_step(optimizer, grads, torch.tensor(step == skip_at), state_formats)
    return params, optimizer


SGD = [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4),
    lambda p: torch.optim.SGD(p, lr=0.05),
]


@pytest.mark.parametrize("make", SGD, ids=["momentum-decay", "plain"])
def test_sgd_master_updates_match_torch_bit_for_bit(onnxrt, cpu, make):
    got, got_optimizer = _stepped(onnxrt, make, steps=5)
    want, want_optimizer = _stepped(cpu, make, steps=5)
    assert all(_same_bits(g, w) for g, w in zip(got, want, strict=True))
    for g, w in zip(got, want, strict=True):
        got_buffer, want_buffer = (
            got_optimizer.state[g].get("momentum_buffer"),
            want_optimizer.state[w].get("momentum_buffer"),
        )
        assert (got_buffer is None) == (want_buffer is None)
        assert got_buffer is None or _same_bits(got_buffer, want_buffer)


@pytest.mark.parametrize("kind", [torch.optim.AdamW, torch.optim.Adam])
def test_adam_moments_match_torch_bit_for_bit_and_weights_within_two_ulps(onnxrt, cpu, kind):
    """Each of 5 steps from torch's own state: the graph's sqrt is correctly rounded, torch's CPU fp32 sqrt
    is not, so a weight may differ by <= 2 ULPs (of the update's largest operand); moments and step agree."""
    generator = torch.Generator().manual_seed(9)
    want = [torch.randn(shape, generator=generator) for shape in ((16, 8), (8,), (4, 3, 2))]
    got = [w.clone() for w in want]
    decay = 0.01 if kind is torch.optim.AdamW else 0.0
    got_optimizer, want_optimizer = kind(got, lr=1e-2, weight_decay=decay), kind(want, lr=1e-2, weight_decay=decay)
    for _ in range(5):
        grads = [torch.randn(w.shape, generator=generator) for w in want]
        before = [w.clone() for w in want]
        onnxrt.masked_step(got_optimizer, dict(zip(got, grads, strict=True)), torch.tensor(False))
        cpu.masked_step(want_optimizer, dict(zip(want, grads, strict=True)), torch.tensor(False))
        for g, w, old in zip(got, want, before, strict=True):
            got_state, want_state = got_optimizer.state[g], want_optimizer.state[w]
            assert set(got_state) == set(want_state) and _same_bits(got_state["step"], want_state["step"])
            assert _same_bits(got_state["exp_avg"], want_state["exp_avg"])
            assert _same_bits(got_state["exp_avg_sq"], want_state["exp_avg_sq"])
            magnitude = torch.maximum(torch.maximum(w.abs(), old.abs()), (w - old).abs())
            assert float(((g.double() - w.double()).abs() / FP32.ulp(magnitude)).max()) <= 2.0
            g.copy_(w)  # the next step starts from torch's own weights again


@pytest.mark.parametrize("make", [SGD[0], lambda p: torch.optim.AdamW(p, lr=1e-2)], ids=["sgd", "adamw"])
def test_a_skipped_step_leaves_masters_and_moments_bit_identical(onnxrt, make):
    stepped, stepped_optimizer = _stepped(onnxrt, make, steps=3)
    skipped, skipped_optimizer = _stepped(onnxrt, make, steps=4, skip_at=3)
    assert all(_same_bits(a, b) for a, b in zip(stepped, skipped, strict=True))
    for a, b in zip(stepped, skipped, strict=True):
        for key, value in stepped_optimizer.state[a].items():
            assert _same_bits(value, skipped_optimizer.state[b][key]), key


def test_master_updates_run_on_the_ep(onnxrt, monkeypatch):
    import mpx.training.optimizer_step as host

    monkeypatch.setattr(host, "masked_step", lambda *args: pytest.fail("the host step ran"))
    _stepped(onnxrt, SGD[0], steps=1)
    _stepped(onnxrt, lambda p: torch.optim.AdamW(p), steps=1)
    assert {"sgd", "adamw"} <= {p.get("protocol") for p in onnxrt.placement()}


@pytest.mark.parametrize(
    "make,state_formats",
    [
        (lambda p: torch.optim.RMSprop(p, lr=1e-2), FP32_STATE),  # no EP graph: torch's step on the host
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True), FP32_STATE),
        (lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.1), FP32_STATE),  # L2 decay, not AdamW's
        (lambda p: torch.optim.AdamW(p, lr=1e-2), LEAN_ADAM),  # bf16 moments
    ],
    ids=["rmsprop", "nesterov", "adam-l2", "lean-adamw"],
)
def test_what_the_ep_graphs_do_not_compute_steps_on_the_host_as_the_cpu_backend_does(onnxrt, cpu, make, state_formats):
    got, got_optimizer = _stepped(onnxrt, make, steps=3, skip_at=1, state_formats=state_formats)
    want, want_optimizer = _stepped(cpu, make, steps=3, skip_at=1, state_formats=state_formats)
    assert all(_same_bits(g, w) for g, w in zip(got, want, strict=True))
    for g, w in zip(got, want, strict=True):
        for key, value in want_optimizer.state[w].items():
            assert torch.equal(got_optimizer.state[g][key], value), key


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cast_back_matches_the_cpu_backend_bit_for_bit(onnxrt, cpu, dtype):
    fmt = mpx.format(dtype)
    generator = torch.Generator().manual_seed(7)
    master = torch.randn(64, 9, generator=generator) * 300
    master.view(-1)[:4] = torch.tensor([fmt.max * 2, -float("inf"), float("nan"), fmt.min_subnormal / 2])
    got, want = torch.empty(master.shape, dtype=dtype), torch.empty(master.shape, dtype=dtype)
    onnxrt.cast_back([(got, master)])
    cpu.cast_back([(want, master)])
    assert _same_bits(got, want)


@pytest.mark.parametrize("make", [lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1)], ids=["adamw"])
def test_one_flat_adamw_graph_equals_a_graph_per_tensor_bit_for_bit(onnxrt, monkeypatch, make):
    """Tensors sharing a step count are updated end to end by one graph: the same numbers, skips included."""
    from mpx.backends.onnxrt.training import protocol_flat

    flat, flat_optimizer = _stepped(onnxrt, make, steps=4, skip_at=2)
    assert any(key[0] == "adamw" and len(key[1]) == 1 for key in onnxrt.protocol._sessions)
    monkeypatch.setattr(protocol_flat, "same_step", lambda states, params: False)
    each, each_optimizer = _stepped(onnxrt, make, steps=4, skip_at=2)
    assert all(_same_bits(a, b) for a, b in zip(flat, each, strict=True))
    for a, b in zip(flat_optimizer.state.values(), each_optimizer.state.values(), strict=True):
        assert list(a) == list(b) == ["step", "exp_avg", "exp_avg_sq"]
        assert all(_same_bits(a[key], b[key]) for key in a)
    assert float(flat_optimizer.state[flat[0]]["step"]) == 3.0  # 4 steps, one skipped
