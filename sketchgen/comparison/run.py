"""The comparison run behind ``sketchgen compare CONFIG.toml``: :func:`run_comparison`.

Every model is trained (or loaded) on the same categories, sampled, and scored identically:
the same real reference drawings, the same rasterizer, the same classifier features. The
settings are ``sketchgen.comparison.config``'s, the runs ``sketchgen.comparison.plan``'s, the
real drawings and the evaluator ``sketchgen.comparison.real``'s; this module owns the run
itself -- the jobs of the plan handed to an executor (``sketchgen.comparison.executors``;
each trains, scores its learning curve and samples: ``sketchgen.comparison.jobs``), scoring
every run's drawings on the test sets, the calibration, the sample grids and copied figures --
and what it produces (:class:`Outcome`, the report folder).

The protocol: every model x category x seed is its own run; curves and checkpoint selection
use the validation set only; every final number is computed once, on the test set.

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

import dataclasses
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from sketchgen import outputs
from sketchgen.comparison.config import CompareConfig
from sketchgen.comparison.executors import execute
from sketchgen.comparison.jobs import RunJob, RunOutcome, curve_rows, evaluation_seconds
from sketchgen.comparison.plan import PlannedRun, figures_name, grid_path, plan_runs, run_title
from sketchgen.comparison.real import (
    CLASSIFIER,
    RealData,
    evaluate_classifier,
    get_classifier,
    load_real,
)
from sketchgen.errors import UsageError
from sketchgen.evaluation.calibration import calibrate
from sketchgen.evaluation.classifier import Classifier
from sketchgen.evaluation.evaluator import Evaluation
from sketchgen.evaluation.scoring import Scorer, make_scorer
from sketchgen.figures import save_grid
from sketchgen.report import writer as report
from sketchgen.report.figures import plot_confusion
from sketchgen.report.results import REAL_FLOOR
from sketchgen.runtime import choose_device
from sketchgen.training.run_folder import CURVES, RunFolder

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
        _say(f"{len(plans)} runs planned ({len(config.seeds)} seeds); reading the real drawings")
        real = load_real(config)
        classifier = get_classifier(config, real, device)
        clear_previous_report(folder)
        figures = []
        test = evaluate_classifier(classifier, real)
        if test is not None:
            title = (f"{classifier.feature_name}: test accuracy {test.accuracy:.3f} on {test.n} "
                     "held-out drawings")
            plot_confusion(test, out_dir / CONFUSION, title)
            figures.append(report.Figure(CONFUSION, "Classifier confusion on held-out real "
                                                    "drawings"))
        _say(f"classifier ready; training {len(plans)} runs (at {_minutes(began)})")
        jobs = [_job(config, plan, real, device, overwrite) for plan in plans]
        outcomes = execute(jobs, config.executor, config.work_dir)

        _say(f"runs done; scoring on the test sets (at {_minutes(began)})")
        scorer = make_scorer(classifier, real.test, config.bootstrap, config.ci_level,
                             config.seed)
        collected = _Collected(config, scorer, describe_device(device, config.executor.threads),
                               out_dir, figures)
        for name in real.class_names:
            collected.add_floor(name, real.second[name])
        for outcome in outcomes:
            collected.add_run(outcome)
            if outcome.plan.first_seed:
                collected.figures += copy_run_figures(
                    outcome.plan.run_dir, out_dir, figures_name(outcome.plan),
                    run_title(outcome.plan))
        calibration, calibrated = _calibration(config, classifier, real, began)
        curves = pd.DataFrame([row for o in outcomes for row in curve_rows(o)])
        valid_seconds, train_seconds = evaluation_seconds(outcomes)
        info = report.RunInfo(
            name=config.name, label=config.label, categories=real.class_names,
            size=config.size, classifier=_classifier_line(classifier, test),
            ci_level=config.ci_level, elapsed_s=time.perf_counter() - began,
            notes=(*_notes(test), *calibrated), seeds=config.seeds, select=config.select,
            set_sizes=real.set_sizes(), evaluator=evaluator_lines(classifier),
            overhead=_overhead_line(valid_seconds, train_seconds, config))
        written = report.write_report(pd.DataFrame(collected.rows), out_dir, info,
                                      collected.figures, benchmarks, curves=curves,
                                      calibration=calibration)
        folder.record([*written, *(out_dir / figure.path for figure in collected.figures)])
    return Outcome(pd.DataFrame(collected.rows), collected.figures, info, written)


def _job(config: CompareConfig, plan: PlannedRun, real: RealData, device: torch.device,
         overwrite: bool) -> RunJob:
    if config.executor.kind != "local" or config.executor.jobs > 1:  # no interleaved bars
        plan = dataclasses.replace(plan, train=dataclasses.replace(plan.train, progress=False))
    return RunJob(
        plan=plan, work_dir=config.work_dir,
        classifier=Path(config.classifier.load or config.work_dir / CLASSIFIER),
        valid={name: real.valid[name] for name in plan.categories},
        eval_every=config.eval_every_of(plan.spec), n_samples=config.n_samples,
        checkpoint="best" if config.select == "best-valid" else "last",
        threads=config.executor.threads, device=str(device), overwrite=overwrite)


def clear_previous_report(folder: outputs.Claim) -> None:
    """Remove what earlier comparisons wrote there -- the files its marker records, never
    `_work` or anyone else's files -- so the folder holds no figure or table of a model that
    is no longer in the config. A folder that is not the suite's (``overwrite``) keeps all."""
    folder.remove_recorded()


