"""``sketchgen compare CONFIG.toml [--jobs N] [--executor local|slurm] [--benchmarks
reports/benchmarks.json] [--out DIR] [--overwrite]``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

HELP = "train or load every model of a config, sample, score alike, and write the report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG.toml",
                        help="comparison config (see configs/cpu-small.toml)")
    parser.add_argument("--benchmarks", type=Path, default=None, metavar="JSON",
                        help="pytest-benchmark JSON (--benchmark-json) rendered as the "
                             "throughput table")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="report folder (default: the config's `out`, else reports/NAME)")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="train N runs at once in worker processes (default: the config's "
                             "[executor] jobs); any N gives the same numbers")
    parser.add_argument("--executor", choices=("local", "slurm"), default=None,
                        help="where the runs train: here, or one Slurm job each through "
                             "submitit (default: the config's [executor] kind)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into DIR even if it is neither empty nor a report folder "
                             "(files of the names a report writes are replaced; nothing is "
                             "deleted)")


def run(args: argparse.Namespace) -> int:
    from sketchgen.comparison.config import load_config
    from sketchgen.comparison.run import run_comparison
    from sketchgen.report.writer import INDEX, TABLE_MD

    config = load_config(args.config)
    if args.out is not None:
        config = dataclasses.replace(config, out=args.out)
    executor = {key: value for key, value in (("jobs", args.jobs), ("kind", args.executor))
                if value is not None}
    if executor:
        config = dataclasses.replace(config, executor=dataclasses.replace(config.executor,
                                                                          **executor))
    outcome = run_comparison(config, args.benchmarks, overwrite=args.overwrite)
    print((config.out_dir / TABLE_MD).read_text(encoding="utf-8"))
    print(f"report: {config.out_dir / INDEX} ({outcome.info.elapsed_s / 60:.1f} min)",
          file=sys.stderr)
    return 0
