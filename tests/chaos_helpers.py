"""The chaos backend plugin (tests/fake_plugins/chaos) run in real `mpx` processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

CHAOS = Path(__file__).parent / "fake_plugins" / "chaos"


def chaos_env(**extra: str) -> dict[str, str]:
    """This environment with the chaos plugin importable and plugins enabled, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "MPX_DISABLE_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHAOS), env.get("PYTHONPATH", "")]))
    return {**env, **extra}


def start_until_marked(argv: list[str], mark: Path) -> subprocess.Popen:
    """`python -m mpx *argv` with the chaos plugin, returned once its hanging case wrote `mark` (stderr piped)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "mpx", *argv], env=chaos_env(MPX_CHAOS_MARK=str(mark)), stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not mark.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            raise AssertionError("the hanging case never started")
        time.sleep(0.05)
    return child
