"""Old import paths of mpx 0.1, kept importable for one release.

mpx 0.2 moved modules into packages (`mpx.training`, `mpx.plugins`, `mpx.cli`, `mpx/ops/definitions`, ...).
`import mpx` installs a meta-path finder that answers each old dotted name with a module whose
attributes are read, on first use, from the new homes listed in `MOVED`, and warns once with
DeprecationWarning naming the new path. Nothing here is imported eagerly.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Any

# old module -> its new home(s), searched in order for each attribute
MOVED: dict[str, tuple[str, ...]] = {
    # --- core (mpx/) ---
    "mpx.backend": ("mpx.plugins.backend",),
    "mpx.backend_spec": ("mpx.plugins.types",),
    "mpx.hookspecs": ("mpx.plugins.hookspec",),
    "mpx.trainer": ("mpx.training.trainer",),
    "mpx.scaling": ("mpx.training.loss_scaling",),
    "mpx.overflow": ("mpx.training.overflow",),
    "mpx.master_weights": ("mpx.training.master_weights",),
    "mpx.masked_step": ("mpx.training.optimizer_step",),
    "mpx.fused_optim": ("mpx.training.fused_step",),
    "mpx.optim_state": ("mpx.training.state_formats", "mpx.training.memory"),
    "mpx.checkpoint": ("mpx.training.checkpoint", "mpx._legacy.core"),
    "mpx.cuda_graphs": ("mpx.training.cuda_graphs",),
    "mpx.functional": ("mpx.training.losses", "mpx.training.loss_scaling", "mpx.training.overflow"),
    "mpx.train_cli": ("mpx.cli.train", "mpx.training.synthetic"),
    "mpx.conformance_cli": ("mpx.cli.conformance", "mpx._legacy.core"),
    "mpx.cli.backends_command": ("mpx.cli.backends", "mpx.cli.formats", "mpx._legacy.core"),
    "mpx.cli.conformance_command": ("mpx.cli.conformance",),
    "mpx.cli.train_command": ("mpx.cli.train",),
    # --- ops (mpx/ops/) ---
    "mpx.ops.check": ("mpx.ops.reference", "mpx.ops.tolerance"),
    "mpx.ops.magnitude": ("mpx.ops.error_model",),
    "mpx.ops.attention_ops": ("mpx.ops.definitions.attention",),
    "mpx.ops.elementwise_ops": ("mpx.ops.definitions.elementwise",),
    "mpx.ops.embedding_ops": ("mpx.ops.definitions.embedding",),
    "mpx.ops.gemm_ops": ("mpx.ops.definitions.gemm",),
    "mpx.ops.loss_ops": ("mpx.ops.definitions.loss",),
    "mpx.ops.norm_ops": ("mpx.ops.definitions.norm",),
    "mpx.ops.precision_ops": ("mpx.ops.definitions.precision",),
    "mpx.ops.reduction_ops": ("mpx.ops.definitions.reduction",),
    "mpx.ops.softmax_ops": ("mpx.ops.definitions.softmax", "mpx.ops.error_model"),
    # --- backends (mpx.backends.*) ---
    "mpx.backends.onnxrt.graphs": ("mpx.backends.onnxrt.graph", "mpx.backends.onnxrt.graph.base"),
    "mpx.backends.onnxrt.graph_math": ("mpx.backends.onnxrt.graph.base",),
    "mpx.backends.onnxrt.graphs_elementwise": (
        "mpx.backends.onnxrt.graph",
        "mpx.backends.onnxrt.graph.elementwise",
        "mpx.backends.onnxrt.graph.reduction",
    ),
    "mpx.backends.onnxrt.graphs_gemm": (
        "mpx.backends.onnxrt.graph",
        "mpx.backends.onnxrt.graph.gemm",
        "mpx.backends.onnxrt.graph.embedding",
        "mpx.backends.onnxrt.graph.attention",
    ),
    "mpx.backends.onnxrt.graphs_norms": (
        "mpx.backends.onnxrt.graph",
        "mpx.backends.onnxrt.graph.softmax",
        "mpx.backends.onnxrt.graph.norm",
        "mpx.backends.onnxrt.graph.loss",
    ),
    "mpx.backends.onnxrt.graphs_precision": ("mpx.backends.onnxrt.graph", "mpx.backends.onnxrt.graph.precision"),
    # --- conformance (mpx.conformance.*) ---
    "mpx.conformance.matrix": ("mpx.conformance.render.grid", "mpx._legacy.conformance"),
    "mpx.conformance.html": ("mpx.conformance.render.html",),
    "mpx.conformance.markdown": ("mpx.conformance.render.markdown",),
    "mpx.conformance.junit": ("mpx.conformance.render.junit", "mpx._legacy.conformance"),
    "mpx.conformance.terminal": ("mpx.conformance.render.terminal", "mpx._legacy.conformance"),
    "mpx.conformance.outputs": ("mpx.conformance.output_paths", "mpx._legacy.conformance"),
}


class _MovedModule(types.ModuleType):
    """A module standing at an old path: attribute reads go to the new modules."""

    def __init__(self, name: str, targets: tuple[str, ...]) -> None:
        super().__init__(name, f"moved in mpx 0.2 to {', '.join(targets)}")
        self.__mpx_targets__ = targets

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        for target in self.__mpx_targets__:
            module = importlib.import_module(target)
            if hasattr(module, attribute):
                value = getattr(module, attribute)
                setattr(self, attribute, value)
                return value
        raise AttributeError(
            f"module {self.__name__!r} (moved to {', '.join(self.__mpx_targets__)}) has no {attribute!r}"
        )

    def __dir__(self) -> list[str]:
        names: set[str] = set()
        for target in self.__mpx_targets__:
            names.update(n for n in dir(importlib.import_module(target)) if not n.startswith("_"))
        return sorted(names)


class _MovedLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        targets = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {' and '.join(targets)} in mpx 0.2; the old path goes away in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return _MovedModule(spec.name, targets)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: attributes are read lazily from the new homes."""


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedLoader(), is_package=False)


def install() -> None:
    """Answer the old import paths (idempotent)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
