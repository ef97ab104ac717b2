"""``python -m dsnet_export``: thin subcommands, each parsing arguments and making one library call.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
User errors (``DsnetError``) print one line and exit 1; anything else is a bug and shows a traceback.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from .. import __version__
from ..errors import DsnetError

COMMANDS = ["build", "inspect", "verify", "run", "calibrate", "eval", "bench"]


def make_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="python -m dsnet_export",
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
    parser, modules = make_parser()
    args = parser.parse_args(argv)
    try:
        return modules[args.command].run(args)
    except DsnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
