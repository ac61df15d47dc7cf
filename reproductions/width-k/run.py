"""Width-k classifier (reference 002, the Copenhagen "QuickDraw Data: large CNNs and GANs"
slides): test accuracy against the width k for each variant of the network (plain, batch
norm, L2, the fully connected baseline), and the category pairs most often confused.

    python3 reproductions/width-k/run.py --out reproductions/width-k/report --workers 2
    python3 reproductions/width-k/run.py --config reproductions/width-k/google-50x2000.toml \\
        --out runs/width-k-google --device auto

A config (TOML) names the data, the k values, the ``[classifier]`` settings every run shares
and the ``[variants.NAME]`` tables of ``ClassifierConfig`` fields each variant sets on top.
Every run is ``sketchgen.evaluation.evaluator.fit_and_evaluate`` on the same 80/10/10 split,
on one torch thread (``--workers`` runs several at once, each on its own thread). A run's
result goes to ``OUT/runs/<variant>-k<k>.json`` as soon as it ends, and a rerun keeps every
result whose settings and data are the same, so an interrupted sweep resumes where it
stopped. Then ``OUT/results.json``, ``results.md``, ``accuracy_vs_k.png``, ``confusion.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sketchgen.config import (
    DRAWINGS_PER_CLASS,
    MAX_CLASSES,
    WIDTHS,
    check_fields,
    from_mapping,
    from_toml,
    listed,
    setting,
)
from sketchgen.errors import ConfigError, DownloadError, FieldError, UsageError
from sketchgen.evaluation.classifier import ClassifierConfig
from sketchgen.evaluation.evaluator import Evaluation, fit_and_evaluate, training_images
from sketchgen.outputs import check_name, claim
from sketchgen.report.figures import plot_confusion
from sketchgen.runtime import atomic_write, torch_threads

HERE = Path(__file__).resolve().parent
KIND = "width-k sweep"  # the output folder's marker
# Fixed by the sweep (width) or by the data, which are rendered once with [classifier]'s settings
SWEPT, RENDERED = ("width",), ("size", "channels", "line_width", "padding")


@dataclass(frozen=True)
class Sweep:
    """One sweep: the data, the k values, the settings shared by every run, the variants."""

    label: str  # what the data are, the report's first line
    categories: tuple[str, ...] = setting(max_items=MAX_CLASSES)  # Google names or data files
    # the first N drawings of each category; a source with fewer is refused
    per_class: int = setting(within=DRAWINGS_PER_CLASS)
    widths: tuple[int, ...] = setting(within=WIDTHS, max_items=1_000)  # the k values swept
    # [classifier]: ClassifierConfig fields shared by every run (width is the sweep's)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    # [variants.NAME]: ClassifierConfig fields a variant sets over [classifier]; {} = plain
    variants: dict[str, dict[str, Any]] = field(default_factory=lambda: {"none": {}})
    pairs_variant: str = "none"  # the variant whose run at pairs_width gives the pairs
    pairs_width: int = setting(12, within=WIDTHS)  # the reference's table is from k = 12
    top_pairs: int = setting(14, within=(1, 10_000))  # rows of the table (the reference: 14)

    def __post_init__(self) -> None:
        for name in ("categories", "widths"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        check_fields(self)
        if not self.widths or not self.variants:
            raise FieldError("widths" if not self.widths else "variants", "must not be empty")
        for name in self.variants:
            check_name(name, f"variants.{name}")
            self.config(name, self.widths[0])  # a bad variant fails before any work
        if self.pairs_variant not in self.variants or self.pairs_width not in self.widths:
            raise FieldError("pairs_variant", f"{self.pairs_variant!r} at k = {self.pairs_width}"
                                              " is not one of the sweep's runs")

    def config(self, variant: str, width: int) -> ClassifierConfig:
        """The ClassifierConfig of one run."""
        table = self.variants.get(variant)
        if not isinstance(table, dict):
            raise FieldError(f"variants.{variant}", "must be a table of ClassifierConfig fields")
        if fixed := sorted(set(table) & {*SWEPT, *RENDERED}):
            raise FieldError(f"variants.{variant}", f"cannot set {', '.join(fixed)}: the "
                                                    "sweep's, or [classifier]'s for the data")
        base = dataclasses.replace(self.classifier, width=width)
        return from_mapping(ClassifierConfig, table, base=base, where=f"variants.{variant}")

    def runs(self) -> list[tuple[str, int]]:
        return [(variant, width) for variant in self.variants for width in self.widths]


def read_sweep(tables: dict[str, Any]) -> Sweep:
    if isinstance(tables.get("classifier"), dict) and "width" in tables["classifier"]:
        raise ConfigError("classifier.width: the sweep sets it (widths)")
    return from_mapping(Sweep, tables)


# --- the runs -------------------------------------------------------------------------------

_DATA: tuple = ()  # (images, labels, class names): this process's copy, set by _receive


def _receive(*data) -> None:
    global _DATA
    _DATA = data


def run_one(variant: str, width: int, settings: dict, device: str) -> dict[str, Any]:
    """Train and test one classifier on the data (one torch thread); its result record."""
    images, labels, names = _DATA
    config = ClassifierConfig.from_dict(settings)
    start = time.perf_counter()
    with torch_threads(1):
        classifier, test = fit_and_evaluate(images, labels, names, config, device)
    best = classifier.history[classifier.best_epoch - 1]
    return {"variant": variant, "width": width, "settings": settings,
            "parameters": sum(p.numel() for p in classifier.model.parameters()),
            "test_accuracy": test.accuracy, "test_drawings": test.n,
            "best_epoch": classifier.best_epoch, "epochs": len(classifier.history),
            "train_loss": best["train_loss"], "valid_loss": best["valid_loss"],
            "seconds": round(time.perf_counter() - start, 1), "history": classifier.history,
            "confusion": test.confusion.tolist()}


def record_path(out: Path, variant: str, width: int) -> Path:
    return out / "runs" / f"{variant}-k{width}.json"


def finished(path: Path, settings: dict, data_sha256: str) -> dict | None:
    """The run's saved record, if it was made with these settings on these data."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same = record.get("settings") == settings and record.get("data_sha256") == data_sha256
    return record if same else None


