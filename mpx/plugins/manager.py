"""Finding backends: built-ins and vendor plugins through the pluggy entry-point group "mpx"."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import pluggy

from mpx.errors import BackendNotFoundError, BackendUnavailableError, MpxError, PluginError, unknown_name_message
from mpx.plugins import bounded, hookspec
from mpx.plugins.backend import Backend
from mpx.plugins.types import BackendSpec

DISTRIBUTION = "mpx-precision"
DISABLE_ENV = "MPX_DISABLE_PLUGINS"  # "1": no external plugins; "a,b": not these entry points


@dataclass(frozen=True)
class BackendEntry:
    """One line of `mpx backends`: a backend, or a plugin that failed to give one."""

    name: str
    available: bool
    reason: str
    formats: tuple[str, ...]
    source: str
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "available": self.available,
            "reason": self.reason,
            "formats": list(self.formats),
            "source": self.source,
            "description": self.description,
        }


@dataclass
class BackendRegistry:
    """Loads plugins once, keeps every failure with its plugin, builds backends on demand."""

    specs: dict[str, BackendSpec] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # plugin -> error
    conflicts: dict[str, list[str]] = field(default_factory=dict)  # backend name -> every source
    hung: dict[str, str] = field(default_factory=dict)  # backend name -> why its unavailable() is not asked again

    @classmethod
    def discover(cls) -> BackendRegistry:
        """Built-ins load in-process; external plugins' imports and hooks run bounded (mpx.plugins.bounded)."""
        manager = pluggy.PluginManager(hookspec.PROJECT)
        manager.add_hookspecs(hookspec)
        registry = cls()
        found = _entry_points()
        loads = bounded.call_all({i: ep.load for i, ep in enumerate(found) if not _is_builtin(_source_of(ep))})
        for index, entry_point in enumerate(found):
            source = _source_of(entry_point)
            if index in loads and not loads[index].ok:
                registry.failures[source] = f"failed to load: {loads[index].describe('its import')}"
                continue
            try:
                plugin = loads[index].value if index in loads else entry_point.load()
                if manager.is_registered(plugin):
                    registry.failures[source] = f"entry point {entry_point.value!r} is already registered by another"
                    continue
                manager.register(plugin, name=source)
            except Exception as error:  # a broken plugin is recorded, the others still load
                registry.failures[source] = f"failed to load: {type(error).__name__}: {error}"
                continue
            if not manager.get_hookcallers(plugin):
                registry.failures[source] = (
                    f"entry point {entry_point.value!r} defines no hook: decorate its mpx_backends() with @mpx.hookimpl"
                )
        impls = manager.hook.mpx_backends.get_hookimpls()
        external = {i: impl for i, impl in enumerate(impls) if not _is_builtin(impl.plugin_name)}
        hooks = bounded.call_all({i: functools.partial(_specs_of, impl.function) for i, impl in external.items()})
        for index, impl in enumerate(impls):
            registry._collect(
                impl.plugin_name,
                hooks[index] if index in hooks else bounded.here(functools.partial(_specs_of, impl.function)),
            )
        return registry

    def _collect(self, source: str, outcome: bounded.Outcome) -> None:
        if not outcome.ok:
            self.failures[source] = f"mpx_backends() {outcome.describe('', 'raised ')}"
            return
        specs = outcome.value
        bad = [s for s in specs if not isinstance(s, BackendSpec)]
        if bad:
            got = f"{type(bad[0]).__name__}: {bad[0]!r:.80}"
            self.failures[source] = f"mpx_backends() must yield mpx.BackendSpec objects, got {got}"
            return
        for spec in specs:
            if spec.name in self.specs or spec.name in self.conflicts:
                self.conflicts.setdefault(spec.name, [self.sources.pop(spec.name)] if spec.name in self.sources else [])
                self.conflicts[spec.name].append(source)
                self.specs.pop(spec.name, None)
                continue
            self.specs[spec.name] = spec
            self.sources[spec.name] = source

    def names(self) -> list[str]:
        return sorted({*self.specs, *self.conflicts})

    def entries(self) -> list[BackendEntry]:
        entries = []
        external = {n: s for n, s in self.specs.items() if not self.is_builtin(n) and n not in self.hung}
        checks = bounded.call_all({n: functools.partial(_reason_unavailable, s) for n, s in external.items()})
        reasons = {name: self._verdict(name, outcome) for name, outcome in checks.items()}
        usable = {n: functools.partial(_with_details, s) for n, s in external.items() if reasons[n] is None}
        details = {name: outcome.value for name, outcome in bounded.call_all(usable).items() if outcome.ok}
        for name, spec in sorted(self.specs.items()):
            reason = reasons[name] if name in reasons else self._reason(spec)
            if reason or not self.is_builtin(name):
                description = details.get(name, spec.description)
            else:
                description = _with_details(spec)
            entries.append(
                BackendEntry(name, reason is None, reason or "", spec.formats, self.sources[name], description)
            )
        for name, sources in sorted(self.conflicts.items()):
            entries.append(BackendEntry(name, False, _conflict_message(name, sources), (), " + ".join(sources)))
        for source, error in sorted(self.failures.items()):
            entries.append(BackendEntry(source.rpartition(":")[2], False, error, (), source))
        return entries

    def _reason(self, spec: BackendSpec, variant: str = "") -> str | None:
        """Why `spec` cannot run here (None: it can); an external plugin's check is bounded."""
        if self.is_builtin(spec.name):
            return _reason_unavailable(spec, variant)
        if spec.name in self.hung:
            return self.hung[spec.name]
        return self._verdict(spec.name, bounded.call(functools.partial(_reason_unavailable, spec, variant), spec.name))

    def _verdict(self, name: str, outcome: bounded.Outcome) -> str | None:
        if outcome.ok:
            return outcome.value
        if outcome.timed_out:
            self.hung[name] = f"availability check {outcome.problem()}"
            return self.hung[name]
        return f"availability check failed: {outcome.problem()}"

    def _spec(self, name: str) -> tuple[BackendSpec, str]:
        """The spec and variant that `name` selects; raises the error a user should see for a bad name."""
        if not isinstance(name, str) or not name.strip():
            raise BackendNotFoundError(unknown_name_message("backend", str(name), self.names()))
        base, _, variant = name.strip().partition(":")
        if base in self.conflicts:
            raise PluginError(_conflict_message(base, self.conflicts[base]))
        spec = self.specs.get(base)
        if spec is None:
            failed = [s for s in self.failures if s.rpartition(":")[2] == base]
            if failed:
                error = self.failures[failed[0]]
                raise BackendUnavailableError(f"backend {base!r} comes from plugin {failed[0]}, which {error}")
            raise BackendNotFoundError(unknown_name_message("backend", name, self.names()))
        if variant and not spec.accepts_variant:
            raise BackendNotFoundError(f"backend {base!r} takes no ':variant' (got {name!r}); use {base!r}")
        return spec, variant

    def resolve(self, name: str) -> str | None:
        """None when backend `name` ('base' or 'base:variant') can run here, else why not.

        Unknown or ambiguous names raise BackendNotFoundError / PluginError, as get_backend does.
        """
        try:
            spec, variant = self._spec(name)
        except BackendUnavailableError as error:  # the plugin that provides it failed to load
            return str(error)
        return self._reason(spec, variant)

    def is_builtin(self, name: str) -> bool:
        """Whether backend `name` comes from mpx's own distribution (so it may run in-process)."""
        return _is_builtin(self.sources.get(name.partition(":")[0], ""))

    def create(self, name: str, **options: Any) -> Backend:
        spec, variant = self._spec(name)
        base = spec.name
        reason = self._reason(spec, variant)
        if reason:
            raise BackendUnavailableError(f"backend {name!r} is not available: {reason}")
        if variant:
            options["variant"] = variant
        try:
            backend = spec.factory(**options)
        except MpxError:
            raise
        except TypeError as error:
            message = f"backend {name!r} rejected its options {sorted(options)}: {error}"
            raise BackendUnavailableError(message) from error
        except (Exception, SystemExit) as error:  # a factory's sys.exit() is its error, not the end of mpx
            message = f"backend {name!r} failed to start: {type(error).__name__}: {error}"
            raise BackendUnavailableError(message) from error
        if not isinstance(backend, Backend):
            got = type(backend).__name__
            raise PluginError(f"backend {name!r} from {self.sources[base]}: factory returned {got}, not an mpx.Backend")
        spec.adopt_formats(backend, f"backend {name!r} from {self.sources[base]}")
        return backend


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    disabled = os.environ.get(DISABLE_ENV, "").strip()
    found = []
    for entry_point in importlib.metadata.entry_points(group=hookspec.PROJECT):
        builtin = entry_point.dist is not None and entry_point.dist.name == DISTRIBUTION
        if builtin or not disabled:
            found.append(entry_point)
        elif disabled != "1" and entry_point.name not in {d.strip() for d in disabled.split(",")}:
            found.append(entry_point)
    # one distribution may be seen twice on sys.path (an editable install beside a test copy)
    return list({(ep.name, ep.value): ep for ep in found}.values())


