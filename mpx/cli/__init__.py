"""The `mpx` command: one module per subcommand (`register` and `run`); user mistakes are one line and exit 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from mpx.cli import backends, conformance, formats, train
from mpx.errors import MpxError

SUBCOMMANDS = (backends, formats, conformance, train)


class UsageError(MpxError):
    """A command line that does not parse."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mpx", description="Hardware-abstracted mixed precision for PyTorch.")
    from mpx import __version__

    parser.add_argument("--version", action="version", version=f"mpx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as done:  # --help and --version
            return done.code if isinstance(done.code, int) else 0
        return int(args.run(args) or 0)
    except MpxError as error:
        print(f"mpx: error: {error}", file=sys.stderr)
        return 2
    except SystemExit as done:  # plugin or backend code called sys.exit(): never a silent success
        print(f"mpx: error: stopped by SystemExit({done.code!r}) from a plugin or backend", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mpx: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mpx backends | head`: the reader left; print nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
