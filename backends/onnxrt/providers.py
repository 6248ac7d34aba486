"""Execution providers: which ones the installed build lists, and which really work here (decided with a session)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mpx.errors import BackendUnavailableError, unknown_name_message

from .distributions import import_problem
from .ep_libraries import ENV
from .native_log import ERROR, captured_native_output, run_options

CPU = "CPUExecutionProvider"
Options = tuple[tuple[str, str], ...]


def installed_providers() -> list[str]:
    """The EPs the installed onnxruntime build lists (not all of them work on this machine)."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def normalize_options(provider: str, options: Mapping[str, Any] | None) -> Options:
    """Provider options as sorted (key, str value) pairs, the form onnxruntime takes and the cache keys use."""
    if options is None:
        return ()
    if not isinstance(options, Mapping):
        raise BackendUnavailableError(
            f"provider_options for {provider} must be a dict of option name -> value, not {type(options).__name__}"
        )
    pairs = []
    for key, value in options.items():
        if not isinstance(key, str) or not isinstance(value, (str, int, float, bool)):
            raise BackendUnavailableError(
                f"provider option {key!r}={value!r} for {provider} is not a name with a str/int/float/bool value; "
                "onnxruntime takes flat string options, e.g. {'device_id': '0'}"
            )
        pairs.append((key, str(int(value)) if isinstance(value, bool) else str(value)))
    return tuple(sorted(pairs))


@dataclass(frozen=True)
class Target:
    """Where sessions run: an EP with its provider options; for a plugin EP also which of its devices."""

    provider: str
    options: Options = ()
    plugin: bool = False  # a plugin EP (the EP ABI): sessions select its devices with add_provider_for_devices
    device_type: str | None = None  # plugin EPs: cpu | gpu | npu (None: every device of the EP)
    device_id: int | None = None  # plugin EPs: the index among the EP's devices of device_type

    def devices(self) -> list[Any]:
        from .ep_libraries import select_devices

        return select_devices(self.provider, self.device_type, self.device_id)


def target(
    provider: str, options: Options = (), device_type: str | None = None, device_id: int | None = None
) -> Target:
    """The Target of `provider`: a plugin EP when one is registered under that name (the CPU EP never is)."""
    from .ep_libraries import ep_devices, register_all

    register_all()
    plugin = provider != CPU and bool(ep_devices(provider))
    if not plugin and (device_type is not None or device_id is not None):
        raise BackendUnavailableError(
            f"device_type / device_id select a device of a plugin EP; {provider} is not one here "
            f"(plugin EPs here: {', '.join(plugin_eps()) or 'none'})"
        )
    return Target(provider, options, plugin, device_type, device_id)


def plugin_eps() -> list[str]:
    """Names of the plugin EPs registered here that have a device."""
    import onnxruntime as ort

    return sorted({d.ep_name for d in getattr(ort, "get_ep_devices", list)() if d.ep_name != CPU})


def can_record_assignment() -> bool:
    """Whether this onnxruntime build tells which EP each node was assigned to (1.23+)."""
    import onnxruntime as ort

    return hasattr(ort.InferenceSession, "get_provider_graph_assignment_info")


