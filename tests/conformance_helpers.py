"""Shared by the conformance tests: one full cpu run per session, and a fake vendor plugin that crashes and hangs."""

from __future__ import annotations

import functools
import json
import tempfile
import textwrap
from pathlib import Path

from mpx.cli import main

PLUGIN = '''
"""A vendor plugin whose backend aborts in add/fp16/forward/odd-shape and hangs in add/bf16/forward/odd-shape."""
import os
import time

from mpx import BackendSpec, hookimpl
from mpx.backends.cpu.backend import CpuBackend


class AbortingBackend(CpuBackend):
    name = "aborting"

    def _run(self, op, fmt, inputs, pass_, grad_outputs):
        odd_shape = inputs[0].dim() == 3
        if op.name == "add" and pass_ == "forward" and odd_shape and fmt.name == "fp16":
            os.abort()
        if op.name == "add" and pass_ == "forward" and odd_shape and fmt.name == "bf16":
            time.sleep(600)
        return super()._run(op, fmt, inputs, pass_, grad_outputs)


@hookimpl
def mpx_backends():
    yield BackendSpec(name="aborting", factory=lambda **options: AbortingBackend(**options))
'''


def install_fake_plugin(site: Path) -> Path:
    """A module and a dist-info with an `mpx` entry point in `site` (put it on sys.path, then reload_plugins())."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "aborting_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "aborting_plugin-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aborting-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mpx]\naborting = aborting_plugin\n")
    return site


@functools.lru_cache(maxsize=1)
def full_cpu_run() -> dict[str, Path]:
    """`mpx conformance --backend cpu --json r.json --html r.html --junit r.xml --markdown r.md`, once."""
    folder = Path(tempfile.mkdtemp(prefix="mpx-conformance-"))
    paths = {
        kind: folder / f"r.{ext}"
        for kind, ext in (("json", "json"), ("html", "html"), ("junit", "xml"), ("markdown", "md"))
    }
    argv = ["conformance", "--backend", "cpu", "--quiet"]
    for kind, path in paths.items():
        argv += [f"--{kind}", str(path)]
    code = main(argv)
    assert code == 0, f"mpx conformance exited {code}"
    return paths


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
