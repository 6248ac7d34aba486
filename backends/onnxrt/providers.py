"""Execution providers: which ones the installed build lists, and which really work here (decided with a session)."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

from mpx.errors import BackendUnavailableError, unknown_name_message

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


@contextlib.contextmanager
def captured_native_output() -> Iterator[io.StringIO]:
    """Capture what onnxruntime prints (Python prints and the C++ log on fd 2) while an EP is tried."""
    text = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink, contextlib.redirect_stdout(text):
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text.write(sink.read().decode(errors="replace"))


def session_options(provider: str, config: Options = (), optimized_path: str | None = None) -> Any:
    """SessionOptions for `provider`: quiet, and for a non-CPU EP no silent fallback of nodes to the CPU EP."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if provider != CPU:
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    for key, value in config:
        options.add_session_config_entry(key, value)
    if optimized_path:
        options.optimized_model_filepath = optimized_path
    return options


def create_session(model_bytes: bytes, provider: str, options: Options, sess_options: Any) -> Any:
    """An InferenceSession on exactly `provider`; raises RuntimeError with onnxruntime's words when it
    cannot run there (onnxruntime's Python layer would otherwise retry on the CPU EP without saying)."""
    import onnxruntime as ort

    with captured_native_output() as log:
        try:
            session = ort.InferenceSession(
                model_bytes, sess_options, providers=[provider], provider_options=[dict(options)]
            )
        except Exception as error:
            raise RuntimeError(f"{_first_line(str(error))}{_log_hint(log.getvalue())}") from None
    got = session.get_providers()
    if not got or got[0] != provider:
        raise RuntimeError(f"{provider} did not start, onnxruntime fell back to {got}{_log_hint(log.getvalue())}")
    return session


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else "no message"


def _log_hint(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if any(w in ln for w in ("Fail", "fail", "Error", "Require"))]
    return f" ({lines[0][-300:]})" if lines else ""


@functools.lru_cache(maxsize=64)
def probe(provider: str, options: Options = ()) -> str | None:
    """None when a tiny fp32 Add session really runs on `provider` with `options`, else why not."""
    import numpy as np

    from .builder import FLOAT, GraphBuilder

    installed = installed_providers()
    if provider not in installed:
        return unknown_name_message("execution provider", provider, installed).replace("Known:", "This build has:")
    builder = GraphBuilder("mpx_probe")
    x = builder.input("x", FLOAT, (4,))
    builder.output(builder.node("Add", [x, x]), FLOAT)
    try:
        session = create_session(builder.model().SerializeToString(), provider, options, session_options(provider))
        result = session.run(None, {"x": np.arange(4, dtype=np.float32)})[0]
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


def import_problem() -> str | None:
    """Why onnxruntime cannot be imported here, or None."""
    try:
        import onnxruntime  # noqa: F401
    except Exception as error:
        return f"onnxruntime is not importable ({type(error).__name__}: {error}); pip install onnxruntime"
    return None


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
