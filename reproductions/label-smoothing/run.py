"""Label smoothing (reference 003): ``config.toml`` at several seeds, then the gradient-norm
figure and the summary of the seeds.

    python3 reproductions/label-smoothing/run.py --out reproductions/label-smoothing/report

Each seed is the comparison of ``config.toml`` with its ``seed``, ``name`` and ``out``
replaced (``OUT/seed<S>/``, a report of ``sketchgen compare``; a rerun reuses its finished
runs). Then ``OUT/grad_norms.png`` (per-layer gradient norms over training, soft against hard
labels, the band spanning the seeds), ``OUT/grad_norms_before_after.png`` (brownlee-cgan
against smooth-cgan in the layers they share), ``OUT/grad_norms.csv`` (those norms) and
``OUT/summary.md`` (each model's scores per seed, their mean, and the soft - hard difference
per seed).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from sketchgen.comparison.config import WORK, load_config
from sketchgen.comparison.run import run_comparison
from sketchgen.figures import gradient_norms, plot_gradient_norms
from sketchgen.outputs import claim
from sketchgen.report.results import REAL_FLOOR
from sketchgen.report.tables import Table, format_number, markdown_table
from sketchgen.runtime import atomic_write, torch_threads

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "config.toml"
KIND = "label-smoothing reproduction"  # the output folder's marker
SOFT, HARD, BEFORE = "soft labels", "hard labels", "brownlee-cgan"  # the config's labels
# Each network's input-side ("bottom") and output-side ("top") layers and those between, as
# smooth-cgan's parameters are named in the log: G's dense stem, its transposed convolutions
# and last convolution; D's convolutions and its dense head.
LAYERS = ("G.stem.dense.weight", "D.body.0.weight", "G.body.0.weight", "D.body.2.weight",
          "G.body.3.weight", "D.body.5.weight", "G.body.6.weight", "D.head.weight")
# The layers brownlee-cgan shares with smooth-cgan by name: G's bottom, D's bottom and top.
SHARED_LAYERS = ("G.stem.dense.weight", "D.body.0.weight", "D.head.weight")
SCORES = ("fid", "kid", "precision", "recall", "recognizability")
EARLY, LATE = 50, 125  # the steps that are "early on" and "once trained" in the norms table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "report")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (one is fastest on a shared machine)")
    args = parser.parse_args()
    base = load_config(CONFIG)
    folders = {seed: args.out / f"seed{seed}" for seed in args.seeds}
    with claim(args.out, KIND), torch_threads(args.threads):
        for seed, folder in folders.items():
            run_comparison(dataclasses.replace(base, seed=seed, name=f"{base.name}-seed{seed}",
                                               out=str(folder)))
        logs = {arm: [folder / WORK / "runs" / arm / "log.jsonl" for folder in folders.values()]
                for arm in (SOFT, HARD, BEFORE)}
        seeds = f"seeds {', '.join(map(str, folders))}"
        plot_gradient_norms({arm: logs[arm] for arm in (SOFT, HARD)}, LAYERS,
                            args.out / "grad_norms.png", columns=2,
                            title=f"smooth-cgan, soft vs hard labels: gradient norms, {seeds}")
        plot_gradient_norms({"smooth-cgan (soft labels)": logs[SOFT], BEFORE: logs[BEFORE]},
                            SHARED_LAYERS, args.out / "grad_norms_before_after.png", columns=3,
                            title=f"Reference 003's before and after: gradient norms, {seeds}")
        write_norms(folders, args.out / "grad_norms.csv")
        write_summary(folders, logs, args.out / "summary.md")


def write_norms(folders: dict[int, Path], path: Path) -> None:
    """Every logged norm of the drawn layers: one row per arm, seed, layer and step."""
    rows = [("arm", "seed", "layer", "step", "norm")]
    for arm, layers in ((SOFT, LAYERS), (HARD, LAYERS), (BEFORE, SHARED_LAYERS)):
        for seed, folder in folders.items():
            log = folder / WORK / "runs" / arm / "log.jsonl"
            for layer in layers:
                steps, norms, _, _ = gradient_norms([log], layer)
                rows += [(arm, seed, layer, int(step), f"{norm:.6g}")
                         for step, norm in zip(steps, norms, strict=True)]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            csv.writer(handle).writerows(rows)

    atomic_write(path, write)


def write_summary(folders: dict[int, Path], logs: dict[str, list[Path]], path: Path) -> None:
    """Each arm's scores per category: FID per seed, then the mean (and standard deviation)
    over the seeds; the paired soft - hard difference per seed; the gradient norms early and
    late in training."""
    results = pd.concat([pd.read_csv(folder / "results.csv") for folder in folders.values()])
    results = results[results.model != REAL_FLOOR]
    seeds = sorted(folders)
    rows = []
    for (category, model), group in results.groupby(["category", "model"], sort=False):
        fid = group.set_index("seed").fid
        rows.append((category, model, *(format_number(fid[seed]) for seed in seeds),
                     *(_mean_sd(group[score]) for score in SCORES)))
    scores = Table(("Category", "Labels", *(f"FID seed {seed}" for seed in seeds),
                    *(f"{score} mean ± sd" for score in SCORES)), tuple(rows),
                   "ll" + "r" * (len(seeds) + len(SCORES)))
    rows = []
    for category, group in results.groupby("category", sort=False):
        for score in ("fid", "kid"):
            table = group.pivot(index="seed", columns="model", values=score)
            change = table[SOFT] - table[HARD]
            rows.append((category, score, *(format_number(change[seed]) for seed in seeds),
                         format_number(change.mean())))
    difference = Table(("Category", "Score", *(f"seed {seed}" for seed in seeds), "mean"),
                       tuple(rows), "ll" + "r" * (len(seeds) + 1))
    text = (f"# Label smoothing: {len(seeds)} seeds (written by run.py)\n\n"
            f"{markdown_table(scores)}\n"
            "Soft - hard labels, paired by seed (negative: soft labels better):\n\n"
            f"{markdown_table(difference)}\n"
            f"Gradient norms, geometric mean over the seeds and the logged steps up to step "
            f"{EARLY} (early) and after step {LATE} (late):\n\n"
            f"{markdown_table(norms_table(logs))}")
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def norms_table(logs: dict[str, list[Path]]) -> Table:
    """Per layer and model, the gradient norm early and late in training (geometric means)."""
    rows = []
    for arm, layers in ((SOFT, LAYERS), (HARD, LAYERS), (BEFORE, SHARED_LAYERS)):
        for layer in layers:
            steps, norms, _, _ = gradient_norms(logs[arm], layer)
            rows.append((layer, arm, *(format_number(float(np.exp(np.log(norms[part]).mean())))
                                      for part in (steps <= EARLY, steps > LATE))))
    rows.sort(key=lambda row: LAYERS.index(row[0]))  # each layer's models together
    return Table(("Layer", "Model", "early", "late"), tuple(rows), "llrr")


def _mean_sd(values: pd.Series) -> str:
    return f"{format_number(values.mean())} ± {format_number(values.std())}"


if __name__ == "__main__":
    main()
