"""The comparison run behind ``sketchgen compare CONFIG.toml``: :func:`run_comparison`.

Every model is trained (or loaded) on the same categories, sampled, and scored identically:
the same real reference drawings, the same rasterizer, the same classifier features. The
settings are ``sketchgen.comparison.config``'s, the runs ``sketchgen.comparison.plan``'s, the
real drawings and the evaluator ``sketchgen.comparison.real``'s; this module owns the run
itself -- training or resuming each planned run, sampling and scoring it, the sample grids and
copied figures -- and what it produces (:class:`Outcome`, the report folder).

Working files (training runs, the classifier) go to ``<out>/_work/``; a killed comparison
resumes its runs when started again, and a run whose settings changed is trained afresh.

The report folder is claimed and locked for the whole run (``sketchgen.outputs``): a new or
empty folder, or one an earlier comparison made; its marker records the files the report
wrote, and only those are removed before a new report is written. Model labels and the name
are file names (``outputs.check_name``).

Validation happens before any training: unknown model, category or option, an impossible
size, a ``load`` directory without a fitting checkpoint, too few drawings for the held-out
sets -- each is a one-line :class:`sketchgen.errors.UsageError`.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from sketchgen import outputs
from sketchgen.comparison.config import CompareConfig
from sketchgen.comparison.plan import PlannedRun, figures_name, grid_path, plan_runs, run_title
from sketchgen.comparison.real import evaluate_classifier, get_classifier, load_real
from sketchgen.errors import UsageError
from sketchgen.evaluation.classifier import Classifier
from sketchgen.evaluation.evaluator import Evaluation
from sketchgen.evaluation.scoring import Scorer, make_scorer
from sketchgen.figures import save_grid
from sketchgen.report import writer as report
from sketchgen.report.figures import plot_confusion
from sketchgen.report.results import REAL_FLOOR
from sketchgen.runtime import choose_device, derived_seed
from sketchgen.training.config import load_toml
from sketchgen.training.harness import train
from sketchgen.training.run_folder import CURVES, RunFolder
from sketchgen.training.sampling import LoadedRun, load_run, sample_images, sample_labels

REPORT_KIND = "report"  # the report folder's kind in its sketchgen.outputs marker
GRID_SAMPLES = 64  # drawings shown per sample grid (8 x 8)
GRID_COLUMNS = 8
CONFUSION = "confusion.png"


@dataclass
class Outcome:
    """What a comparison produced; the report is written from it."""

    results: pd.DataFrame
    figures: list[report.Figure]
    info: report.RunInfo
    written: list[Path]


def run_comparison(config: CompareConfig, benchmarks: Path | None = None,
                   overwrite: bool = False) -> Outcome:
    """Validate, train or load, sample, score and write the report; see the module doc.

    ``overwrite``: write into a report folder that is neither empty nor one the suite made
    (replacing files of the names a report writes, deleting nothing); see sketchgen.outputs.
    """
    began = time.perf_counter()
    if benchmarks is not None and not benchmarks.is_file():
        raise UsageError(f"benchmarks = {str(benchmarks)!r}: no such file")
    plans = plan_runs(config)
    device = choose_device(config.device)
    out_dir = config.out_dir
    with outputs.claim(out_dir, REPORT_KIND, overwrite) as folder:
        _say(f"{len(plans)} runs planned; reading the real drawings")
        real = load_real(config)
        classifier = get_classifier(config, real, device)
        clear_previous_report(folder)

        test = evaluate_classifier(classifier, real)
        title = (f"{classifier.feature_name}: test accuracy {test.accuracy:.3f} on {test.n} "
                 "held-out drawings")
        plot_confusion(test, out_dir / CONFUSION, title)
        _say(f"classifier ready; scoring the real-vs-real floor (at {_minutes(began)})")
        scorer = make_scorer(classifier, real.reference, config.bootstrap, config.ci_level,
                             config.seed)
        collected = _Collected(config, scorer, describe_device(device), out_dir,
                               figures=[report.Figure(CONFUSION, "Classifier confusion on "
                                                                 "held-out real drawings")])
        for name in real.class_names:
            collected.add(REAL_FLOOR, name, 0, 0, real.second[name])
        for number, plan in enumerate(plans, 1):
            folder.record(out_dir / figure.path for figure in collected.figures)  # so far
            _evaluate_run(plan, number, len(plans), device, collected, began, overwrite)

        results = pd.DataFrame(collected.rows)
        info = report.RunInfo(
            name=config.name, label=config.label, categories=real.class_names,
            size=config.size, classifier=_classifier_line(classifier, test),
            ci_level=config.ci_level, elapsed_s=time.perf_counter() - began,
            notes=_notes(test))
        written = report.write_report(results, out_dir, info, collected.figures, benchmarks)
        folder.record([*written, *(out_dir / figure.path for figure in collected.figures)])
    return Outcome(results, collected.figures, info, written)


def clear_previous_report(folder: outputs.Claim) -> None:
    """Remove what earlier comparisons wrote there -- the files its marker records, never
    `_work` or anyone else's files -- so the folder holds no figure or table of a model that
    is no longer in the config. A folder that is not the suite's (``overwrite``) keeps all."""
    folder.remove_recorded()


