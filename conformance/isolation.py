"""Cases in child processes: a crash becomes `crash` and a hang `timeout` for that case, and the run goes on.

A small pool of worker processes each builds the backend once and runs batches of cases; a worker that dies
or overruns the per-case timeout is killed and replaced, and the rest of its batch goes to the new worker.
Building the backend gets the per-case timeout too. Workers ignore SIGINT (the run's own process handles the
user's Ctrl-C and SIGTERM and kills them) and die with the forkserver, which ends with the run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

import torch

from mpx.plugins import Backend

from . import worker_limits
from .cases import Case
from .report import CaseResult
from .runner import OnResult
from .status import Status

BATCH = 8
STARTUP_TIMEOUT_S = 300.0  # from fork to "started": imports only (plugins are bounded by MPX_PLUGIN_TIMEOUT)
MAX_FAILED_STARTS = 2


@dataclass(frozen=True)
class BackendRef:
    """A backend by name and options: what a child process needs to build its own copy."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def create(self) -> Backend:
        from mpx.plugins import get_backend

        return get_backend(self.name, **self.options)


def _child_main(
    conn: Connection, ref: BackendRef, sys_path: list[str], environ: dict[str, str], memory: int | None
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker_limits.end_with_the_run()
    sys.path[:] = sys_path
    os.environ.update(environ)
    from mpx.plugins import reload_plugins

    from .runner import ReferenceCache, run_case

    reload_plugins()
    torch.set_num_threads(1)  # workers run side by side; intra-op threads in each only contend for the cores
    conn.send(("started", None))
    try:
        if memory is not None:
            worker_limits.limit_memory(memory)
        backend = ref.create()
        conn.send(("ready", backend.describe()))
    except (Exception, SystemExit, KeyboardInterrupt) as error:
        conn.send(("failed", f"{type(error).__name__}: {error}"))
        return
    cache = ReferenceCache()
    while True:
        batch = conn.recv()
        if batch is None:
            return
        for case in batch:
            conn.send(("result", run_case(backend, case, cache)))


class _Worker:
    """One child process, the cases it was sent and has not answered, and when the first of them is late."""

    def __init__(self, context: Any, ref: BackendRef, memory: int | None = None) -> None:
        environ = {k: v for k, v in os.environ.items() if k.startswith("MPX_")}
        self.conn, child_conn = context.Pipe()
        args = (child_conn, ref, list(sys.path), environ, memory)
        self.process = context.Process(target=_child_main, args=args, daemon=True)
        self.process.start()
        child_conn.close()
        self.started = self.ready = False
        self.pending: deque[Case] = deque()
        self.deadline = time.monotonic() + STARTUP_TIMEOUT_S

    def send(self, batch: list[Case], timeout: float) -> None:
        if not self.pending:
            self.deadline = time.monotonic() + timeout
        self.pending.extend(batch)
        self.conn.send(batch)

    def death(self) -> str:
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                return f"the process died with {signal.Signals(-code).name}"
            except ValueError:
                return f"the process died with signal {-code}"
        return f"the process exited with code {code}"

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.kill()
        self.conn.close()


def _context() -> Any:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["torch", "mpx", "mpx.conformance.runner"])
        return context
    return multiprocessing.get_context("spawn")


def _lost(case: Case, status: Status, detail: str, elapsed: float) -> CaseResult:
    return CaseResult(case.id, case.op, case.format, case.pass_, case.input_class, status, None, detail, elapsed)


def run_isolated(
    ref: BackendRef,
    cases: Sequence[Case],
    timeout: float = 60.0,
    workers: int = 2,
    on_result: OnResult | None = None,
    memory: int | None = None,
) -> tuple[list[CaseResult], dict[str, Any]]:
    """Run `cases` in child processes; returns the results in case order and the backend's describe().

    `workers` is capped by the machine (worker_limits.worker_count); `memory` caps each worker's address space.
    """
    context = _context()
    todo: deque[Case] = deque(cases)
    results: dict[str, CaseResult] = {}
    description: dict[str, Any] = {}
    failed_starts = 0
    pool: list[_Worker] = []

    def record(outcome: CaseResult) -> None:
        results[outcome.id] = outcome
        if on_result:
            on_result(outcome)

    def feed(worker: _Worker) -> None:
        if worker.ready and len(worker.pending) < BATCH and todo:
            worker.send([todo.popleft() for _ in range(min(BATCH, len(todo)))], timeout)

    def give_up(detail: str) -> None:  # the backend cannot start: every case left is an error, no retry
        for worker in [w for w in pool if not w.ready]:
            worker.kill()
            pool.remove(worker)
        while todo:
            record(_lost(todo.popleft(), Status.ERROR, f"the backend failed to start: {detail}", 0.0))

    def replace(worker: _Worker, status: Status, detail: str) -> None:
        nonlocal failed_starts
        pool.remove(worker)
        if worker.pending:
            late = worker.pending.popleft()
            record(_lost(late, status, detail, timeout if status is Status.TIMEOUT else 0.0))
            todo.extendleft(reversed(worker.pending))
        if not worker.ready:
            failed_starts += 1
        if failed_starts >= MAX_FAILED_STARTS:
            reason = f"the backend could not start in a child process: {detail}"
            while todo:
                record(_lost(todo.popleft(), Status.CRASH, reason, 0.0))
        elif todo or any(w.pending for w in pool):
            pool.append(_Worker(context, ref, memory))

    finished = False
    try:
        count, _ = worker_limits.worker_count(workers, len(cases), memory)
        pool.extend(_Worker(context, ref, memory) for _ in range(count))
        while pool and (todo or any(w.pending or not w.ready for w in pool)):
            busy = [w.deadline for w in pool if w.pending or not w.ready]
            wait_s = max(0.0, min(busy) - time.monotonic()) if busy else None
            ready = wait([w.conn for w in pool], timeout=wait_s)
            for worker in [w for w in pool if w.conn in ready]:
                if worker not in pool:  # killed by give_up() in this round
                    continue
                try:
                    kind, payload = worker.conn.recv()
                except (EOFError, OSError):
                    detail = worker.death()
                    worker.kill()
                    replace(worker, Status.CRASH, detail)
                    continue
                if kind == "started":
                    worker.started, worker.deadline = True, time.monotonic() + timeout
                    continue
                if kind == "ready":
                    worker.ready, failed_starts = True, 0
                    description = description or payload
                elif kind == "failed":
                    worker.stop()
                    pool.remove(worker)
                    give_up(payload)
                    continue
                else:
                    worker.pending.popleft()
                    worker.deadline = time.monotonic() + timeout
                    record(payload)
                feed(worker)
            for worker in [w for w in pool if (w.pending or not w.ready) and time.monotonic() > w.deadline]:
                if worker not in pool:  # killed by give_up() in this round
                    continue
                worker.kill()
                if worker.ready:
                    replace(worker, Status.TIMEOUT, f"no answer within {timeout:g} s; the worker was killed")
                elif worker.started:
                    pool.remove(worker)
                    give_up(f"building it did not finish within {timeout:g} s (the per-case timeout)")
                else:
                    replace(worker, Status.CRASH, f"the child process did not start within {STARTUP_TIMEOUT_S:g} s")
            for worker in pool:
                feed(worker)
        finished = True
    finally:
        for worker in pool:
            if finished:
                worker.stop()
            else:  # interrupted (Ctrl-C, SIGTERM): kill at once, a hung case would not answer
                worker.kill()
    return [results[c.id] for c in cases if c.id in results], description
