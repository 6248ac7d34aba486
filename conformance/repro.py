"""Repro bundles (`mpx conformance --repro DIR`): one folder per non-pass case that reproduces it without the suite.

onnxrt backends get the ONNX backend-test layout (model.onnx, test_data_set_0/input_N.pb and output_N.pb, the
per-element bounds as bound_N.pb), session.json and a reproduce.py that needs only onnxruntime, onnx and numpy.
Torch-based backends get case.pt and a reproduce.py that calls mpx.get_backend(...).run(...).
Cases are deterministic from their id, so the inputs are prepared again here: the runner keeps no tensors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mpx._io import probe_folder
from mpx.errors import ConformanceError
from mpx.formats import format as lookup_format
from mpx.ops import get_op
from mpx.ops.reference import expected, prepare, result_formats
from mpx.ops.tolerance import bounds, describe_tolerance

from .cases import Case
from .report import CaseResult, Report
from .status import Status

REPRO_STATUSES = frozenset({Status.FAIL, Status.ERROR, Status.DOWNCAST, Status.CRASH, Status.TIMEOUT})

ONNX_SCRIPT = '''"""Reproduce {case_id} on {provider} with plain onnxruntime; exit 1 when it reproduces."""
import glob, json, sys
import numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper

def load(pattern):
    paths = sorted(glob.glob(pattern), key=lambda p: int(p.rsplit("_", 1)[1][:-3]))
    return [numpy_helper.to_array(onnx.load_tensor(p)) for p in paths]

session = json.load(open("session.json"))
options = ort.SessionOptions()
for key, value in session["session_config"].items():
    options.add_session_config_entry(key, value)
provider, provider_options = session["provider"], session["provider_options"]
plugin = session.get("plugin_ep") or {{}}
if plugin.get("library"):  # a plugin EP library: register it, run on its device as mpx did
    ort.register_execution_provider_library(provider, plugin["library"])
    kinds = {{d["type"] for d in plugin.get("devices", [])}}
    devices = [d for d in ort.get_ep_devices() if d.ep_name == provider]
    devices = [d for d in devices if not kinds or d.device.type.name.lower() in kinds]
    options.add_provider_for_devices(devices[:1], provider_options)
    sess = ort.InferenceSession("model.onnx", options)
else:
    sess = ort.InferenceSession("model.onnx", options, providers=[provider], provider_options=[provider_options])
feed = {{i.name: a for i, a in zip(sess.get_inputs(), load("test_data_set_0/input_*.pb"))}}
try:
    got = sess.run(None, feed)
except Exception as error:
    print(f"session.run failed: {{error}}"); sys.exit(1)
failed = False
for n, (g, w, b) in enumerate(zip(got, load("test_data_set_0/output_*.pb"), load("test_data_set_0/bound_*.pb"))):
    g, w = g.astype(np.float64), w.astype(np.float64)
    both = np.isfinite(g) & np.isfinite(w)
    diff = np.where(both, np.abs(g - w), 0.0)
    bad = (diff > b) | (np.isnan(g) != np.isnan(w)) | (np.isinf(w) & (g != w)) | (np.isfinite(w) & ~np.isfinite(g))
    print(f"output {{n}}: max abs difference {{diff.max(initial=0.0):.6g}}, {{bad.sum()}} of {{bad.size}} out of bound")
    failed |= bool(bad.any())
print("REPRODUCED: outside tolerance" if failed else "not reproduced: within tolerance")
sys.exit(1 if failed else 0)
'''

TORCH_SCRIPT = '''"""Reproduce {case_id} on mpx backend {backend!r} (see README.md); exit 1 when it reproduces."""
import sys
import torch
import mpx
from mpx.formats import format as lookup_format
from mpx.ops import get_op
from mpx.ops.reference import Prepared
from mpx.ops.tolerance import compare

case = torch.load("case.pt", weights_only=True)
op, fmt, pass_ = get_op(case["op"]), lookup_format(case["format"]), case["pass"]
prepared = Prepared(case["inputs"], case["storage_inputs"], case["grad_outputs"], case["storage_grad_outputs"])
backend = mpx.get_backend(case["backend"], **case["options"])
try:
    got = backend.run(op, fmt, prepared.storage_inputs, pass_, prepared.storage_grad_outputs)
except Exception as error:
    print(f"run() failed: {{type(error).__name__}}: {{error}}"); sys.exit(1)
result = compare(op, fmt, tuple(got), case["expected"], prepared, pass_, subnormals=backend.subnormals)
print(("not reproduced: " if result.passed else "REPRODUCED: ") + result.detail)
sys.exit(0 if result.passed else 1)
'''


def check_repro_dir(path: str | Path) -> Path:
    """Fail now, before any case runs, if the bundle folder cannot be created or written."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ConformanceError(f"--repro {str(target)!r} is a file, not a folder; give a folder for the bundles")
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe_folder(target, ".mpx-repro.")
    except OSError as error:
        raise ConformanceError(
            f"cannot write repro bundles in {str(target)!r}: {error.strerror or error}; choose a writable folder"
        ) from None
    return target


