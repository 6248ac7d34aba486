"""The Backend contract: run() validates once and calls _run(); training is a separate role."""

from __future__ import annotations

import doctest

import pytest
import torch

import mpx
from mpx.backends.cpu.backend import CpuBackend
from mpx.plugins import hookspec, is_builtin, resolve

ADD = mpx.get_op("add")
BF16 = mpx.format("bf16")


def stored(*values: list[float]) -> tuple[torch.Tensor, ...]:
    return ADD.to_storage(BF16, tuple(torch.tensor(v, dtype=torch.float64) for v in values))


class Counting(mpx.Backend):
    """Adds exactly, counts support() and _run() calls."""

    name = "counting"

    def __init__(self) -> None:
        self.support_calls = 0
        self.run_calls = 0

    def support(self, op, fmt, pass_="forward", shapes=None):
        self.support_calls += 1
        self.shapes = shapes
        return super().support(op, fmt, pass_, shapes)

    def _run(self, op, fmt, inputs, pass_, grad_outputs):
        self.run_calls += 1
        return (fmt.round(inputs[0].double() + inputs[1].double()).to(fmt.torch_dtype),)


def test_run_checks_a_call_once_then_goes_straight_to_the_backend() -> None:
    backend = Counting()
    x, y = stored([1.0, 2.0], [3.0, 4.0])
    assert backend.run(ADD, BF16, (x, y))[0].tolist() == [4.0, 6.0]
    backend.run(ADD, BF16, (x, y))
    assert (backend.support_calls, backend.run_calls) == (1, 2)
    assert backend.shapes == ((2,), (2,))


def test_run_accepts_names_for_op_and_format() -> None:
    x, y = stored([1.0], [2.0])
    assert Counting().run("add", "bf16", (x, y))[0].item() == 3.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda b, x, y: b.run(ADD, BF16, (x,)), "takes 2 inputs"),
        (lambda b, x, y: b.run(ADD, BF16, (x.float(), y)), "must be stored as torch.bfloat16"),
        (lambda b, x, y: b.run(ADD, BF16, (x, [1.0])), "must be a torch.Tensor"),
        (lambda b, x, y: b.run(ADD, BF16, (x, y), "sideways"), "'forward' or 'backward'"),
        (lambda b, x, y: b.run(ADD, BF16, (x, y), "backward"), "one gradient per output"),
        (lambda b, x, y: b.run(ADD, mpx.format("fp8_e4m3"), (x, y)), "cannot run add forward in fp8_e4m3"),
    ],
)
def test_run_rejects_a_bad_call_before_the_backend_sees_it(call, message) -> None:
    backend = Counting()
    x, y = stored([1.0], [2.0])
    with pytest.raises(mpx.OpError, match=message):
        call(backend, x, y)
    assert backend.run_calls == 0


def test_a_backend_that_does_not_implement_run_says_so() -> None:
    class Empty(mpx.Backend):
        name = "empty"

    with pytest.raises(mpx.OpError, match="must implement _run"):
        Empty().run(ADD, BF16, stored([1.0], [2.0]))


def test_overriding_run_instead_of_run_warns() -> None:
    with pytest.warns(DeprecationWarning, match="override _run instead"):

        class Old(mpx.Backend):
            def run(self, op, fmt, inputs, pass_="forward", grad_outputs=None):
                return inputs


def test_an_op_only_backend_has_no_training_role() -> None:
    assert not hasattr(mpx.Backend, "autocast")
    assert isinstance(CpuBackend(), mpx.TrainingBackend)
    model = torch.nn.Linear(2, 2)
    with pytest.raises(mpx.BackendUnavailableError, match="runs ops but does not train"):
        mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), backend=Counting())


def test_the_default_training_protocol_is_torch_autocast_on_the_device() -> None:
    class Plain(mpx.TrainingBackend):
        name = "plain"

    with Plain().autocast("bf16-mixed"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    with Plain().autocast("fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(mpx.PolicyError, match="no fp8 autocast"):
        Plain().check_policy(mpx.policy("fp8-hybrid"))


def test_resolve_and_is_builtin_are_the_public_registry_questions() -> None:
    assert resolve("cpu") is None
    assert "without CUDA" in (resolve("cuda") or "") or resolve("cuda") is None
    assert is_builtin("cpu") and is_builtin("onnxrt:CPUExecutionProvider")
    with pytest.raises(mpx.BackendNotFoundError, match="did you mean 'cpu'"):
        resolve("cpuu")


def test_the_vendor_example_in_the_hookspec_docstring_runs() -> None:
    failures, tried = doctest.testmod(hookspec, raise_on_error=False, report=True)
    assert tried > 5 and failures == 0
