"""Where the EP lacks a protocol graph's kernel: the decomposed graph runs and the placement says so; where
even that fails, the error names the protocol graph and onnxruntime's reason."""

from __future__ import annotations

import pytest
import torch

import mpx
from mpx.backends.onnxrt.placement import GraphUnsupported
from mpx.backends.onnxrt.training import protocol


def _refusing(op_types: set[str], real):
    """place() as an EP without kernels for `op_types` would answer."""

    def place(model, *args):
        missing = sorted(op_types & {node.op_type for node in model.graph.node})
        if missing:
            raise GraphUnsupported(f"NOT_IMPLEMENTED : Could not find an implementation for {missing[0]}")
        return real(model, *args)

    return place


def _unscale(backend, grads):
    grads = [g.clone() for g in grads]
    found_inf = torch.zeros(1)
    backend.unscale_and_check_(grads, found_inf, torch.tensor([0.5]))
    return grads, found_inf


def test_an_ep_without_isinf_runs_the_decomposed_check_and_the_placement_says_so(monkeypatch):
    monkeypatch.setattr(protocol, "place", _refusing({"IsInf", "IsNaN"}, protocol.place))
    backend = mpx.get_backend("onnxrt")
    grads = [torch.tensor([1.0, float("nan"), 3.0]), torch.tensor([[2.0, -4.0]])]
    got, found = _unscale(backend, grads)
    want, want_found = _unscale(mpx.get_backend("cpu"), grads)
    assert float(found) == float(want_found) == 1.0
    assert all(torch.equal(g.view(torch.int32), w.view(torch.int32)) for g, w in zip(got, want, strict=True))
    (graph,) = [g for g in backend.placement() if g["kind"] == "protocol"]
    assert graph["status"] == "decomposed" and "IsInf/IsNaN" in graph["reason"]
    assert graph["decomposed_ops"] and graph["share_on_provider"] == 1.0


def test_a_protocol_graph_the_ep_refuses_is_an_error_naming_it(monkeypatch):
    monkeypatch.setattr(protocol, "place", _refusing({"Where"}, protocol.place))
    backend = mpx.get_backend("onnxrt")
    param = torch.zeros(3)
    optimizer = torch.optim.SGD([param], lr=0.1)
    with pytest.raises(mpx.OpError, match=r"cannot run the training protocol's sgd graph: .*Where"):
        backend.masked_step(optimizer, {param: torch.ones(3)}, torch.tensor(False))
    assert torch.equal(param, torch.zeros(3))
