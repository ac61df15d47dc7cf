"""``sketchgen train MODEL --categories cat dog ... [--config run.toml] [--resume] [--overwrite]``.

``--steps N`` and ``--seconds S`` are the run's budgets: it stops at step N, or after the first
step at which its training seconds reach S (``sketchgen.training.harness``).

Data parallel with torchrun (``--batch-size`` is the global batch, split evenly over ranks;
NCCL with one GPU per process when CUDA is available, gloo on CPU; rank 0 writes the run)::

    torchrun --standalone --nproc_per_node 4 -m sketchgen train sngan --categories cat dog
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \
        -m sketchgen train sngan --categories cat dog --out /shared/runs/sngan
"""

from __future__ import annotations

import argparse
import os
import sys

from sketchgen.cli.arguments import add_config_arguments, config_from_args
from sketchgen.errors import DivergenceError
from sketchgen.models.registry import MODELS

HELP = "train a registered model (GAN presets, Sketch-RNN) on Quick, Draw! categories"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "models:\n" + "\n".join(
        f"  {name:<14} {entry.summary}" for name, entry in MODELS.items())
    parser.add_argument("model", nargs="?", default=None, metavar="MODEL",
                        help="registered model name (default: from --config, else sngan)")
    parser.add_argument("--config", metavar="TOML",
                        help="a TOML file of these settings; explicit flags override it")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint.pt if it exists (else start afresh)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into OUT even if it is neither empty nor a run folder "
                             "(files of the names a run writes are replaced; nothing is "
                             "deleted)")
    add_config_arguments(parser, skip=("model",))


def run(args: argparse.Namespace) -> int:
    from sketchgen.training.harness import train

    config = config_from_args(args)
    try:
        result = train(config, resume=args.resume, overwrite=args.overwrite)
    except DivergenceError as error:
        print(f"sketchgen train: diverged at {error}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for the run
        return 0
    losses = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
    budget = (f", {result.train_seconds:.1f} training seconds of --seconds {config.seconds:g}"
              if result.stopped == "seconds" else "")
    print(f"{config.model}: step {result.step} done in {result.run_dir}{budget}"
          + (f" ({losses})" if losses else ""))
    return 0
