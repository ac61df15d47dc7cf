"""``sketchgen rasterize``: ndjson drawings -> one ``uint8`` ``.npy`` of shape ``(N, size*size)``.

Google's ``numpy_bitmap`` layout and geometry (byte-identical at 28 px), rows in input order,
rendered by worker processes. The job is resumable: rerun the same command after a crash and
it renders only what is missing (see ``rasterize.parallel``).

Exit status: 0 on success; 1 on a bad line with ``--on-error raise`` (``FILE:LINE: reason``
on stderr, the output left as it was); 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rasterize.geometry import GOOGLE_SIZE
from sketchgen.errors import UsageError
from sketchgen.outputs import check_free

HELP = "Render ndjson drawings to a uint8 .npy of shape (N, size*size), Google's bitmap layout."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Interrupted? Rerun the same command: shards finished in .OUT.npy.parts next to the "
        "output are reused, and OUT.npy is replaced only once every row is written."
    )
    parser.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT.ndjson", help="ndjson files (or .gz)"
    )
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.npy")
    parser.add_argument("--size", type=int, default=GOOGLE_SIZE,
                        help=f"bitmap side in pixels (default {GOOGLE_SIZE}, Google's)")
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: all cores)"
    )
    parser.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="on a bad line: stop with FILE:LINE (raise, default) or leave it out and count it",
    )
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT.npy if it exists (an interrupted run needs no flag)")


def _check(args: argparse.Namespace) -> None:
    for path in args.inputs:
        if not path.is_file():
            raise UsageError(f"no such input file: {path}")
    if args.output.suffix != ".npy":
        raise UsageError(f"the output must be a .npy file, got {args.output}")
    if not args.output.parent.is_dir():
        raise UsageError(f"the output's folder does not exist: {args.output.parent}")
    if args.size < 1:
        raise UsageError(f"--size must be at least 1, got {args.size}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    check_free([args.output], args.overwrite)  # a finished OUT.npy is the user's now


def run(args: argparse.Namespace) -> int:
    _check(args)
    from tqdm import tqdm

    from rasterize.ndjson_reader import NdjsonError
    from rasterize.parallel import RasterizeOptions, rasterize_files

    options = RasterizeOptions(size=args.size, workers=args.workers, on_error=args.on_error)
    with tqdm(unit=" lines", file=sys.stderr, desc="rasterize") as bar:
        try:
            result = rasterize_files(args.inputs, args.output, options, progress=bar.update)
        except NdjsonError as error:
            bar.close()
            print(error, file=sys.stderr)
            return 1
    side = f"{args.size}x{args.size}"
    print(f"wrote {result.rows} drawings ({side}) to {args.output}")
    if args.on_error == "skip":
        print(result.skipped.summary())
    if result.reused_shards:
        print(f"resumed: reused {result.reused_shards} of {result.shards} finished shards")
    return 0