def sweep_runs(sweep: Sweep, data: tuple, out: Path, workers: int, device: str) -> list[dict]:
    """Every run's record: the saved ones kept, the others trained (the widest first, so
    parallel workers finish together) and saved as each ends."""
    images, labels, _ = data
    data_sha256 = hashlib.sha256(np.ascontiguousarray(images).tobytes()
                                 + labels.astype(np.int64).tobytes()).hexdigest()
    records, todo = {}, []
    for variant, width in sweep.runs():
        settings = sweep.config(variant, width).to_dict()
        saved = finished(record_path(out, variant, width), settings, data_sha256)
        if saved:
            records[variant, width] = saved
        else:
            todo.append((variant, width, settings))
    todo.sort(key=lambda job: -job[1])
    print(f"{len(records)} runs done before, {len(todo)} to train", file=sys.stderr)

    def save(record: dict) -> None:
        record = {**record, "data_sha256": data_sha256}
        records[record["variant"], record["width"]] = record
        path = record_path(out, record["variant"], record["width"])
        path.parent.mkdir(exist_ok=True)
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record) + "\n"))
        print(f"{record['variant']:>12} k={record['width']:<3} test accuracy "
              f"{record['test_accuracy']:.3f} (best epoch {record['best_epoch']} of "
              f"{record['epochs']}, {record['seconds']:.0f} s)", file=sys.stderr)

    if workers == 1:
        _receive(*data)
        for job in todo:
            save(run_one(*job, device))
    else:  # spawned: each worker gets the data once, and a fresh torch
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, context, initializer=_receive, initargs=data) as pool:
            for future in as_completed([pool.submit(run_one, *job, device) for job in todo]):
                save(future.result())
    return [records[run] for run in sweep.runs()]


# --- the report -----------------------------------------------------------------------------