def describe_device(device: torch.device, threads: int) -> str:
    """The device as the report states it: CUDA's card name, or the threads of each run."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({threads} thread{'s' if threads > 1 else ''} per run)"
    return device.type


@dataclass
class _Collected:
    """Rows of the results table and figures of the report, gathered as the run goes."""

    config: CompareConfig
    scorer: Scorer
    device: str  # as the report states it
    out_dir: Path
    figures: list[report.Figure] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add_floor(self, category: str, images: np.ndarray) -> None:
        """The second real set of ``category`` scored like a model: the real-vs-real floor."""
        self._add({"model": REAL_FLOOR, "category": category, "seed": self.config.seed,
                   "steps": 0, "batch_size": 0, "images_seen": 0, "train_seconds": 0.0,
                   "parameters": "", "selected": ""}, images, grid=True)

    def add_run(self, outcome: RunOutcome) -> None:
        """Every category of one run, scored on its test set (grids of the first seed)."""
        plan = outcome.plan
        batch = plan.spec.batch_size
        for category, images in outcome.images.items():
            self._add({"model": plan.spec.name, "category": category, "seed": plan.seed,
                       "steps": outcome.step, "batch_size": batch,
                       "images_seen": outcome.step * batch,
                       "train_seconds": outcome.train_seconds, "parameters": outcome.parameters,
                       "selected": self.config.select}, images, grid=plan.first_seed)

    def _add(self, identity: dict[str, Any], images: np.ndarray, grid: bool) -> None:
        classifier = self.scorer.classifier
        self.rows.append({
            **identity, "n": self.config.n_samples, "device": self.device,
            "feature_space": classifier.feature_name, "evaluator": classifier.sha256[:12],
            **self.scorer.score(identity["category"], images)})
        if grid:
            self.figures.append(_grid(images, self.out_dir, identity["model"],
                                      identity["category"]))


def _calibration(config: CompareConfig, classifier: Classifier, real: RealData,
                 began: float) -> tuple[pd.DataFrame | None, tuple[str, ...]]:
    """The calibration of the feature space at N = n_samples, and the note saying on what:
    the first category's second real set, degraded, against its test set (contaminated with
    the next category's drawings)."""
    if not config.calibration:
        return None, ()
    first, other = real.class_names[:2]
    drawings = real.second_drawings[first]
    if drawings is None:
        return None, (f"No calibration: {first}'s data hold bitmaps only, and half of the "
                      "degradations move strokes.",)
    _say(f"calibrating the feature space on {first} (at {_minutes(began)})")
    frame = calibrate(classifier.features, real.test[first], drawings, real.second[other],
                      config.size, config.seed)
    return frame, (f"Calibration: {first}'s second real set (N = {config.n_samples}), degraded, "
                   f"against its test set; contamination with {other} drawings.",)


def _overhead_line(valid_seconds: float, train_seconds: float, config: CompareConfig) -> str:
    if not train_seconds:
        return "No run was trained here, so no validation was scored."
    return (f"Validation scores (N = {config.eval_samples} per category) took "
            f"{valid_seconds:.0f} s against {train_seconds:.0f} s of training, summed over the "
            f"runs: {100 * valid_seconds / train_seconds:.1f}% of training time.")


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


def evaluator_lines(classifier: Classifier) -> tuple[str, ...]:
    """The evaluator's identity: feature space, weights' sha256 and training manifest.
    Reports whose sha256 matches were scored in one feature space and are comparable."""
    trained = "; ".join(f"{key} {_manifest_value(key, value)}"
                        for key, value in classifier.manifest.items()) or "not recorded"
    return (f"feature space {classifier.feature_name}", f"sha256 {classifier.sha256}",
            f"trained on: {trained} (the evaluator file's manifest has them in full)")


def _manifest_value(key: str, value) -> str:
    """One manifest entry in a few words: a count and a range for rows per class, the folder
    of the sources (their local paths or URLs belong in the file, not in a paper's report)."""
    if isinstance(value, dict):
        counts = list(value.values())
        return f"{sum(counts):,} ({min(counts)}–{max(counts)} per class)" if counts else "none"
    if key == "sources" and value:
        folder = PurePosixPath(str(value[0]).replace("\\", "/")).parent
        return f"{len(value)} files in …/{'/'.join(folder.parts[-2:])}/"
    if isinstance(value, list) and len(value) > 6:
        return f"{len(value)}: {', '.join(map(str, value[:3]))}, …, {value[-1]}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _classifier_line(classifier: Classifier, test: Evaluation | None) -> str:
    if test is None:
        return (f"{classifier.feature_name} (width-{classifier.config.width} CNN), loaded; it "
                "knows none of these categories")
    per_class = ", ".join(f"{name} {accuracy:.3f}"
                          for name, accuracy in test.per_class_accuracy.items())
    epochs = f", best epoch {classifier.best_epoch}" if classifier.best_epoch else ""
    return (f"{classifier.feature_name} (width-{classifier.config.width} CNN{epochs}); "
            f"test accuracy {test.accuracy:.3f} on {test.n} held-out drawings ({per_class})")


def _notes(test: Evaluation | None) -> tuple[str, ...]:
    if test is None:
        return ()
    pairs = "; ".join(f"{true} → {predicted} {rate:.3f}"
                      for true, predicted, rate in test.most_confused(3))
    return (f"Most confused (true → predicted, share of true): {pairs}",) if pairs else ()


def _minutes(began: float) -> str:
    return f"{(time.perf_counter() - began) / 60:.1f} min"


def _say(message: str) -> None:
    """A phase line on stderr that does not break the progress bars."""
    tqdm.write(message, file=sys.stderr)

