"""Loading a state or checkpoint (issue 16, point 2): everything is checked first, all or nothing, mpx errors."""

import copy

import pytest
import torch

import mpx


def _model(hidden=16, dtype=torch.float16, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 1)).to(dtype)


def _setup(optimizer="adam", hidden=16, seed=0, fused=False):
    model = _model(hidden, seed=seed)
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-2, fused=fused or None)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    scaler = mpx.DynamicLossScaler(init_scale=2.0**10, growth_interval=3)
    return model, mpx.MixedPrecision(model, opt, policy="fp16-pure", loss_scale=scaler)


def _train(model, trainer, steps=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 8, generator=generator)
        trainer.zero_grad()
        with trainer.autocast():
            out = model(x.half())
        trainer.backward(mpx.mse_loss(out, x[:, :1]))
        trainer.step()


def _state(trainer):
    """A copy to craft from: torch's optimizer.state_dict() shares the live per-parameter state dicts."""
    return copy.deepcopy(trainer.state_dict())


def _tensors(model, trainer):
    """Every tensor and number a load could change: weights, masters, optimizer state, scaler, skipped steps."""
    optimizer = copy.deepcopy(trainer.optimizer.state_dict())
    return {
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "masters": [m.clone() for m in trainer.master_weights.masters],
        "optimizer_state": optimizer["state"],
        "param_groups": optimizer["param_groups"],
        "scaler": trainer.scaler.state_dict(),
        "skipped": trainer.skipped_steps.clone(),
    }


def _equal(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.fixture
def trained():
    model, trainer = _setup()
    _train(model, trainer)
    return model, trainer


def _refused(model, trainer, state, match, error=mpx.MasterWeightError):
    before = _tensors(model, trainer)
    with pytest.raises(error, match=match):
        trainer.load_state_dict(state)
    assert _equal(before, _tensors(model, trainer))


def test_adam_moments_smaller_than_the_parameters_are_refused_before_the_fused_kernel_sees_them():
    model, trainer = _setup(fused=True)
    _train(model, trainer)
    state = _state(trainer)
    state["optimizer"]["state"][0]["exp_avg"] = torch.zeros(3)
    _refused(model, trainer, state, r"state\[0\]\['exp_avg'\]: expected tensor \(16, 8\) .*got tensor \(3,\)")
    _train(model, trainer, steps=1)  # the live state is intact: the fused step runs


@pytest.mark.parametrize("key", ["exp_avg", "exp_avg_sq"])
def test_a_moment_of_the_wrong_shape_or_kind_is_refused(trained, key):
    model, trainer = trained
    state = _state(trainer)
    state["optimizer"]["state"][0][key] = torch.zeros(8, 16)
    _refused(model, trainer, state, f"{key}.*expected tensor \\(16, 8\\)")
    state = _state(trainer)
    state["optimizer"]["state"][0][key] = torch.zeros(16, 8, dtype=torch.int64)
    _refused(model, trainer, state, key)


def test_a_missing_moment_or_a_bad_step_counter_is_refused(trained):
    model, trainer = trained
    state = _state(trainer)
    del state["optimizer"]["state"][2]["exp_avg_sq"]
    _refused(model, trainer, state, "lacks 'exp_avg_sq'")
    state = _state(trainer)
    state["optimizer"]["state"][2]["step"] = torch.zeros(5)
    _refused(model, trainer, state, "step")


def test_an_sgd_state_into_adam_is_refused(trained):
    model, trainer = trained
    sgd_model, sgd_trainer = _setup("sgd")
    _train(sgd_model, sgd_trainer)
    _refused(model, trainer, _state(sgd_trainer), "another optimizer")


def test_an_adam_state_into_sgd_is_refused():
    model, trainer = _setup("sgd")
    _train(model, trainer)
    adam_model, adam_trainer = _setup("adam")
    _train(adam_model, adam_trainer)
    _refused(model, trainer, _state(adam_trainer), "another optimizer")


def test_another_models_state_is_refused_without_touching_scaler_or_masters(trained):
    model, trainer = trained
    other_model, other = _setup(hidden=32, seed=3)
    _train(other_model, other, steps=5)
    _refused(model, trainer, _state(other), r"masters\[0\]: expected tensor \(16, 8\) float32, got tensor \(32, 8\)")


def test_a_good_scaler_with_a_bad_optimizer_state_changes_neither(trained):
    """Before: the scaler was loaded, then the optimizer raised a raw error."""
    model, trainer = trained
    state = _state(trainer)
    state["scaler"]["scale"] = 4.0
    state["optimizer"]["param_groups"][0]["params"] = state["optimizer"]["param_groups"][0]["params"][:2]
    _refused(model, trainer, state, r"param_groups\[0\]\['params'\]: expected 4 parameters, got 2")


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda s: s["masters"].pop(), "expected 4 fp32 master weights"),
        (lambda s: s["masters"].__setitem__(0, s["masters"][0].half()), r"masters\[0\]: .*float32, got .*float16"),
        (lambda s: s.__setitem__("skipped_steps", torch.zeros(2)), "skipped_steps"),
        (lambda s: s["scaler"].__setitem__("scale", -1.0), "scaler"),
        (lambda s: s["scaler"].__setitem__("_growth_tracker", "x"), "_growth_tracker"),
        (lambda s: s["optimizer"]["state"].__setitem__(99, {}), r"state\[99\]"),
        (lambda s: s["optimizer"]["param_groups"].append(s["optimizer"]["param_groups"][0]), "expected 1 groups"),
        (lambda s: s["optimizer"]["param_groups"][0].__setitem__("betas", 0.9), "betas"),
        (lambda s: s.pop("optimizer"), "lacks optimizer"),
    ],
)
def test_each_crafted_mismatch_is_named_and_changes_nothing(trained, change, match):
    model, trainer = trained
    state = _state(trainer)
    change(state)
    _refused(model, trainer, state, match)


