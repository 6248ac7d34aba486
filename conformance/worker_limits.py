"""What the machine allows isolated workers: how many at once, how much memory each, and ending with the run.

`--workers` is capped by the cases, the CPUs this process may use and the memory available; `--worker-memory`
caps each worker's address space (RLIMIT_AS), so a case that allocates past it fails in that worker alone.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import sys

# what one more worker costs: a forked child of the forkserver that already imported torch (measured ~225 MiB RSS)
WORKER_BYTES = 256 << 20
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_PR_SET_PDEATHSIG = 1


def parse_size(text: str) -> int:
    """'512M', '2G', '1.5GiB', '4096' (bytes) -> bytes; ValueError naming the accepted forms."""
    match = _SIZE.fullmatch(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a memory size; write e.g. 2G, 512M or 1.5GiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def cpus() -> int:
    """CPUs this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes, or None where there is none."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def worker_count(requested: int, cases: int, worker_memory: int | None = None) -> tuple[int, str]:
    """How many workers to start, and why fewer than `requested` ('' when not capped by the machine)."""
    count = max(1, min(requested, cases))
    reasons = []
    if count > cpus():
        count = cpus()
        reasons.append(f"{count} CPU(s)")
    memory = available_memory()
    each = max(worker_memory or 0, WORKER_BYTES)
    if memory is not None and count > max(1, memory // each):
        count = max(1, memory // each)
        reasons.append(f"{memory / (1 << 30):.1f} GiB available at {each / (1 << 20):.0f} MiB per worker")
    return count, ", ".join(reasons)


def mapped_bytes() -> int | None:
    """This process's address space (VmSize) in bytes, or None where /proc has no status."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def limit_memory(limit: int) -> None:
    """Cap this process's address space at `limit` bytes; ValueError when it already maps more."""
    import resource

    mapped = mapped_bytes()
    if mapped is not None and mapped >= limit:
        raise ValueError(
            f"--worker-memory {limit / (1 << 20):.0f} MiB is below what a worker maps before any case "
            f"({mapped / (1 << 20):.0f} MiB); give at least {2 * mapped / (1 << 30):.1f}G"
        )
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def end_with_the_run() -> None:
    """Make this worker end when the run's process does, even when that one is killed with SIGKILL.

    The forkserver exits when the last copy of its liveness pipe closes, but every forked worker is handed
    a copy: a hung worker would keep the forkserver alive, and the forkserver it. The worker closes its
    copy (it starts no processes) and, on Linux, asks for SIGKILL when its parent, the forkserver, dies.
    """
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    alive = getattr(server, "_forkserver_alive_fd", None)
    if alive is not None:
        os.close(alive)
        server._forkserver_alive_fd = None  # type: ignore[union-attr]
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            return
