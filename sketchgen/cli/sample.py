"""``sketchgen sample RUN --n 1000 [--category cat] [--seed S] -o samples.npy|grid.png
[--overwrite]``."""

from __future__ import annotations

import argparse

from sketchgen.config import SAMPLE_SEED
from sketchgen.runtime import DEVICE

HELP = "sample a trained run: .npy uint8 (n, size*size) white-on-black, or a .png grid"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="a `sketchgen train` run directory")
    parser.add_argument("--n", type=int, default=64, help="how many samples (default: 64)")
    parser.add_argument("--category", default=None,
                        help="class to draw (conditional models); default: all classes in turn")
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED,
                        help=f"same seed, same samples (default: {SAMPLE_SEED})")
    parser.add_argument("-o", "--out", required=True, metavar="FILE",
                        help="samples.npy (uint8 (n, size*size), labels in FILE.json) or "
                             "grid.png; strokes models also write FILE's stem .ndjson")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace FILE (and the files written with it) if they exist")
    parser.add_argument("--device", default=DEVICE,
                        help=f"torch device, or auto: CUDA, then MPS, else CPU (default: {DEVICE}; "
                             "cpu gives the same samples on every machine)")


def run(args: argparse.Namespace) -> int:
    from sketchgen.training.sampling import check_request, load_run, write_samples

    check_request(args.n, args.out)
    loaded = load_run(args.run_dir, args.device)
    for path in write_samples(loaded, args.n, args.out, args.category, args.seed,
                              overwrite=args.overwrite):
        print(path)
    return 0
