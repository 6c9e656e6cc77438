"""The ``depthlib`` command.

Each subpackage that offers a sub-command exposes ``add_subcommands(subparsers)``; this module only
collects them, so a sub-command lives beside the code it drives.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute sub-commands; a module that is missing an ``add_subcommands`` is skipped.
_SUBCOMMAND_MODULES = ("depthlib.data.cli", "depthlib.book", "depthlib.book.lab", "depthlib.profiler")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="depthlib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:
                continue
            raise
        add = getattr(module, "add_subcommands", None)
        if add is not None:
            add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
