"""The onnxrt backend on the CPU execution provider: the report tells the truth about it."""

import functools
import json
import tempfile
from pathlib import Path

import pytest

import mpx
from mpx.cli import main
from mpx.conformance.scenarios import select_scenarios

SCENARIO = "training-classification"
available = {e.name: e for e in mpx.list_backends()}.get("onnxrt")
pytestmark = pytest.mark.skipif(
    available is None or not available.available,
    reason=f"onnxrt is not available here: {available.reason if available else 'not registered'}",
)


@functools.lru_cache(maxsize=1)
def onnxrt_report() -> dict:
    """The cases of one scenario's ops in fp32/fp16/bf16 on onnxrt (CPU EP), with their roll-up."""
    ops = sorted({r.op for r in select_scenarios([SCENARIO])[0].requires})
    path = Path(tempfile.mkdtemp(prefix="mpx-onnxrt-")) / "r.json"
    argv = ["conformance", "--backend", "onnxrt", "--scenario", SCENARIO, "--format", "fp32", "fp16", "bf16"]
    assert main([*argv, "--op", *ops, "--json", str(path), "--quiet"]) == 0
    (backend,) = json.loads(path.read_text())["backends"]
    return backend


def _column(fmt: str) -> dict:
    return next(s for s in onnxrt_report()["scenarios"] if s["format"] == fmt)


def test_onnxrt_cpu_ep_meets_every_fp32_op_requirement_and_runs_its_model_cases(tmp_path):
    """onnxrt trains: every model case runs on it (none is unsupported), the MLP and the tiny GPT train and infer
    on the CPU EP; what keeps an fp32 column from ready is a model case, never an op."""
    path = tmp_path / "fp32.json"
    argv = ["conformance", "--backend", "onnxrt", "--format", "fp32", "--json", str(path), "--quiet", "--exit-zero"]
    assert main(argv) == 0
    (backend,) = json.loads(path.read_text())["backends"]
    models = {c["id"]: c for c in backend["cases"] if c["op"].startswith("model/")}
    assert len(models) == 8 and all(c["status"] != "unsupported" for c in models.values())
    for model in ("mlp", "gpt"):
        for pass_ in ("training", "inference"):
            assert models[f"model/{model}/fp32/{pass_}"]["status"] == "pass"
    columns = [s for s in backend["scenarios"] if s["format"] == "fp32"]
    assert len(columns) == 4
    for column in columns:
        assert [m["op"] for m in column["missing"] if not m["op"].startswith("model/")] == []


def test_fp16_ops_that_ort_upcasts_are_reported_upcast_not_pass():
    backend = mpx.get_backend("onnxrt")
    cases = [c for c in onnxrt_report()["cases"] if c["format"] == "fp16"]
    upcast = [
        c for c in cases if backend.support(mpx.ops.get_op(c["op"]), mpx.format("fp16"), c["pass"]).status == "upcast"
    ]
    assert upcast, "the CPU EP has no fp16 MatMul/Gemm: some fp16 case must be an upcast"
    assert {c["status"] for c in upcast} <= {"upcast", "fail"}
    assert next(c for c in upcast if c["id"] == "linear/fp16/forward/normal")["status"] == "upcast"


def test_fp16_column_is_not_ready_because_of_the_upcasts():
    column = _column("fp16")
    assert not column["ready"] and column["runs"] > column["coverage"]
    assert any(m["reason"].startswith("upcast in ") for m in column["missing"])


def test_bf16_gaps_are_listed_with_their_reasons():
    column = _column("bf16")
    assert not column["ready"] and column["missing"]
    for missing in column["missing"]:
        assert missing["reason"] and missing["op"] and missing["why"]
    gaps = [c for c in onnxrt_report()["cases"] if c["format"] == "bf16" and c["status"] == "unsupported"]
    assert gaps and all(c["detail"] for c in gaps)


def test_onnxrt_describes_its_provider():
    assert onnxrt_report()["describe"]["device"] == "CPUExecutionProvider"


def test_describe_is_taken_after_the_cases_so_the_session_cache_stats_are_the_pass():
    stats = onnxrt_report()["describe"]["session_cache"]
    assert stats["entries"] > 0 and stats["misses"] >= stats["entries"]
    assert stats["hits"] > 0 and 0 < stats["hit_rate"] < 1
