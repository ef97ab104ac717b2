"""``python -m dsnet_export``: thin subcommands, each parsing arguments and making one library call.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``, and may
define ``PARAMETER_FLAGS`` (library parameter -> flag, where the names differ).  The shared option groups and
output rules are in ``options.py``.  User errors (``DsnetError``) print one line and exit 1, with the library's
parameter names (``max_batch=``) spelt as the command's flags (``--max-batch``); anything else is a bug and
shows a traceback.  Output piped into a reader that stops early (``| head``) ends the command quietly with exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from importlib import import_module

from .. import __version__
from ..errors import DsnetError
from .options import flag_names, parameter_flags

COMMANDS = ["build", "build-trt", "export-format", "inspect", "verify", "run", "calibrate", "eval", "bench", "serve",
            "triton-repo", "loadtest"]


def make_parser() -> tuple[argparse.ArgumentParser, dict]:
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    parser = argparse.ArgumentParser(
        prog="dsnet-export" if script == "dsnet-export" else "python -m dsnet_export",
        description="Export a DS-Net supernet as a gate engine plus one dense engine per width, "
                    "with the weights stored once, and run or check such bundles.")
    parser.add_argument("--version", action="version", version=f"dsnet-export {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = {}
    parser.command_parsers = {}  # name -> its parser, for the flag names of its errors
    for name in COMMANDS:
        module = import_module(f"{__name__}.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        parser.command_parsers[name] = p
        modules[name] = module
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (the ``dsnet-export`` console script exits with it)."""
    try:
        parser, modules = make_parser()
        args = parser.parse_args(argv)
        module = modules[args.command]
        flags = parameter_flags(parser.command_parsers[args.command], getattr(module, "PARAMETER_FLAGS", None))
        try:
            with warnings.catch_warnings():
                warnings.showwarning = lambda message, *rest, **kw: _show_warning(message, flags)
                code = module.run(args)
        except DsnetError as exc:
            print(f"error: {flag_names(str(exc), flags)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        return stdout_closed()


def _show_warning(message, flags: dict[str, str]) -> None:
    """Library warnings (e.g. an input size other than the training size) as one line, not a source trace."""
    print(f"warning: {flag_names(str(message), flags)}", file=sys.stderr)


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
