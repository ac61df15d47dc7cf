"""The ``sketchgen`` command line: the top of the house, one subcommand per module here.

Owns: argument parsing, the translation of library parameters into flags (``overwrite=True``
is ``--overwrite``), and of errors into one line and an exit status.
May import: anything in ``sketchgen``; nothing but ``sketchgen.gpu_check`` imports it.

Each command module (``fetch``, ``rasterize``, ``train``, ``sample``, ``compare``,
``evaluator``, ``calibrate``) exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Command modules import torch only inside ``run`` so that ``sketchgen
--help`` and argument errors stay instant.

Expected errors are one line on stderr, ``sketchgen COMMAND: error: ...``, never a traceback:

- exit status 2: a bad argument, config, data source, checkpoint or output folder
  (``sketchgen.errors.UsageError`` and its subclasses), found before any work starts;
- exit status 1: the environment failed the run (an ``OSError``: a download that failed or no
  longer matches its recorded sha256, ``sketchgen.errors.DownloadError``; a full disk; a file
  that cannot be read or written). Notes the error carries (e.g. a second failure while the
  run wrote its figures) follow, one line each: ``sketchgen COMMAND: note: ...``;
- exit status 1 also when ``sketchgen train`` diverged (``sketchgen.errors.DivergenceError``):
  ``sketchgen train: diverged at step N: ...``, naming the last good checkpoint kept;
- exit status 130: interrupted (Ctrl-C), ``sketchgen COMMAND: interrupted``.

Anything else is a bug and keeps its traceback. :func:`as_flags` is the one place that knows
which flag allows what an ``OutputError`` refused.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from sketchgen.errors import OutputError, UsageError

COMMANDS = ("fetch", "rasterize", "train", "sample", "compare", "evaluator", "calibrate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sketchgen",
        description="Rasterize, train, sample and evaluate generative models of Quick, Draw! data.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"sketchgen.cli.{name}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:
        _report(args.command, as_flags(error))
        return 2
    except OSError as error:
        _report(args.command, error)
        return 1
    except KeyboardInterrupt:
        print(f"sketchgen {args.command}: interrupted", file=sys.stderr)
        return 130


def as_flags(error: UsageError) -> UsageError:
    """The error naming the command's flag (``--overwrite``) where the library names the
    parameter that allows the action (``overwrite=True``)."""
    if isinstance(error, OutputError) and error.allowed_by is not None:
        return UsageError(error.with_remedy(f"--{error.allowed_by}"))
    return error


def _report(command: str, error: BaseException) -> None:
    """The error on one line (a message of several lines is joined), then its notes."""
    print(f"sketchgen {command}: error: {_one_line(str(error)) or type(error).__name__}",
          file=sys.stderr)
    for note in getattr(error, "__notes__", ()):
        print(f"sketchgen {command}: note: {_one_line(str(note))}", file=sys.stderr)


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


if __name__ == "__main__":
    sys.exit(main())
