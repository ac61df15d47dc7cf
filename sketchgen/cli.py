"""The ``sketchgen`` command line: one subcommand per module in ``sketchgen.commands``.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Command modules import torch only inside ``run`` so that
``sketchgen --help`` and argument errors stay instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("fetch", "rasterize", "train", "sample", "compare")


class UsageError(Exception):
    """A bad argument or config: printed as one line, exit status 2, before any work starts."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sketchgen",
        description="Rasterize, train, sample and evaluate generative models of Quick, Draw! data.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"sketchgen.commands.{name}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:
        print(f"sketchgen {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sketchgen {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
