"""Property tests over random sequences of finite / non-finite gradient sets."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mpx

overflow_patterns = st.lists(st.booleans(), min_size=1, max_size=40)
bad_values = st.sampled_from([math.inf, -math.inf, math.nan])


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().view(torch.int16 if t.element_size() == 2 else torch.int32)


@settings(max_examples=40, deadline=None)
@given(pattern=overflow_patterns, interval=st.integers(1, 4))
def test_neutral_scaler_reproduces_grad_scaler_sequence(pattern, interval):
    ours = mpx.DynamicLossScaler(init_scale=2.0**10, growth_interval=interval, min_scale=0.0, max_scale=math.inf)
    reference = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=interval)
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([param], lr=0.0)
    for overflow in pattern:
        param.grad = torch.full((3,), math.inf if overflow else 1.0)
        reference.scale(torch.tensor(1.0))
        reference.step(optimizer)
        reference.update()
        ours.update(ours.unscale_([torch.full((3,), math.inf if overflow else 1.0)]))
        assert float(ours.loss_scale) == reference.get_scale()


@settings(max_examples=40, deadline=None)
@given(pattern=overflow_patterns, hysteresis=st.integers(1, 3), interval=st.integers(1, 4))
def test_scale_stays_within_min_and_max(pattern, hysteresis, interval):
    scaler = mpx.DynamicLossScaler(
        init_scale=8.0, min_scale=2.0, max_scale=64.0, hysteresis=hysteresis, growth_interval=interval
    )
    for overflow in pattern:
        scaler.update(torch.tensor([float(overflow)]))
        assert 2.0 <= float(scaler.loss_scale) <= 64.0


@settings(max_examples=25, deadline=None)
@given(
    pattern=overflow_patterns,
    seed=st.integers(0, 2**16),
    bad=bad_values,
    optimizer_name=st.sampled_from(["adam", "adam-bf16-moment", "adamw", "fused-adam", "sgd", "rmsprop"]),
)
def test_masked_step_invariants(pattern, seed, bad, optimizer_name):
    """fp16 model, fp32 masters: masters stay finite; a skipped step changes no bit of masters or state."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3).half()
    optimizer = {
        "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
        "adam-bf16-moment": lambda p: torch.optim.Adam(p, lr=1e-2),
        "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
        "fused-adam": lambda p: torch.optim.Adam(p, lr=1e-2, fused=True),
        "sgd": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, nesterov=True),
        "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-2),
    }[optimizer_name](model.parameters())
    formats = mpx.LEAN_ADAM if optimizer_name == "adam-bf16-moment" else mpx.StateFormats()
    mp = mpx.MixedPrecision(
        model,
        optimizer,
        policy="fp16-pure",
        state_formats=formats,
        loss_scale=mpx.DynamicLossScaler(init_scale=2.0**4, growth_interval=2),
    )
    generator = torch.Generator().manual_seed(seed)
    for overflow in pattern:
        masters = [_bits(m) for m in mp.master_weights.masters]
        state = {id(p): {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()}
        for param in model.parameters():
            grad = torch.randn(param.shape, generator=generator).half()
            if overflow:
                grad.view(-1)[0] = bad
            param.grad = grad
        result = mp.step()
        assert bool(result.skipped) == overflow
        for master in mp.master_weights.masters:
            assert torch.isfinite(master).all()
        if overflow:
            assert all(torch.equal(_bits(m), b) for m, b in zip(mp.master_weights.masters, masters, strict=True))
            for param, saved in ((p, state.get(id(p), {})) for p in optimizer.state):
                for key, value in optimizer.state[param].items():
                    before = saved.get(key, torch.zeros_like(value))
                    assert torch.equal(value, before), (optimizer_name, key)
        mp.zero_grad()