def describe_device(device: torch.device) -> str:
    """The device as the report states it: CUDA's card name, or the CPU thread count."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type


@dataclass
class _Collected:
    """Rows of the results table and figures of the report, gathered as the run goes."""

    config: CompareConfig
    scorer: Scorer
    device: str  # as the report states it
    out_dir: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    figures: list[report.Figure] = field(default_factory=list)

    def add(self, model: str, category: str, steps: int, batch_size: int,
            images: np.ndarray) -> None:
        """Score ``images`` as ``model``'s drawings of ``category`` and show them in a grid."""
        self.rows.append({
            "model": model, "category": category, "n": self.config.n_samples,
            "seed": self.config.seed, "steps": steps, "batch_size": batch_size,
            "device": self.device, "feature_space": self.scorer.classifier.feature_name,
            **self.scorer.score(category, images)})
        self.figures.append(_grid(images, self.out_dir, model, category))


def _evaluate_run(plan: PlannedRun, number: int, total: int, device: torch.device,
                  collected: _Collected, began: float, overwrite: bool) -> None:
    """Train (or load) one planned run, sample every category it covers, score them."""
    what = run_title(plan)
    _say(f"[{number}/{total}] {what} (at {_minutes(began)})")
    if plan.load_dir is None:
        train_or_resume(plan, collected.config.work_dir, overwrite)
    loaded = load_run(plan.run_dir, str(device))
    collected.figures += copy_run_figures(plan.run_dir, collected.out_dir, figures_name(plan),
                                          what)
    config = collected.config
    for category in tqdm(plan.categories, desc=f"sample+score {plan.spec.name}",
                         file=sys.stderr, dynamic_ncols=True, leave=False):
        images = sample_category(loaded, plan, category, config.n_samples, config.seed)
        collected.add(plan.spec.name, category, loaded.step, plan.spec.batch_size, images)


# -- training and sampling ----------------------------------------------------------------------


def train_or_resume(plan: PlannedRun, work_dir: Path, overwrite: bool = False) -> None:
    """Train the planned run in its folder under ``work_dir``; a finished or killed run with
    the same settings is resumed (a finished one returns at once), one with other settings
    deleted -- only if the suite created it (``outputs.remove_folder``) -- and redone.
    ``overwrite``: as for ``train``."""
    run = RunFolder(plan.train.out)
    if run.config.exists() and load_toml(run.config) != plan.train:
        outputs.remove_folder(run.path, work_dir, RunFolder.kind)
    train(plan.train, resume=True, overwrite=overwrite)


def sample_category(loaded: LoadedRun, plan: PlannedRun, category: str, n: int,
                    seed: int) -> np.ndarray:
    """N drawings meant to be ``category`` (by label, or from a one-category run)."""
    labels = sample_labels(loaded, n, category if plan.conditional else None)
    stream = derived_seed(seed, f"compare:{plan.spec.name}:{category}")
    return sample_images(loaded, labels, stream)


# -- the report's figures and lines -------------------------------------------------------------


def _grid(images: np.ndarray, out_dir: Path, model: str, category: str) -> report.Figure:
    """The first 64 drawings as an 8 x 8 grid for the index's samples table."""
    relative = grid_path(model, category)
    save_grid(images[:GRID_SAMPLES], out_dir / relative, columns=GRID_COLUMNS)
    return report.Figure(relative, f"{model}, {category}", model, category)


def copy_run_figures(run_dir: Path, out_dir: Path, name: str, what: str) -> list[report.Figure]:
    """The run's own PNG figures -- loss curves, anything a model adds (e.g. Sketch-RNN
    reconstructions) -- copied into ``training/<name>/`` so the report stands alone. The learning
    GIF stays in the run folder: ~1 MB each, too heavy for a report meant to be committed."""
    figures = []
    for source in RunFolder(run_dir).figures():
        relative = f"training/{name}/{source.name}"
        (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, out_dir / relative)
        caption = "Training curves" if source.name == CURVES else source.stem.capitalize()
        figures.append(report.Figure(relative, f"{caption}: {what}"))
    return figures


def _classifier_line(classifier: Classifier, test: Evaluation) -> str:
    per_class = ", ".join(f"{name} {accuracy:.3f}"
                          for name, accuracy in test.per_class_accuracy.items())
    epochs = f", best epoch {classifier.best_epoch}" if classifier.best_epoch else ""
    return (f"{classifier.feature_name} (width-{classifier.config.width} CNN{epochs}); "
            f"test accuracy {test.accuracy:.3f} on {test.n} held-out drawings ({per_class})")


def _notes(test: Evaluation) -> tuple[str, ...]:
    pairs = "; ".join(f"{true} → {predicted} {rate:.3f}"
                      for true, predicted, rate in test.most_confused(3))
    return (f"Most confused (true → predicted, share of true): {pairs}",) if pairs else ()


def _minutes(began: float) -> str:
    return f"{(time.perf_counter() - began) / 60:.1f} min"


def _say(message: str) -> None:
    """A phase line on stderr that does not break the progress bars."""
    tqdm.write(message, file=sys.stderr)

