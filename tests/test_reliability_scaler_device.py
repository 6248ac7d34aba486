"""Loss-scaler settings and device names (issue 16, point 7): each bad value is an mpx error that names the
setting and its valid range; a device that does not exist is a clear error (one line, exit 2 on the CLI)."""

from __future__ import annotations

import math

import pytest
import torch

import mpx
from mpx.cli import main
from mpx.errors import LossScaleError
from mpx.training.loss_scaling import DynamicLossScaler, StaticLossScaler

INF, NAN = math.inf, math.nan


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"growth_factor": INF}, "growth_factor must be a number in (1, 3.403e+38], got inf"),
        ({"growth_factor": 1e300}, "growth_factor must be a number in (1, 3.403e+38], got 1e+300"),
        ({"growth_factor": NAN}, "growth_factor must be a number in (1, 3.403e+38], got nan"),
        ({"growth_factor": 0.5}, "growth_factor must be a number in (1, 3.403e+38]"),
        ({"growth_factor": 10**400}, "growth_factor must be a number in (1, 3.403e+38]"),
        ({"backoff_factor": 1.0}, "backoff_factor must be a number in (0, 1), got 1.0"),
        ({"backoff_factor": -0.5}, "backoff_factor must be a number in (0, 1), got -0.5"),
        ({"backoff_factor": NAN}, "backoff_factor must be a number in (0, 1), got nan"),
        ({"init_scale": 2.0**200, "max_scale": INF}, "init_scale must be a positive finite number that fp32 holds"),
        ({"init_scale": 1e-50, "min_scale": 0}, "init_scale must be a positive finite number that fp32 holds"),
        ({"init_scale": NAN}, "init_scale must be a positive finite number"),
        ({"init_scale": -1.0}, "init_scale must be a positive finite number"),
        ({"growth_interval": 0}, "growth_interval must be an integer >= 1, got 0"),
        ({"growth_interval": -5}, "growth_interval must be an integer >= 1, got -5"),
    ],
)
def test_a_bad_dynamic_scaler_setting_names_itself_and_its_range(options, message):
    with pytest.raises(LossScaleError) as raised:
        DynamicLossScaler(**options)
    assert message in str(raised.value)


@pytest.mark.parametrize("scale", [2.0**200, 1e-50, INF, NAN, -4.0, 10**400])
def test_a_static_scale_fp32_cannot_hold_is_refused(scale):
    with pytest.raises(LossScaleError, match="fp32 holds"):
        StaticLossScaler(scale)


def test_mixed_precision_refuses_a_scale_fp32_cannot_hold():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(LossScaleError, match="fp32 holds"):
        mpx.MixedPrecision(model, optimizer, policy="fp16-mixed", loss_scale=2.0**200)


def test_the_largest_scale_fp32_holds_still_works():
    scaler = DynamicLossScaler(init_scale=2.0**127, max_scale=INF)
    assert float(scaler.loss_scale) == 2.0**127


@pytest.mark.parametrize(
    ("device", "message"),
    [("bogus", "device 'bogus' is not a device name"), ("cuda:-1", "is not a device name")],
)
def test_a_scaler_on_a_device_name_torch_does_not_parse(device, message):
    with pytest.raises(LossScaleError, match=message):
        DynamicLossScaler(device=device)


def test_a_scaler_on_a_gpu_that_is_not_there():
    missing = f"cuda:{torch.cuda.device_count() + 7}"
    with pytest.raises(LossScaleError, match=f"device '{missing}' does not exist here"):
        DynamicLossScaler(device=missing)


def test_a_backend_on_a_gpu_that_is_not_there():
    missing = f"cuda:{torch.cuda.device_count() + 7}"
    with pytest.raises(mpx.BackendUnavailableError, match=f"backend '{missing}' is not available"):
        mpx.get_backend(missing)


def test_the_cpu_backend_with_a_device_option_is_a_clear_error():
    with pytest.raises(mpx.BackendUnavailableError, match=r"rejected its options \['device'\]"):
        mpx.get_backend("cpu", device="cuda:3")


@pytest.mark.parametrize("backend", ["cuda:99", "cpu:3", "nosuch:1"])
def test_train_on_a_device_that_does_not_exist_is_one_line_and_exit_2(capsys, backend):
    assert main(["train", "--backend", backend, "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and backend.partition(":")[0] in err
