"""Running the accuracy tables for a suite run: in this process, or in a child process for isolated backends.

Out of process the child builds its own backend and sends each row as it is made; a row that overruns the
timeout or kills the child becomes an 'error' row saying so, and a fresh child makes the rows after it.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from mpx.plugins import Backend

from .accuracy_tables import AccuracyTables, TableRequest, TableRow
from .accuracy_tables_measure import elementwise_ops, measure, plan
from .accuracy_tables_sweep import table_formats
from .isolation import BackendRef
from .runner import one_thread
from .tolerance_profiles import get_profile

STARTUP_TIMEOUT_S = 300.0


def tables_in_process(backend: Backend, request: TableRequest) -> AccuracyTables:
    """The tables of a backend built in this process (one intra-op thread, like the cases)."""
    start = time.perf_counter()
    profile = get_profile(request.profile)
    if request.skipped:
        return AccuracyTables(profile.name, [], 0.0, request.skipped)
    with one_thread():
        rows = [measure(backend, op, fmt, p, profile, request.chunk) for op, fmt, p in _plan(request)]
    return AccuracyTables(profile.name, rows, time.perf_counter() - start)


def tables_isolated(ref: BackendRef, request: TableRequest, timeout: float) -> AccuracyTables:
    """The tables made in child processes; `timeout` seconds per row (the first row also gets the start-up time)."""
    start = time.perf_counter()
    profile = get_profile(request.profile)
    if request.skipped:
        return AccuracyTables(profile.name, [], 0.0, request.skipped)
    planned = [(op.name, fmt.name, p) for op, fmt, p in _plan(request)]
    rows: list[TableRow] = []
    context = multiprocessing.get_context("spawn")
    while len(rows) < len(planned):
        rows += _child_rows(context, ref, request, planned[len(rows) :], timeout)
    return AccuracyTables(profile.name, rows, time.perf_counter() - start)


def _plan(request: TableRequest) -> list[Any]:
    return plan(request.ops or None, request.formats)


def _child_rows(
    context: Any, ref: BackendRef, request: TableRequest, todo: list[tuple[str, str, str]], timeout: float
) -> list[TableRow]:
    """Rows from one child process: all of `todo`, or those before the one that failed (which says why)."""
    parent, child = context.Pipe()
    environ = {k: v for k, v in os.environ.items() if k.startswith("MPX_")}
    process = context.Process(
        target=_child_main, args=(child, ref, request, todo, list(sys.path), environ), daemon=True
    )
    process.start()
    child.close()
    rows: list[TableRow] = []
    building = False
    wait = STARTUP_TIMEOUT_S  # the interpreter and torch start; then the backend gets `timeout` to build
    try:
        while len(rows) < len(todo):
            op, fmt, pass_ = todo[len(rows)]
            failed = _failure(parent, process, wait)
            message = _receive(parent) if failed is None else None
            if message is None and failed is None:
                process.join(timeout=5)
                failed = f"crash: the table process exited with code {process.exitcode}"
            if message is not None and message[0] in ("started", "built"):
                wait = timeout
                building = message[0] == "started"
                continue
            if message is not None:
                if message[0] == "row":
                    rows.append(TableRow.from_dict(message[1]))
                    continue
                failed = f"the backend could not be built: {message[1]}"
                rows += [TableRow(o, p, f, "error", failed) for o, f, p in todo[len(rows) :]]
                break
            if building:  # a backend that does not build in time would hang every fresh process the same way
                failed = f"the backend did not build within {timeout:g} s (--timeout)"
                rows += [TableRow(o, p, f, "error", failed) for o, f, p in todo[len(rows) :]]
                break
            rows.append(TableRow(op, pass_, fmt, "error", failed))
            break
    finally:
        if process.is_alive():
            process.kill()
        process.join(timeout=5)
        parent.close()
    return rows


def _receive(conn: Connection) -> Any:
    """The next message, or None when the child closed the pipe (it died)."""
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None


def _failure(conn: Connection, process: Any, wait: float) -> str | None:
    """None when a message is ready within `wait` seconds, else why not (a timeout or the child's death)."""
    if conn.poll(wait):
        return None
    if process.is_alive():
        return f"timeout: no result within {wait:g} s"
    process.join(timeout=5)
    return f"crash: the table process exited with code {process.exitcode}"


def _child_main(
    conn: Connection,
    ref: BackendRef,
    request: TableRequest,
    todo: list[tuple[str, str, str]],
    sys_path: list[str],
    environ: dict[str, str],
) -> None:
    sys.path[:] = sys_path
    os.environ.update(environ)
    import torch

    from mpx.formats import format as lookup_format
    from mpx.ops import get_op

    torch.set_num_threads(1)
    conn.send(("started", None))
    try:
        backend = ref.create()
    except Exception as error:
        conn.send(("failed", f"{type(error).__name__}: {error}"))
        return
    conn.send(("built", None))
    profile = get_profile(request.profile)
    for op, fmt, pass_ in todo:
        row = measure(backend, get_op(op), lookup_format(fmt), pass_, profile, request.chunk)  # type: ignore[arg-type]
        conn.send(("row", row.to_dict()))


def table_request(
    enabled: bool, profile: str, ops: Sequence[str], formats: Sequence[str], case_ids: Sequence[str], chunk: int | None
) -> TableRequest:
    """What `mpx conformance` asks for: the element-wise ops among --op, fp16/bf16/fp32 among --format.

    Tables that will not be made still get a request, with the reason in `skipped`, so the reports say why.
    """
    profile = get_profile(profile).name
    if not enabled:
        return TableRequest(profile=profile, skipped="not made (--no-accuracy-tables)")
    if case_ids:
        return TableRequest(profile=profile, skipped="not made for a --case rerun")
    names = tuple(op.name for op in elementwise_ops(ops))
    if not names:
        return TableRequest(profile=profile, skipped=f"no element-wise op among --op {' '.join(ops)}")
    chosen = tuple(f for f in table_formats() if f in formats)
    if not chosen:
        return TableRequest(profile=profile, skipped="no fp16, bf16 or fp32 among --format")
    return TableRequest(names if ops else (), chosen, profile, chunk)
