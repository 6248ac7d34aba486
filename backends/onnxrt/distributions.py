"""Which onnxruntime distribution is installed: any one works; two over each other is a broken install.

onnxruntime, onnxruntime-gpu and the vendor builds all install the same `onnxruntime` module, so two of
them overwrite each other's files, and uninstalling one removes the module the other still lists.
"""

from __future__ import annotations

import functools
import importlib.metadata

INSTALL_HINT = "pip install 'mpx-precision[onnxrt]'"
# distributions that each install the `onnxruntime` module itself
RUNTIME_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-openvino",
    "onnxruntime-directml",
    "onnxruntime-qnn",
    "onnxruntime-cann",
    "onnxruntime-rocm",
    "onnxruntime-migraphx",
    "onnxruntime-webgpu",
    "onnxruntime-vitisai",
    "onnxruntime-coreml",
    "onnxruntime-azure",
    "onnxruntime-training",
)


def installed_runtimes() -> list[str]:
    """'name version' of each onnxruntime distribution installed here."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name in RUNTIME_DISTRIBUTIONS and _installs_runtime_module(dist):
            found[name] = f"{name} {dist.version}"
    return sorted(found.values())


def _installs_runtime_module(dist: importlib.metadata.Distribution) -> bool:
    """onnxruntime-qnn >= 2 is a plugin EP package, not a runtime: it ships no `onnxruntime` module."""
    files = dist.files
    return files is None or any(f.parts and f.parts[0] == "onnxruntime" for f in files)


@functools.lru_cache(maxsize=1)
def conflict() -> str | None:
    """Why the installed onnxruntime is ambiguous (two distributions over each other), or None."""
    runtimes = installed_runtimes()
    if len(runtimes) < 2:
        return None
    return (
        f"{len(runtimes)} onnxruntime distributions are installed over each other ({', '.join(runtimes)}): they share "
        "one `onnxruntime` folder, so whichever was installed last wins and uninstalling any one breaks the others; "
        f"keep one: pip uninstall -y {' '.join(r.split()[0] for r in runtimes)} && pip install <the one you want>"
    )


def import_problem() -> str | None:
    """Why onnxruntime cannot be used here, or None."""
    try:
        import onnxruntime

        onnxruntime.InferenceSession  # noqa: B018 - a half-uninstalled package imports as an empty namespace
    except Exception as error:
        problem = f"onnxruntime is not importable ({type(error).__name__}: {error}); {INSTALL_HINT}"
        return f"{problem}; {conflict()}" if conflict() else problem
    return None