def _is_builtin(source: str) -> bool:
    return source.startswith(f"{DISTRIBUTION}:")


def _specs_of(hook: Any) -> list[Any]:
    """What a plugin's mpx_backends() gives, as a list (a generator runs here, so it runs bounded too)."""
    result = hook()
    return [result] if isinstance(result, BackendSpec) else list(result or ())


def _source_of(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = entry_point.dist.name if entry_point.dist is not None else "?"
    return f"{dist}:{entry_point.name}"


def _reason_unavailable(spec: BackendSpec, variant: str = "") -> str | None:
    try:
        return spec.unavailable(variant) if spec.accepts_variant else spec.unavailable()
    except Exception as error:
        return f"availability check failed: {type(error).__name__}: {error}"


def _with_details(spec: BackendSpec) -> str:
    """The spec's description and what its `details()` found here (a failing details() is said, not raised)."""
    if spec.details is None:
        return spec.description
    try:
        found = spec.details()
    except Exception as error:
        found = f"details() failed: {type(error).__name__}: {error}"
    return "; ".join(part for part in (spec.description, found) if part)


def _conflict_message(name: str, sources: list[str]) -> str:
    return (
        f"backend name {name!r} is claimed by several plugins: {', '.join(sources)}; "
        f"uninstall one, or disable it with {DISABLE_ENV}=<entry point name>"
    )


_lock = threading.Lock()
_registry: BackendRegistry | None = None


def registry() -> BackendRegistry:
    """The process-wide registry, discovered on first use."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = BackendRegistry.discover()
        return _registry


def reload_plugins() -> BackendRegistry:
    """Forget what was found and discover the plugins again (after installing one, or in tests)."""
    global _registry
    with _lock:
        _registry = None
    return registry()


def get_backend(name: str = "cpu", **options: Any) -> Backend:
    """The backend called `name` ('cpu', 'cuda', 'onnxrt', 'onnxrt:<ExecutionProvider>', or a plugin's)."""
    return registry().create(name, **options)


def list_backends() -> list[BackendEntry]:
    """Every backend mpx knows, available or not and why, and plugins that failed to load."""
    return registry().entries()


def resolve(name: str) -> str | None:
    """None when backend `name` can run here, else the reason it cannot (see BackendRegistry.resolve)."""
    return registry().resolve(name)


def is_builtin(name: str) -> bool:
    """Whether backend `name` comes from mpx's own distribution."""
    return registry().is_builtin(name)
