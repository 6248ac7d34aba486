"""FSDP2 models under MixedPrecision in a 1-rank gloo group inside the test process: what is refused, what runs."""

import socket
import warnings

import pytest
import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

import mpx
from mpx.distributed.fsdp import local_tensors, sharding_mesh


@pytest.fixture(scope="module")
def one_rank():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MASTER_ADDR", "127.0.0.1")
        patch.setenv("MASTER_PORT", str(port))
        dist.init_process_group("gloo", rank=0, world_size=1)
        yield
        dist.destroy_process_group()


def _sharded(precision="bf16-mixed", dtype=torch.float32):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 2)).to(dtype)
    return fully_shard(model, mp_policy=mpx.policy(precision).fsdp_mixed_precision())


def test_low_precision_sharded_parameters_are_refused(one_rank):
    model = _sharded(dtype=torch.float16)
    with pytest.raises(mpx.PolicyError, match=r"keep them fp32 and pass mp_policy=mpx.policy\('bf16-mixed'\)"):
        mpx.MixedPrecision(model, torch.optim.Adam(model.parameters()), policy="bf16-mixed")


def test_a_pure_policy_on_a_sharded_model_is_refused(one_rank):
    model = _sharded()
    with pytest.raises(mpx.PolicyError, match="fp32 master weights"):
        mpx.MixedPrecision(model, torch.optim.Adam(model.parameters()), policy="fp16-pure")


def test_a_sharded_step_works_on_local_shards_and_all_reduces_over_the_mesh(one_rank):
    model = _sharded("fp16-mixed")
    trainer = mpx.MixedPrecision(model, torch.optim.Adam(model.parameters(), lr=1e-2), policy="fp16-mixed")
    assert trainer.mesh is sharding_mesh(model) is not None
    assert trainer.process_group is trainer.mesh.get_group()
    before = [p.full_tensor().clone() for p in model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no implicit DTensor replication of the scale or found_inf
        trainer.zero_grad()
        with trainer.autocast():
            out = model(torch.randn(4, 8))
        trainer.backward(mpx.mse_loss(out, torch.zeros_like(out)))
        assert not trainer.step().was_skipped
    assert all(not torch.equal(a, p.full_tensor()) for a, p in zip(before, model.parameters(), strict=True))
    locals_ = local_tensors(model.parameters())
    assert all(type(t) is torch.Tensor for t in locals_)
    assert locals_[0].data_ptr() == next(model.parameters())._local_tensor.data_ptr()  # views, not copies


def test_gradient_clipping_works_on_sharded_gradients(one_rank):
    model = _sharded("bf16-mixed")
    trainer = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), policy="bf16-mixed")
    trainer.zero_grad()
    with trainer.autocast():
        out = model(torch.randn(4, 8))
    trainer.backward(mpx.mse_loss(out, torch.full_like(out, 10.0)))
    norm = trainer.clip_grad_norm_(0.5)
    full = torch.stack([p.grad.full_tensor().norm() for p in model.parameters()]).norm()
    assert float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm) > 0.5
    assert full.item() == pytest.approx(0.5, rel=1e-4)
    assert not trainer.step().was_skipped