def session_options(
    target: Target, config: Options = (), optimized_path: str | None = None, allow_fallback: bool = False
) -> Any:
    """SessionOptions for `target`: quiet, node assignment recorded, and for a non-CPU EP no silent
    fallback of nodes to the CPU EP unless `allow_fallback`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = ERROR
    if target.provider != CPU and not allow_fallback:
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    if can_record_assignment():
        options.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    for key, value in config:
        options.add_session_config_entry(key, value)
    if optimized_path:
        options.optimized_model_filepath = optimized_path
    if target.plugin:
        options.add_provider_for_devices(target.devices(), dict(target.options))
    return options


def create_session(model_bytes: bytes, target: Target, sess_options: Any) -> Any:
    """An InferenceSession on exactly `target`; raises RuntimeError with onnxruntime's words when it
    cannot run there (onnxruntime's Python layer would otherwise retry on the CPU EP without saying)."""
    import onnxruntime as ort

    provider = target.provider
    failure = None
    with captured_native_output() as log:  # an EP's error while it starts is logged on fd 2 whatever the level
        try:
            if target.plugin:  # its devices are in sess_options; providers=[name] would not select it
                session = ort.InferenceSession(model_bytes, sess_options, enable_fallback=0)
            else:
                session = ort.InferenceSession(
                    model_bytes,
                    sess_options,
                    providers=[provider],
                    provider_options=[dict(target.options)],
                    enable_fallback=0,  # no silent retry on the CPU EP, and no fallback banner printed on stdout
                )
        except Exception as error:
            failure = _first_line(str(error))
    if failure is not None:
        raise RuntimeError(f"{failure}{_log_hint(log.getvalue())}")
    got = session.get_providers()
    if not got or got[0] != provider:
        raise RuntimeError(f"{provider} did not start, onnxruntime fell back to {got}{_log_hint(log.getvalue())}")
    return session


def assigned_providers(session: Any) -> dict[str, str] | None:
    """node name -> the EP onnxruntime assigned it to (None where the build does not record it)."""
    try:
        info = session.get_provider_graph_assignment_info()
    except Exception:  # an older build, or a session made without the config entry
        return None
    return {node.name: assignment.ep_name for assignment in info for node in assignment.get_nodes()} or None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else "no message"


def _log_hint(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if any(w in ln for w in ("Fail", "fail", "Error", "Require"))]
    return f" ({lines[0][-300:]})" if lines else ""


@functools.lru_cache(maxsize=64)
def probe(
    provider: str, options: Options = (), device_type: str | None = None, device_id: int | None = None
) -> str | None:
    """None when a tiny fp32 Add session really runs on `provider` with `options`, else why not."""
    import numpy as np

    from .builder import FLOAT, GraphBuilder

    try:
        where = target(provider, options, device_type, device_id)
    except BackendUnavailableError as error:
        return str(error)
    installed = installed_providers()
    if not where.plugin and provider not in installed:
        known = [*installed, *plugin_eps()]
        message = unknown_name_message("execution provider", provider, known).replace("Known:", "This build has:")
        return f"{message}; a plugin EP library is registered with {ENV}='<EP name>=<library path>'"
    builder = GraphBuilder("mpx_probe")
    x = builder.input("x", FLOAT, (4,))
    builder.output(builder.node("Add", [x, x]), FLOAT)
    try:
        session = create_session(builder.model().SerializeToString(), where, session_options(where))
        result = session.run(None, {"x": np.arange(4, dtype=np.float32)}, run_options())[0]
    except Exception as error:
        return f"{provider} does not work here: {error}"
    if result.tolist() != [0.0, 2.0, 4.0, 6.0]:
        return f"{provider} computed 2*[0, 1, 2, 3] as {result.tolist()}"
    return ignored_options(provider, options, session)


def ignored_options(provider: str, options: Options, session: Any) -> str | None:
    """An EP that reports its effective options and lacks a requested key did not take that option."""
    effective = session.get_provider_options().get(provider, {})
    unknown = [key for key, _ in options if effective and key not in effective]
    if unknown:
        return f"{provider} rejected provider options {unknown}; it takes: {', '.join(sorted(effective))}"
    return None


@functools.lru_cache(maxsize=1)
def default_provider() -> str:
    """The first EP of the installed build that really runs a session here."""
    reasons = []
    for provider in installed_providers():
        reason = probe(provider)
        if reason is None:
            return provider
        reasons.append(reason)
    raise BackendUnavailableError(f"no execution provider of this onnxruntime build works here: {'; '.join(reasons)}")


def unavailable(variant: str = "") -> str | None:
    """Why `onnxrt` (variant '') or `onnxrt:<EP>` cannot run here, or None."""
    problem = import_problem()
    if problem:
        return problem
    try:
        if not variant:
            default_provider()
            return None
        return probe(variant)
    except BackendUnavailableError as error:
        return str(error)