def plot_sweep(records: list[dict], sweep: Sweep, path: Path) -> Path:
    """Test accuracy and best epoch against k, one line per variant."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 6.4), layout="constrained")
    FigureCanvasAgg(figure)
    accuracy, epochs = figure.subplots(2, 1, sharex=True)
    for variant in sweep.variants:
        runs = [r for r in records if r["variant"] == variant]
        widths = [r["width"] for r in runs]
        accuracy.plot(widths, [r["test_accuracy"] for r in runs], marker="o", label=variant)
        epochs.plot(widths, [r["best_epoch"] for r in runs], marker="o", label=variant)
    accuracy.axhline(1 / len(sweep.categories), color="grey", linestyle=":", label="chance")
    accuracy.set_ylabel("test accuracy")
    epochs.set_ylabel(f"best epoch (of at most {sweep.classifier.max_epochs})")
    epochs.set_xlabel("k (filters k, 2k, 4k, 8k; 8k dense units)")
    epochs.set_xscale("log", base=2)
    epochs.set_xticks(sweep.widths, [str(k) for k in sweep.widths])
    for axes in (accuracy, epochs):
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    accuracy.set_title(sweep.label, fontsize="medium")
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))


def pairs_evaluation(records: list[dict], sweep: Sweep, class_names: list[str]) -> Evaluation:
    (record,) = [r for r in records if (r["variant"], r["width"])
                 == (sweep.pairs_variant, sweep.pairs_width)]
    return Evaluation(class_names, np.asarray(record["confusion"], dtype=np.int64))


def results_table(records: list[dict], sweep: Sweep, pairs: Evaluation, counts: str) -> str:
    """results.md: accuracy against k per variant, then the confused pairs."""
    by_run = {(r["variant"], r["width"]): r for r in records}
    variants = list(sweep.variants)
    lines = [f"# {sweep.label}", "", counts, "",
             "Test accuracy at the best epoch (lowest validation loss), best epoch / epochs "
             "run; parameters of the " + variants[0] + " network.", "",
             "| k | parameters | " + " | ".join(variants) + " |",
             "|---:|---:|" + "---:|" * len(variants)]
    for width in sweep.widths:
        cells = [f"{by_run[v, width]['test_accuracy']:.3f} ({by_run[v, width]['best_epoch']}/"
                 f"{by_run[v, width]['epochs']})" for v in variants]
        lines.append(f"| {width} | {by_run[variants[0], width]['parameters']:,} | "
                     + " | ".join(cells) + " |")
    total = sum(r["seconds"] for r in records)
    lines += ["", f"Training time, summed over the {len(records)} runs (one thread each): "
                  f"{total / 60:.1f} min.", "",
              f"## Most confused pairs ({sweep.pairs_variant}, k = {sweep.pairs_width}, "
              f"test accuracy {pairs.accuracy:.3f} on {pairs.n} drawings)", "",
              "Rate: the share of category 1's test drawings predicted as category 2 plus "
              "the share of 2's predicted as 1.", "",
              "| category 1 | category 2 | rate |", "|---|---|---:|"]
    lines += [f"| {a} | {b} | {rate:.3f} |" for a, b, rate in pairs.confused_pairs(sweep.top_pairs)]
    return "\n".join(lines) + "\n"


def summary(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in ("history", "confusion")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=HERE / "mirror.toml",
                        help="the sweep's TOML file (default: mirror.toml beside this script)")
    parser.add_argument("--out", type=Path, required=True, help="the report folder")
    parser.add_argument("--workers", type=int, default=1,
                        help="runs trained at once, one thread each (default: 1)")
    parser.add_argument("--device", default="cpu",
                        help="torch device of every run (default: cpu, reproducible bit for "
                             "bit; 'auto' picks CUDA where there is one)")
    args = parser.parse_args(argv)
    try:
        sweep = from_toml(args.config, read_sweep)
    except ConfigError as error:
        parser.error(str(error))
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    try:  # the data source is QUICKDRAW_MIRROR's, else Google's bucket (sketchgen.data)
        images, labels, names = training_images(sweep.categories, sweep.classifier,
                                                sweep.per_class)
    except (UsageError, DownloadError, ValueError) as error:
        parser.exit(1, f"{args.config}: {error}\n")
    counts = np.bincount(labels, minlength=len(names))
    if short := [f"{n} ({c})" for n, c in zip(names, counts, strict=True) if c < sweep.per_class]:
        parser.exit(1, f"{args.config}: per_class = {sweep.per_class}, but the data source has "
                       f"fewer for {listed(short)}\n")
    described = (f"{len(names)} categories x {sweep.per_class} drawings, split 80/10/10 "
                 "(train / early stopping / test) by `fit_and_evaluate`.")
    with claim(args.out, KIND):
        records = sweep_runs(sweep, (images, labels, names), args.out, args.workers,
                             args.device)
        pairs = pairs_evaluation(records, sweep, names)
        results = {"label": sweep.label, "categories": names, "per_class": sweep.per_class,
                   "runs": [summary(r) for r in records],
                   "confused_pairs": pairs.confused_pairs(sweep.top_pairs)}
        text = json.dumps(results, indent=1) + "\n"
        atomic_write(args.out / "results.json", lambda tmp: tmp.write_text(text))
        table = results_table(records, sweep, pairs, described)
        atomic_write(args.out / "results.md", lambda tmp: tmp.write_text(table))
        plot_sweep(records, sweep, args.out / "accuracy_vs_k.png")
        plot_confusion(pairs, args.out / "confusion.png",
                       f"{sweep.pairs_variant}, k = {sweep.pairs_width}: test accuracy "
                       f"{pairs.accuracy:.3f} on {pairs.n} drawings")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
