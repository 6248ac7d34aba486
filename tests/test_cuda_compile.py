"""The scaler's unscale + update math compiles as one graph (torch.compile fullgraph=True): no graph break, no sync."""

import torch

from mpx.training.loss_scaling import DynamicLossScaler


def test_unscale_and_update_compile_without_a_graph_break():
    scaler = DynamicLossScaler(init_scale=2.0**10, growth_interval=2)
    grads = [torch.full((8,), 1024.0), torch.full((3,), -2048.0)]
    scaler.unscale_([g.clone() for g in grads])  # lazy init of the scale tensors happens outside the graph

    def unscale_and_update(grads):
        found_inf = scaler.unscale_(grads)
        scaler.update(found_inf)
        return found_inf

    compiled = torch.compile(unscale_and_update, fullgraph=True, backend="aot_eager")
    good = [g.clone() for g in grads]
    assert float(compiled(good)) == 0.0
    assert torch.equal(good[0], torch.ones(8))
    bad = [g.clone() for g in grads]
    bad[1][0] = float("inf")
    assert float(compiled(bad)) == 1.0
    assert float(scaler.loss_scale) == 2.0**9
