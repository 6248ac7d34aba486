"""The helper a vendor plugin calls to register its execution provider as an mpx backend of its own name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mpx.plugins.types import BackendSpec

from .providers import import_problem, normalize_options, probe


def execution_provider_backend(
    name: str,
    provider: str,
    provider_options: Mapping[str, Any] | None = None,
    description: str = "",
    session_config: Mapping[str, str] | None = None,
) -> BackendSpec:
    """A BackendSpec named `name` that runs mpx ops on the ONNX Runtime EP `provider` with `provider_options`.

    Options given to get_backend(name, provider_options={...}) are merged over the plugin's own.
    """
    fixed = dict(provider_options or {})
    config = dict(session_config or {})

    def factory(**options: Any) -> Any:
        from .backend import OnnxRuntimeBackend

        merged = {**fixed, **dict(options.pop("provider_options", None) or {})}
        merged_config = {**config, **dict(options.pop("session_config", None) or {})}
        return OnnxRuntimeBackend(
            provider=provider, provider_options=merged, session_config=merged_config, name=name, **options
        )

    def unavailable() -> str | None:
        return import_problem() or probe(provider, normalize_options(provider, fixed))

    return BackendSpec(
        name=name,
        factory=factory,
        unavailable=unavailable,
        description=description or f"ONNX Runtime {provider} with {sorted(fixed) or 'no'} provider options",
    )
