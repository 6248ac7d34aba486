"""Checkpoint contents: every RNG a run draws from, extras that load safely, no unpickling unless trusted."""

import pickle
import random

import numpy as np
import pytest
import torch

import mpx
from mpx.training import rng


def _setup():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    return model, mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), policy="bf16-mixed")


def _draws():
    return torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], np.random.randn(), random.gauss(0, 1)


def test_numpy_and_python_rng_states_round_trip(tmp_path):
    model, trainer = _setup()
    np.random.seed(7)
    random.seed(7)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    random.gauss(0, 1)  # and in Python's
    mpx.save_checkpoint(tmp_path / "run.pt", model, trainer, step=3)
    expected = _draws()
    np.random.seed(99)
    random.seed(99)
    torch.manual_seed(99)
    mpx.load_checkpoint(tmp_path / "run.pt", model, trainer)
    for got, want in zip(_draws(), expected, strict=True):
        assert np.array_equal(np.asarray(got), np.asarray(want))


def test_a_numpy_rng_extra_fails_at_save_naming_the_key(tmp_path):
    model, trainer = _setup()
    with pytest.raises(mpx.CheckpointError, match=r"extra 'numpy_rng'\[1\]: a numpy.ndarray would not load safely"):
        mpx.save_checkpoint(tmp_path / "run.pt", model, trainer, numpy_rng=np.random.get_state())
    assert not (tmp_path / "run.pt").exists()  # nothing written that cannot be read back


def test_an_object_nested_in_an_extra_is_named_with_its_path(tmp_path):
    model, trainer = _setup()

    class Sampler:
        pass

    with pytest.raises(mpx.CheckpointError, match=r"extra 'data'\['sampler'\]: a .*Sampler would not load"):
        mpx.save_checkpoint(tmp_path / "run.pt", model, trainer, data={"epoch": 2, "sampler": Sampler()})


def test_safe_extras_round_trip(tmp_path):
    model, trainer = _setup()
    extra = {"epoch": 2, "history": [0.5, 0.25], "ids": torch.arange(3), "names": ("a", "b"), "dtype": torch.bfloat16}
    mpx.save_checkpoint(tmp_path / "run.pt", model, trainer, step=1, **extra)
    payload = mpx.load_checkpoint(tmp_path / "run.pt", model, trainer)
    assert payload["extra"]["history"] == [0.5, 0.25] and payload["extra"]["dtype"] is torch.bfloat16
    assert torch.equal(payload["extra"]["ids"], torch.arange(3))


def _foreign_checkpoint(path, model):
    """An mpx-shaped file that also carries a pickled object (a file from elsewhere, or an older mpx)."""
    payload = {"schema": "mpx-checkpoint/1", "step": 0, "model": model.state_dict(), "trainer": None}
    payload.update(rng=torch.get_rng_state(), extra={"numpy_rng": np.random.get_state()})
    torch.save(payload, path)


def test_loading_never_unpickles_objects_unless_trusted(tmp_path):
    model, _ = _setup()
    _foreign_checkpoint(tmp_path / "old.pt", model)
    with pytest.raises(mpx.CheckpointError, match="weights_only.*trusted=True") as caught:
        mpx.load_checkpoint(tmp_path / "old.pt", model)
    assert "not an mpx checkpoint" not in str(caught.value)
    payload = mpx.load_checkpoint(tmp_path / "old.pt", model, trusted=True)
    assert payload["extra"]["numpy_rng"][0] == "MT19937"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_bomb_is_refused_without_running_it(tmp_path):
    class Bomb:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    path = tmp_path / "bomb.pt"
    path.write_bytes(pickle.dumps(Bomb()))
    model, _ = _setup()
    with pytest.raises(mpx.CheckpointError):
        mpx.load_checkpoint(path, model)
    assert not (tmp_path / "pwned").exists()


def test_rng_capture_is_tensors_only():
    state = rng.capture()
    assert {"torch", "numpy.keys", "python.words"} <= set(state)
    assert all(type(v) is torch.Tensor for v in state.values())
