"""The helper a vendor plugin calls to register its execution provider as an mpx backend of its own name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mpx.plugins.types import BackendSpec

from .distributions import import_problem
from .providers import normalize_options, probe


def execution_provider_backend(
    name: str,
    provider: str | None = None,
    provider_options: Mapping[str, Any] | None = None,
    description: str = "",
    session_config: Mapping[str, str] | None = None,
    *,
    library_path: str | None = None,
    ep_name: str | None = None,
    device_type: str | None = None,
    device_id: int | None = None,
) -> BackendSpec:
    """A BackendSpec named `name` that runs mpx ops on the ONNX Runtime EP `provider` with `provider_options`.

    A plugin EP (the EP ABI) gives `library_path` and `ep_name` (the name its OrtEpDevices carry), and
    `device_type` (cpu|gpu|npu) / `device_id` to pick its device: the library is registered once per
    process, in whichever process builds the backend. Options given to get_backend(name, provider_options=
    {...}) are merged over the plugin's own.
    """
    provider = provider or ep_name
    if not provider:
        raise TypeError(f"execution_provider_backend({name!r}): give the EP's name as provider= or ep_name=")
    fixed = dict(provider_options or {})
    config = dict(session_config or {})
    device = {"device_type": device_type, "device_id": device_id}

    def declare() -> None:
        if library_path:
            from .ep_libraries import EpLibrary
            from .ep_libraries import declare as declare_library

            declare_library(EpLibrary(provider, library_path, f"vendor plugin {name}"))

    def factory(**options: Any) -> Any:
        from .backend import OnnxRuntimeBackend

        declare()
        merged = {**fixed, **dict(options.pop("provider_options", None) or {})}
        merged_config = {**config, **dict(options.pop("session_config", None) or {})}
        return OnnxRuntimeBackend(
            provider=provider,
            provider_options=merged,
            session_config=merged_config,
            name=name,
            **{**device, **options},
        )

    def unavailable() -> str | None:
        problem = import_problem()
        if problem:
            return problem
        declare()
        return probe(provider, normalize_options(provider, fixed), device_type, device_id)

    kind = f"plugin EP {provider} ({library_path})" if library_path else provider
    return BackendSpec(
        name=name,
        factory=factory,
        unavailable=unavailable,
        description=description or f"ONNX Runtime {kind} with {sorted(fixed) or 'no'} provider options",
    )