def write_bundles(report: Report, root: str | Path, options: Mapping[str, Any] | None = None) -> list[Path]:
    """A bundle per non-pass op case of each backend report; returns the bundle folders written."""
    written = []
    for backend_report in report.backends:
        problems = [c for c in backend_report.cases if _wanted(c)]
        if not problems:
            continue
        backend = _onnxrt_backend(backend_report.name, backend_report.description, options or {})
        for result in problems:
            folder = Path(root) / _safe(backend_report.name) / result.id.replace("/", "__")
            folder.mkdir(parents=True, exist_ok=True)
            facts = dict(backend_report.description)
            try:
                if backend is not None:
                    write_onnx_bundle(folder, backend, result, facts)
                else:
                    write_torch_bundle(folder, backend_report.name, dict(options or {}), result, facts)
            except Exception as error:  # one case that cannot be bundled says why and stops no other bundle
                (folder / "README.md").write_text(f"# {result.id}: no bundle\n\n{type(error).__name__}: {error}\n")
            written.append(folder)
    return written


def write_onnx_bundle(folder: Path, backend: Any, result: CaseResult, facts: Mapping[str, Any]) -> None:
    """model.onnx, test_data_set_0/{input,output,bound}_N.pb, session.json, reproduce.py and README.md."""
    import onnx
    from onnx import helper, numpy_helper

    from mpx.backends.onnxrt.backend import _to_numpy
    from mpx.backends.onnxrt.providers import CPU, can_record_assignment

    op, fmt, prepared, want = _case_data(result, facts)
    built = _built(backend, op, fmt, result.pass_, prepared)
    tensors = (*prepared.storage_inputs, *(prepared.storage_grad_outputs or ()))
    if built.input_index is not None:  # the graph does not read every tensor: feed what the session is fed
        tensors = tuple(tensors[i] for i in built.input_index)
    data = folder / "test_data_set_0"
    data.mkdir(exist_ok=True)
    onnx.save(built.model, str(folder / "model.onnx"))
    for n, (tensor, name, dtype) in enumerate(zip(tensors, built.input_names, built.input_dtypes, strict=True)):
        _save(data / f"input_{n}.pb", numpy_helper.from_array(_to_numpy(tensor, dtype), name))
    formats = result_formats(op, fmt, result.pass_)
    allowed = bounds(op, formats, want, prepared, result.pass_, facts.get("subnormals", "keep"))
    outputs = built.model.graph.output
    for n, (reference, bound, output) in enumerate(zip(want, allowed, outputs, strict=True)):
        dtype = helper.tensor_dtype_to_np_dtype(output.type.tensor_type.elem_type)
        _save(data / f"output_{n}.pb", numpy_helper.from_array(reference.numpy().astype(dtype), output.name))
        _save(data / f"bound_{n}.pb", numpy_helper.from_array(bound.numpy(), f"{output.name}_bound"))
    config = dict(backend.session_config)
    if backend.provider != CPU:
        config.setdefault("session.disable_cpu_ep_fallback", "1")
    if can_record_assignment():
        config.setdefault("session.record_ep_graph_assignment_info", "1")
    session = {
        "provider": backend.provider,
        "provider_options": dict(backend.provider_options),
        "session_config": config,
        "onnxruntime": facts.get("onnxruntime"),
        **({"plugin_ep": facts["plugin_ep"]} if "plugin_ep" in facts else {}),
    }
    (folder / "session.json").write_text(json.dumps(session, indent=1, default=str) + "\n")
    script = ONNX_SCRIPT.format(case_id=result.id, provider=backend.provider)
    note = "reproduce.py registers the plugin EP library named in session.json." if "plugin_ep" in facts else ""
    _finish(folder, result, op, allowed, script, "onnxruntime, onnx and numpy only", note)


