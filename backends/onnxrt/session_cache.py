"""The cache of compiled graphs (session + support verdict) per (op, format, pass, shape class), with counters."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from mpx.plugins.backend import Support


@dataclass
class CompiledGraph:
    """One op graph as onnxruntime runs it: the session (None when unsupported) and the truthful verdict."""

    support: Support
    session: Any = None
    input_names: tuple[str, ...] = ()
    input_dtypes: tuple[Any, ...] = ()  # numpy dtypes the session is fed
    output_kinds: tuple[Any, ...] = ()  # torch dtypes the outputs are returned in
    nodes: tuple[str, ...] = ()  # op types of the optimized graph, for reports
    # True when the tensors cross as they are: inputs as their own numpy views, outputs as views of
    # onnxruntime's arrays (no bf16 / fp8 widened to fp32 at the boundary)
    plain_inputs: bool = False
    plain_outputs: bool = False
    output_names: list[str] | None = None  # None: all of them
    input_index: tuple[int, ...] | None = None  # the call's tensors the graph reads (None: all)
    run: Callable[[list[str] | None, dict[str, Any], Any], list[Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # session.run(outputs, feed, run_options) without its Python wrapper's per-call name checks, where the
        # build exposes the C++ session (every onnxruntime since 1.0 does)
        inner = getattr(self.session, "_sess", None)
        self.run = inner.run if inner is not None and self.output_names else getattr(self.session, "run", _no_session)


@dataclass
class SessionCache:
    """Thread-safe map key -> CompiledGraph; a failed build is cached as its verdict and poisons nothing else."""

    entries: dict[Hashable, CompiledGraph] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get(self, key: Hashable, build: Callable[[], CompiledGraph]) -> CompiledGraph:
        entry = self.entries.get(key)
        if entry is not None:
            self.hits += 1
            return entry
        with self._lock:
            entry = self.entries.get(key)
            if entry is None:
                self.misses += 1
                entry = build()
                self.entries[key] = entry
            else:
                self.hits += 1
            return entry

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def stats(self) -> dict[str, Any]:
        return {"entries": len(self.entries), "hits": self.hits, "misses": self.misses, "hit_rate": self.hit_rate}


def _no_session(*_args: Any) -> list[Any]:
    raise RuntimeError("no session: the graph did not compile")
