"""``sketchgen fetch``: download category files into the cache and print their local paths.

With a mirror folder (``--mirror`` or ``QUICKDRAW_MIRROR``) nothing is copied: the paths
printed are the mirror's own files. ``--limit N`` downloads only a head of each file (its
first N drawings), which a later fetch with a bigger N or none makes longer.
"""

from __future__ import annotations

import argparse
import sys

from sketchgen.data import sources
from sketchgen.errors import UsageError

HELP = "Download Quick, Draw! category files (resumable, checked) and print their local paths."


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "categories",
        nargs="+",
        metavar="CATEGORY",
        help="Google category names (quote names with spaces, e.g. 'coffee cup')",
    )
    parser.add_argument(
        "--format",
        choices=tuple(sources.FORMATS),
        default="simplified",
        help="which of Google's files to fetch (default: simplified)",
    )
    parser.add_argument(
        "--mirror",
        metavar="M",
        help="a local folder or http(s) URL in the layout of Google's bucket, replacing it "
        "(default: $QUICKDRAW_MIRROR, else Google's bucket)",
    )
    parser.add_argument(
        "--limit",
        type=_positive,
        metavar="N",
        help="download only the first N drawings of each file: lines of ndjson, rows of "
        "numpy_bitmap (sketchrnn .npz files come whole; mirror folders are read in place)",
    )


def run(args: argparse.Namespace) -> int:
    # Every name and the mirror are checked before the first byte is downloaded.
    try:
        for name in args.categories:
            sources.check_category(name)
        sources.resolve_mirror(args.mirror)
    except ValueError as error:
        raise UsageError(str(error)) from None
    for name in args.categories:
        try:
            path = sources.resolve(name, args.format, args.mirror, limit=args.limit)
        except OSError as error:  # a failed download, or a file the mirror folder lacks
            print(f"sketchgen fetch: error: {error}", file=sys.stderr)
            return 1
        print(path, flush=True)
    return 0
