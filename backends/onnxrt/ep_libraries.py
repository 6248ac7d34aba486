"""Plugin execution providers (the EP ABI, onnxruntime >= 1.23): their libraries, registration and devices.

A plugin EP is a shared library that onnxruntime loads with `register_execution_provider_library`; its
devices then appear in `get_ep_devices()`. Libraries come from three places, registered once per process
(so an isolated conformance worker, which builds its backend anew, registers them again):
a vendor plugin (`execution_provider_backend(..., library_path=...)`), an installed package that exposes
its library (`get_library_path()` + `get_ep_name()`, or `library_path()` + `EP_NAME`), and the user
(`MPX_ORT_EP_LIBRARIES="name=path,name=path"` or the backend option `ep_libraries`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mpx.errors import BackendUnavailableError

from .native_log import captured_native_output

ENV = "MPX_ORT_EP_LIBRARIES"
DEVICE_TYPES = ("cpu", "gpu", "npu")
# distributions that are onnxruntime itself or its tools, never a plugin EP package
_NOT_PLUGINS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-training", "onnxruntime-tools", "onnxruntime-extensions")


@dataclass(frozen=True)
class EpLibrary:
    """A plugin EP library: the EP name its devices carry, the library's path, and who named it."""

    ep_name: str
    path: str
    source: str  # "vendor plugin <name>", "package onnxruntime-ggml 0.2.0", "MPX_ORT_EP_LIBRARIES", "option"


_lock = threading.Lock()
_declared: dict[str, EpLibrary] = {}  # by vendor plugins, in this process
_registered: dict[str, str | None] = {}  # ep name -> None when registered, else why not
_package_problems: dict[str, str] = {}  # distribution -> why its library was not found


def declare(library: EpLibrary) -> None:
    """A vendor plugin's library, registered with the others on the next `register_all`."""
    _declared[library.ep_name] = library


def parse_libraries(value: str | Mapping[str, str] | None, source: str) -> list[EpLibrary]:
    """`"name=path,name=path"` (the env form) or a {name: path} mapping (the option form) as libraries."""
    if not value:
        return []
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        pairs = [item.partition("=")[::2] for item in str(value).split(",") if item.strip()]
    bad = [f"{name}={path}" for name, path in pairs if not str(name).strip() or not str(path).strip()]
    if bad:
        raise BackendUnavailableError(
            f"{source}: {bad[0]!r} is not 'EP name=library path'; e.g. {ENV}='ggml=/path/libonnxruntime_ggml.so'"
        )
    return [EpLibrary(str(name).strip(), str(path).strip(), source) for name, path in pairs]


@functools.lru_cache(maxsize=1)
def installed_packages() -> tuple[EpLibrary, ...]:
    """Libraries of installed plugin EP packages (onnxruntime-ep-*, onnxruntime-ggml, onnxruntime-qnn, ...)."""
    found = []
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not name.startswith("onnxruntime-") or name in _NOT_PLUGINS or name.startswith("onnxruntime-genai"):
            continue
        for module_name in _top_level_modules(dist):
            try:
                library = _library_of(importlib.import_module(module_name), f"package {name} {dist.version}")
            except Exception as error:  # a package that fails to import is reported, the others still count
                _package_problems[name] = f"{type(error).__name__}: {str(error)[:200]}"
                continue
            if library is not None:
                found.append(library)
    return tuple({lib.ep_name: lib for lib in found}.values())


def _top_level_modules(dist: importlib.metadata.Distribution) -> list[str]:
    text = dist.read_text("top_level.txt")
    if text:
        return [line.strip() for line in text.splitlines() if line.strip()]
    tops = {f.parts[0] for f in dist.files or () if len(f.parts) == 2 and f.parts[1] == "__init__.py"}
    return sorted(tops)


