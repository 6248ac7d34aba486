"""Model cases on a backend that compiles models (onnxrt): the model runs as the backend prepares it, calls
that ran as torch code on the host are `fallback`, a recipe the backend refuses is `unsupported`."""

from __future__ import annotations

from typing import Any

import pytest

import mpx
from mpx.conformance.cases import parse_case_id
from mpx.conformance.runner import ReferenceCache, one_thread, run_case
from mpx.conformance.status import Status

CACHE = ReferenceCache()
CpuBackend = mpx.get_backend("cpu").__class__


def run(backend: mpx.Backend, case_id: str):
    with one_thread():
        return run_case(backend, parse_case_id(case_id), CACHE)


class HostFallback(CpuBackend):
    """A compiling backend whose compiler gave up: its placement reports each model call as eager."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared: list[Any] = []
        self.eager_runs = 0

    def prepare_model(self, model, policy):
        self.prepared.append(model)
        model.register_forward_hook(lambda *args: setattr(self, "eager_runs", self.eager_runs + 1))
        return model

    def placement(self) -> list[dict[str, Any]]:
        return [{"graph": "eager", "kind": "eager", "runs": self.eager_runs}] if self.eager_runs else []


@pytest.mark.parametrize("pass_", ["training", "inference"])
def test_model_calls_that_ran_as_torch_code_on_the_host_are_fallback_not_pass(pass_):
    backend = HostFallback()
    result = run(backend, f"model/mlp/fp32/{pass_}")
    assert backend.prepared, "the case must run the model as the backend prepares it"
    assert result.status == Status.FALLBACK
    assert "model calls ran as torch code on the host" in result.detail
    assert ("final loss" if pass_ == "training" else "relative error") in result.detail  # the numbers, kept


def test_the_same_case_passes_where_the_prepared_model_reports_no_eager_calls():
    class Compiled(HostFallback):
        def placement(self) -> list[dict[str, Any]]:
            return [{"graph": "forward 0", "kind": "forward", "runs": self.eager_runs}]

    assert run(Compiled(), "model/mlp/fp32/inference").status == Status.PASS


@pytest.mark.parametrize("pass_", ["training", "inference"])
def test_a_recipe_the_backend_refuses_is_unsupported_with_its_reason(pass_):
    result = run(mpx.get_backend("onnxrt"), f"model/mlp/fp8_e4m3/{pass_}")
    assert result.status == Status.UNSUPPORTED
    assert "refuses the fp8_e4m3 recipe" in result.detail and "fp8" in result.detail
