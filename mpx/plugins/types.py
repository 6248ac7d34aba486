"""BackendSpec: what a plugin hands to mpx to register a backend, validated on construction."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mpx.errors import PluginError
from mpx.formats import FORMATS
from mpx.formats import format as lookup_format

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")  # used with fullmatch: "$" would let a trailing newline through


def _always_available(*_variant: str) -> str | None:
    return None


@dataclass(frozen=True)
class BackendSpec:
    """A backend by name.

    `factory(**options)` builds it (with `variant=` for 'name:variant' selections when
    `accepts_variant`); `unavailable()` -- `unavailable(variant)` when `accepts_variant`, with '' for
    none -- answers cheaply with None, or why the backend cannot run here. `details()`, called only when an
    available backend is listed (`mpx backends`), says what it found here: devices, plugin libraries.
    """

    name: str
    factory: Callable[..., object] = field(repr=False)
    unavailable: Callable[[], str | None] = field(default=_always_available, repr=False)
    formats: tuple[str, ...] = tuple(f.name for f in FORMATS)
    description: str = ""
    accepts_variant: bool = False
    details: Callable[[], str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise PluginError(
                f"backend name {self.name!r} is not valid: use lower-case letters, digits, '-', '_' or '.', "
                "starting with a letter or digit (':' is reserved for variants such as onnxrt:<EP>)"
            )
        if not callable(self.factory):
            raise PluginError(f"backend {self.name!r}: factory must be callable, got {type(self.factory).__name__}")
        if self.details is not None and not callable(self.details):
            raise PluginError(
                f"backend {self.name!r}: details must be callable or None, got {type(self.details).__name__}"
            )
        if not callable(self.unavailable):
            got = type(self.unavailable).__name__
            raise PluginError(f"backend {self.name!r}: unavailable must be callable, got {got}")
        try:
            object.__setattr__(self, "formats", tuple(lookup_format(f).name for f in self.formats))
        except Exception as error:
            raise PluginError(f"backend {self.name!r}: bad formats {self.formats!r}: {error}") from None

    def adopt_formats(self, backend: Any, where: str) -> None:
        """Formats are declared once: a Backend left at the default takes these; one with its own must agree."""
        from mpx.plugins.backend import Backend

        if backend.formats is Backend.formats:
            backend.formats = tuple(lookup_format(f) for f in self.formats)
            return
        try:
            own = [f.name for f in backend.formats]
        except (TypeError, AttributeError):
            raise PluginError(f"{where}: {type(backend).__name__}.formats must be a tuple of mpx formats") from None
        if set(own) != set(self.formats):
            raise PluginError(
                f"{where}: its BackendSpec declares formats ({', '.join(self.formats)}) but its "
                f"{type(backend).__name__} declares ({', '.join(own)}); declare them once, in the BackendSpec "
                "(leave Backend.formats at its default), or make the two agree"
            )