def _library_of(module: Any, source: str) -> EpLibrary | None:
    """The conventions real packages follow: get_library_path()/get_ep_name() (OpenVINO, QNN) or
    library_path()/EP_NAME (ggml); None for a module that follows neither (a runtime build, a tool)."""
    path_of = getattr(module, "get_library_path", None) or getattr(module, "library_path", None)
    if not callable(path_of):
        return None
    names = getattr(module, "get_ep_names", None)
    name = getattr(module, "get_ep_name", None)
    ep_name = name() if callable(name) else (names()[0] if callable(names) else getattr(module, "EP_NAME", None))
    if not isinstance(ep_name, str):
        return None
    return EpLibrary(ep_name, str(path_of()), source)


def libraries(extra: Iterable[EpLibrary] = ()) -> list[EpLibrary]:
    """Every library known here, the user's first: option, env, vendor plugins, installed packages."""
    chosen: dict[str, EpLibrary] = {}
    for library in (*extra, *parse_libraries(os.environ.get(ENV), ENV), *_declared.values(), *installed_packages()):
        chosen.setdefault(library.ep_name, library)
    return list(chosen.values())


def register_all(extra: Iterable[EpLibrary] = ()) -> dict[str, str | None]:
    """Register every known library once per process; ep name -> None, or why it did not register."""
    import onnxruntime as ort

    with _lock:
        for library in libraries(extra):
            if not hasattr(ort, "register_execution_provider_library"):
                _registered[library.ep_name] = f"onnxruntime {ort.__version__} has no plugin EP API (1.23+ has)"
                continue
            if library.ep_name in _registered:
                continue
            try:
                with captured_native_output():  # what a library logs while it loads (ggml: INFO lines on fd 2)
                    ort.register_execution_provider_library(library.ep_name, library.path)
                _registered[library.ep_name] = None
            except Exception as error:
                message = str(error).strip()
                already = "already registered" in message  # e.g. the package registered itself on import
                _registered[library.ep_name] = None if already else f"{library.source}: {message[:300]}"
        return dict(_registered)


def ep_devices(ep_name: str) -> list[Any]:
    """The OrtEpDevices of `ep_name` (empty for an EP with no device here or not registered)."""
    import onnxruntime as ort

    return [d for d in getattr(ort, "get_ep_devices", list)() if d.ep_name == ep_name]


def device_type(device: Any) -> str:
    """'cpu', 'gpu' or 'npu' of an OrtEpDevice."""
    return str(device.device.type).rpartition(".")[2].lower()


def select_devices(ep_name: str, wanted_type: str | None = None, device_id: int | None = None) -> list[Any]:
    """The devices a session of `ep_name` runs on: all of `wanted_type` (any type when None), or the
    `device_id`-th of them; raises BackendUnavailableError naming what is there."""
    if wanted_type is not None and wanted_type not in DEVICE_TYPES:
        raise BackendUnavailableError(f"device_type must be one of {', '.join(DEVICE_TYPES)}, not {wanted_type!r}")
    devices = ep_devices(ep_name)
    chosen = [d for d in devices if wanted_type in (None, device_type(d))]
    if device_id is not None:
        chosen = chosen[device_id : device_id + 1] if 0 <= device_id < len(chosen) else []
    if not chosen:
        there = ", ".join(f"{i}: {device_type(d)}" for i, d in enumerate(devices)) or "none"
        raise BackendUnavailableError(
            f"{ep_name} has no device of type {wanted_type or 'any'} with index {device_id} here (devices: {there})"
        )
    return chosen


def summary() -> str:
    """One line naming each plugin EP with its devices (or why it has none), for `mpx backends`."""
    status = register_all()
    parts = []
    for library in libraries():
        problem = status.get(library.ep_name)
        devices = [] if problem else ep_devices(library.ep_name)
        where = f" on {', '.join(device_type(d) for d in devices)}" if devices else f": {problem or 'no device here'}"
        parts.append(f"onnxrt:{library.ep_name}{where} ({library.source})")
    parts += [f"{name}: {problem}" for name, problem in sorted(_package_problems.items())]
    return "plugin EPs: " + "; ".join(parts) if parts else ""
