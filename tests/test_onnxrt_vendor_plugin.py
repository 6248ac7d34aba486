"""The vendor template (tests/plugins/acme_npu) installed for real: a dist-info folder on sys.path, built
from the template's own pyproject, found through the `mpx` entry-point group."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import tomllib

import mpx
from mpx.ops import get_op
from mpx.ops.reference import expected, prepare
from mpx.ops.tolerance import compare

TEMPLATE = Path(__file__).parent / "plugins" / "acme_npu"


def _install_dist_info(site: Path) -> None:
    project = tomllib.loads((TEMPLATE / "pyproject.toml").read_text())["project"]
    dist = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = ["[mpx]"] + [f"{name} = {value}" for name, value in project["entry-points"]["mpx"].items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    (site / "acme_npu").symlink_to(TEMPLATE / "acme_npu", target_is_directory=True)


@pytest.fixture
def acme_installed(tmp_path, monkeypatch):
    monkeypatch.delenv("MPX_DISABLE_PLUGINS", raising=False)
    _install_dist_info(tmp_path)
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    mpx.reload_plugins()
    yield
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m == "acme_npu" or m.startswith("acme_npu.")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    mpx.reload_plugins()


def test_acme_npu_is_listed_as_available_from_its_distribution(acme_installed):
    entry = next(e for e in mpx.list_backends() if e.name == "acme-npu")
    assert entry.available, entry.reason
    assert entry.source == "acme-npu-mpx:acme-npu"


@pytest.mark.parametrize("name,fmt", [("matmul", "fp32"), ("add", "fp32"), ("cast", "fp16")])
def test_acme_npu_runs_ops_on_its_execution_provider(acme_installed, name, fmt):
    backend = mpx.get_backend("acme-npu")
    op, fmt = get_op(name), mpx.format(fmt)
    prepared = prepare(op, fmt, "normal", "forward")
    got = backend.run(op, fmt, prepared.storage_inputs)
    assert compare(op, fmt, got, expected(op, fmt, prepared, "forward"), prepared, "forward").passed
    assert backend.name == "acme-npu"
    assert backend.describe()["provider"] == "CPUExecutionProvider"
    assert backend.describe()["provider_options"] == {"device_id": "0"}


def test_acme_npu_reports_the_same_truthful_support_as_its_ep(acme_installed):
    backend = mpx.get_backend("acme-npu")
    assert backend.support(get_op("matmul"), mpx.format("fp16")).status == "upcast"
    assert backend.support(get_op("matmul"), mpx.format("bf16")).status == "unsupported"


def test_without_the_plugin_acme_npu_is_not_found():
    mpx.reload_plugins()
    with pytest.raises(mpx.BackendNotFoundError):
        mpx.get_backend("acme-npu")