def write_torch_bundle(
    folder: Path, backend: str, options: dict[str, Any], result: CaseResult, facts: Mapping[str, Any]
) -> None:
    """case.pt (inputs in storage dtypes, gradients, the reference, backend and options), reproduce.py, README.md."""
    op, fmt, prepared, want = _case_data(result, facts)
    case = {
        "id": result.id,
        "op": result.op,
        "format": result.format,
        "pass": result.pass_,
        "backend": backend,
        "options": options,
        "inputs": prepared.inputs,
        "storage_inputs": prepared.storage_inputs,
        "grad_outputs": prepared.grad_outputs,
        "storage_grad_outputs": prepared.storage_grad_outputs,
        "expected": want,
    }
    torch.save(case, folder / "case.pt")
    formats = result_formats(op, fmt, result.pass_)
    allowed = bounds(op, formats, want, prepared, result.pass_, facts.get("subnormals", "keep"))
    script = TORCH_SCRIPT.format(case_id=result.id, backend=backend)
    _finish(folder, result, op, allowed, script, "torch and mpx (with the backend's plugin installed)", "")


def _wanted(result: CaseResult) -> bool:
    if result.input_class == "sequence":  # several steps of one optimizer: `mpx conformance --case ID` reruns it
        return False
    return result.status in REPRO_STATUSES and result.op not in ("semantics",) and not result.op.startswith("model/")


def _onnxrt_backend(name: str, description: Mapping[str, Any], options: Mapping[str, Any]) -> Any:
    """The onnxrt backend object of `name` (for its graphs and session settings), or None for torch-based ones."""
    if "provider" not in description or "onnxruntime" not in description:
        return None
    try:
        from mpx import get_backend
        from mpx.backends.onnxrt.backend import OnnxRuntimeBackend

        backend = get_backend(name, **options)
    except Exception:  # cannot start again here: a torch-style bundle still records the case
        return None
    return backend if isinstance(backend, OnnxRuntimeBackend) else None


def _case_data(result: CaseResult, facts: Mapping[str, Any]) -> tuple[Any, Any, Any, tuple[torch.Tensor, ...]]:
    """op, format, the prepared inputs and the reference, exactly as the runner made them (seeded by the id)."""
    case = Case(result.op, result.format, result.pass_, result.input_class)
    op, fmt = get_op(case.op), lookup_format(case.format)
    prepared = prepare(op, fmt, case.input_class, case.pass_, case.seed)
    overflow, subnormals = facts.get("overflow", "inf"), facts.get("subnormals", "keep")
    want = expected(op, fmt, prepared, case.pass_, overflow=overflow, subnormals=subnormals)
    return op, fmt, prepared, want


def _built(backend: Any, op: Any, fmt: Any, pass_: str, prepared: Any) -> Any:
    """The model the backend's _compile runs: the op's graph, or its decomposition when the EP cannot place it."""
    from mpx.backends.onnxrt.graph import build_graph
    from mpx.backends.onnxrt.placement import GraphUnsupported

    shapes = tuple(tuple(t.shape) for t in prepared.storage_inputs)
    grads = tuple(tuple(g.shape) for g in prepared.storage_grad_outputs or ())
    built = build_graph(op, fmt, pass_, shapes, grads)
    if built.decomposable:
        try:
            backend._place(built, fmt)
        except GraphUnsupported:
            return build_graph(op, fmt, pass_, shapes, grads, decompose=True)
    return built


def _finish(
    folder: Path, result: CaseResult, op: Any, allowed: list[torch.Tensor], script: str, needs: str, note: str
) -> None:
    (folder / "reproduce.py").write_text(script)
    worst = [float(b.max()) if b.numel() else 0.0 for b in allowed]
    tolerance = {"rule": describe_tolerance(op), "max_abs_bound": worst}
    (folder / "tolerance.json").write_text(json.dumps(tolerance, indent=1) + "\n")
    where = " (element-wise in test_data_set_0/bound_N.pb)" if (folder / "test_data_set_0").is_dir() else ""
    readme = [
        f"# {result.id}: {result.status}",
        "",
        f"- status: `{result.status}`",
        f"- detail: {result.detail}",
        f"- tolerance: {tolerance['rule']}; largest absolute bound per output {worst}{where}",
        f"- reproduce with {needs}: `cd` here and run `python reproduce.py` (exit 1: reproduced)",
        *([f"- {note}"] if note else []),
        "",
        "```python",
        script.rstrip(),
        "```",
        "",
    ]
    (folder / "README.md").write_text("\n".join(readme))


def _save(path: Path, tensor: Any) -> None:
    path.write_bytes(tensor.SerializeToString())


def _safe(name: str) -> str:
    return name.replace("/", "__").replace(":", "_")
