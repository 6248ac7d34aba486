"""Argument types that refuse nonsense at parse time (one line, exit 2), before any work or output."""

from __future__ import annotations

import argparse
import math

SEED_LIMIT = 2**63  # torch.manual_seed takes a 64-bit integer


def positive_number(text: str) -> float:
    """A finite number > 0 (learning rates, timeouts)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_integer(text: str) -> int:
    """An integer >= 1 (steps, batch size, widths, workers)."""
    if (value := _integer(text)) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= 1")
    return value


def seed(text: str) -> int:
    """An integer in [0, 2**63): what torch.manual_seed accepts."""
    if not 0 <= (value := _integer(text)) < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer in [0, 2**63)")
    return value


def output_path(text: str) -> str:
    """A non-empty file path."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a file name")
    return text


def memory_size(text: str) -> int:
    """A memory size such as 2G, 512M or 1.5GiB, in bytes."""
    from mpx.conformance.worker_limits import parse_size

    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
