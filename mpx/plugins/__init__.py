"""Backends and the plugins that provide them: the contract, the hook, and the manager that finds them."""

from mpx.plugins.backend import Backend, Support, SupportStatus, TrainingBackend
from mpx.plugins.hookspec import hookimpl
from mpx.plugins.manager import (
    DISABLE_ENV,
    DISTRIBUTION,
    BackendEntry,
    BackendRegistry,
    get_backend,
    is_builtin,
    list_backends,
    registry,
    reload_plugins,
    resolve,
)
from mpx.plugins.types import BackendSpec

__all__ = [
    "DISABLE_ENV",
    "DISTRIBUTION",
    "Backend",
    "BackendEntry",
    "BackendRegistry",
    "BackendSpec",
    "Support",
    "SupportStatus",
    "TrainingBackend",
    "get_backend",
    "hookimpl",
    "is_builtin",
    "list_backends",
    "registry",
    "reload_plugins",
    "resolve",
]