def test_the_scaler_itself_validates_before_changing_anything():
    scaler = mpx.DynamicLossScaler(init_scale=2.0**10)
    before = scaler.state_dict()
    bad = dict(before, growth_factor=3.0, _growth_tracker="x")
    with pytest.raises(mpx.LossScaleError, match="_growth_tracker"):
        scaler.load_state_dict(bad)
    assert scaler.state_dict() == before


def test_a_matching_state_still_loads(trained):
    model, trainer = trained
    other_model, other = _setup(seed=7)
    other.load_state_dict(_state(trainer))
    assert _equal(_tensors(other_model, other), _tensors(model, trainer))


def _checkpoint_refused(path, model, trainer, match):
    before, rng = _tensors(model, trainer), torch.get_rng_state()
    with pytest.raises(mpx.CheckpointError, match=match):
        mpx.load_checkpoint(path, model, trainer)
    assert _equal(before, _tensors(model, trainer))
    assert torch.equal(rng, torch.get_rng_state())


def test_load_checkpoint_no_longer_overwrites_the_weights_before_raising(tmp_path, trained):
    """The model state fits, the trainer state (SGD) does not: before, the weights were loaded and then it raised."""
    model, trainer = trained
    sgd_model, sgd_trainer = _setup("sgd", seed=4)
    _train(sgd_model, sgd_trainer)
    mpx.save_checkpoint(tmp_path / "sgd.pt", sgd_model, sgd_trainer, step=2)
    torch.manual_seed(11)
    _checkpoint_refused(tmp_path / "sgd.pt", model, trainer, "sgd.pt does not fit: .*another optimizer")


def test_load_checkpoint_of_another_model_is_refused(tmp_path, trained):
    model, trainer = trained
    other_model, other = _setup(hidden=32)
    mpx.save_checkpoint(tmp_path / "other.pt", other_model, other)
    _checkpoint_refused(tmp_path / "other.pt", model, trainer, r"model\['0.weight'\]: expected tensor \(16, 8\)")


def test_load_checkpoint_names_a_dtype_missing_key_or_bad_rng(tmp_path, trained):
    model, trainer = trained
    path = tmp_path / "run.pt"
    mpx.save_checkpoint(path, model, trainer)
    payload = torch.load(path, weights_only=True)
    cases = [
        (lambda p: p["model"].__setitem__("0.weight", p["model"]["0.weight"].float()), "float16, got .*float32"),
        (lambda p: p["model"].pop("2.bias"), "lacks '2.bias'"),
        (lambda p: p["model"].__setitem__("3.weight", torch.zeros(1)), "unexpected key '3.weight'"),
        (lambda p: p.__setitem__("rng", torch.zeros(3)), "rng"),
        (lambda p: p["trainer"]["optimizer"]["state"][0].__setitem__("exp_avg", torch.zeros(2)), "exp_avg"),
    ]
    for change, match in cases:
        crafted = copy.deepcopy(payload)
        change(crafted)
        torch.save(crafted, path)
        _checkpoint_refused(path, model, trainer, match)


def test_load_checkpoint_without_trainer_checks_the_model_only(tmp_path, trained):
    model, trainer = trained
    mpx.save_checkpoint(tmp_path / "run.pt", model, trainer, step=3)
    fresh = _model(seed=9)
    assert mpx.load_checkpoint(tmp_path / "run.pt", fresh)["step"] == 3
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters(), strict=True))


def test_a_state_saved_with_an_lr_scheduler_loads_into_an_optimizer_without_one(trained):
    """Schedulers add keys such as initial_lr to the param groups: those are not another optimizer's."""
    model, trainer = trained
    torch.optim.lr_scheduler.OneCycleLR(trainer.optimizer, max_lr=0.1, total_steps=10)
    other_model, other = _setup(seed=7)
    other.load_state_dict(_state(trainer))
    assert other.optimizer.param_groups[0]["initial_lr"] == trainer.optimizer.param_groups[0]["initial_lr"]
