"""``python -m dsnet_export``: thin subcommands, each parsing arguments and making one library call.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
User errors (``DsnetError``) print one line and exit 1; anything else is a bug and shows a traceback.
Output piped into a reader that stops early (``| head``) ends the command quietly with exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from importlib import import_module

from .. import __version__
from ..errors import DsnetError

COMMANDS = ["build", "inspect", "verify", "run", "calibrate", "eval", "bench"]


def make_parser() -> tuple[argparse.ArgumentParser, dict]:
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    parser = argparse.ArgumentParser(
        prog="dsnet-export" if script == "dsnet-export" else "python -m dsnet_export",
        description="Export a DS-Net supernet as a gate engine plus one dense engine per width, "
                    "with the weights stored once, and run or check such bundles.")
    parser.add_argument("--version", action="version", version=f"dsnet-export {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = {}
    for name in COMMANDS:
        module = import_module(f"{__name__}.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        modules[name] = module
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (the ``dsnet-export`` console script exits with it)."""
    try:
        parser, modules = make_parser()
        args = parser.parse_args(argv)
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                code = modules[args.command].run(args)
        except DsnetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        return stdout_closed()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings (e.g. an input size other than the training size) as one line, not a source trace."""
    print(f"warning: {message}", file=sys.stderr)


def stdout_closed() -> int:
    """The reader of our stdout went away (``| head``): point stdout at devnull so the interpreter's
    final flush does not fail too, and exit 1 without a traceback (Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced by an object without a descriptor
        pass
    return 1
