'''The hook a plugin implements (entry-point group "mpx"): `mpx_backends`.

A vendor backend in full. It runs ops by rounding the float64 reference to the case's format, the way a
device that computes exactly and rounds once would; a real one calls its runtime in `_run`:

>>> import mpx
>>> from mpx.ops.reference import result_formats, vjp
>>> class ExactNpu(mpx.Backend):
...     """An 'NPU' that computes every op exactly, then rounds once to the output format."""
...     name = "exact-npu"
...     def _run(self, op, fmt, inputs, pass_, grad_outputs):
...         values = tuple(t.double() if t.is_floating_point() else t for t in inputs)
...         if pass_ == "forward":
...             results = op.reference(*values, **op.attrs)
...         else:
...             grads = tuple(g.double() for g in grad_outputs)
...             results = vjp(op.reference, op.differentiable_args, values, grads, op.attrs)
...         formats = result_formats(op, fmt, pass_)
...         return tuple(f.round(r).to(f.torch_dtype) for r, f in zip(results, formats))
>>> @mpx.hookimpl
... def mpx_backends():
...     yield mpx.BackendSpec(name="exact-npu", factory=ExactNpu, formats=("fp32", "bf16"))

In the vendor's pyproject.toml: `[project.entry-points.mpx]  exact-npu = "exact_npu.plugin"`, where
`exact_npu/plugin.py` holds the two definitions above. Then `mpx backends` lists it and
`mpx conformance --backend exact-npu` certifies it. Running it directly:

>>> import torch
>>> add = mpx.get_op("add")
>>> x, y = add.to_storage(mpx.format("bf16"), (torch.tensor([1.0, 2.0]), torch.tensor([2.0**-9, 3.0])))
>>> ExactNpu().run(add, mpx.format("bf16"), (x, y))
(tensor([1., 5.], dtype=torch.bfloat16),)
'''

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from mpx.plugins.types import BackendSpec

PROJECT = "mpx"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def mpx_backends() -> Iterable[BackendSpec]:
    """Yield or return the BackendSpecs this plugin provides.

    Keep it cheap: build nothing here, import heavy modules inside the spec's factory.
    """
