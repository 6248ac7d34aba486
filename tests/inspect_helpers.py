"""Small models with one numerics problem each, for the inspector's tests, its screenshot and its README example."""

import torch

import mpx


def overflowing_model():
    """Layer '1' makes activations near 1e5 (past fp16's 65504, fine in bf16); LayerNorm '2' brings them back."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(16, 32),
        torch.nn.Linear(32, 32),
        torch.nn.LayerNorm(32),
        torch.nn.GELU(),
        torch.nn.Linear(32, 4),
    )
    with torch.no_grad():
        model[1].weight.mul_(1e5)
    return model


def tiny_gradient_model():
    """An MLP whose loss is scaled by 2^-24: its gradients sit below fp16's smallest subnormal at loss scale 1."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(32, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1)
    )
    generator = torch.Generator().manual_seed(2)
    x, y = torch.randn(256, 32, generator=generator), torch.randn(256, 1, generator=generator)
    return model, x, y, 2.0**-14


def train_plain(model, x, y, steps=3, loss_factor=1.0, lr=1e-3):
    """fp32 SGD steps (the loop a standalone mpx.inspect watches)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        (mpx.mse_loss(model(x), y) * loss_factor).backward()
        optimizer.step()


def train_mixed(model, x, y, steps, policy="fp16-mixed", loss_factor=1.0, lr=1e-3, **options):
    """MixedPrecision SGD steps on the emulated cpu backend; returns the trainer."""
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=lr), "cpu", policy, **options)
    for _ in range(steps):
        mp.zero_grad()
        with mp.autocast():
            out = model(x)
        mp.backward(mpx.mse_loss(out, y) * loss_factor)
        mp.step()
    return mp


def overflowing_gradient_model():
    """Targets offset by 3: at fp16's default loss scale (2^16) the head's weight gradient (a sum over the batch
    of error x activation) overflows fp16 before any other gradient does; the scale backs off until it fits."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(16, 256), torch.nn.GELU(), torch.nn.Linear(256, 1))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(512, 16, generator=generator) + 1
    return model, x, torch.randn(512, 1, generator=generator) + 3
