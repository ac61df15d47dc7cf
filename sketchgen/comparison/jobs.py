"""One planned run as a job any executor can run: train (with its learning curve), then sample.

Owns: :class:`RunJob` (everything one run needs, picklable, so a worker process or a Slurm job
runs it as well as this process), :func:`run_job`, and what a job gives back
(:class:`RunOutcome`): the drawings sampled from the selected checkpoint, the validation
records and the run's budget as spent.

The validation score of a run (its learning curve, and the ``best-valid`` selection) is FID,
precision and recall of ``eval_samples`` drawings per category against the validation set, in
the comparison's feature space; a class-conditional run is scored on each of its categories,
and selected on their mean FID. Scoring draws its noise from its own generator, and the
harness keeps the training RNGs out of its reach: curves never change what is trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sketchgen import outputs
from sketchgen.comparison.plan import PlannedRun
from sketchgen.evaluation import metrics
from sketchgen.evaluation.classifier import Classifier
from sketchgen.evaluation.evaluator import load_classifier
from sketchgen.figures import read_jsonl
from sketchgen.models.task import Task
from sketchgen.runtime import derived_seed, torch_threads
from sketchgen.training.config import load_toml
from sketchgen.training.harness import train
from sketchgen.training.run_folder import RunFolder
from sketchgen.training.sampling import (
    LoadedRun,
    load_run,
    sample_images,
    sample_labels,
    task_images,
)
from sketchgen.training.validation import Validation

VALID_METRICS = ("fid", "precision", "recall")  # scored at every validation step


@dataclass(frozen=True)
class RunJob:
    """One planned run and what scoring it needs; picklable."""

    plan: PlannedRun
    work_dir: Path  # the comparison's working folder (runs are deleted only inside it)
    classifier: Path  # the saved evaluator, read by the job itself
    valid: dict[str, np.ndarray]  # class -> validation bitmaps of the run's categories
    eval_every: int  # steps between validation scores
    n_samples: int  # drawings sampled per category from the selected checkpoint
    checkpoint: str  # "last" or "best" (see training.sampling.load_run)
    threads: int  # torch threads while the job runs
    device: str
    overwrite: bool = False  # as for `train`


@dataclass(frozen=True)
class RunOutcome:
    """What a job gives back to the comparison."""

    plan: PlannedRun
    images: dict[str, np.ndarray]  # class -> uint8 (n_samples, size, size) sampled drawings
    step: int  # the selected checkpoint's step
    train_seconds: float  # training seconds up to that step (NaN: a loaded run without curve)
    parameters: str  # "G 1,234,567; D 45,678": the parameter count of each network
    curve: list[dict]  # the run's validation records (valid.jsonl), in step order


def run_job(job: RunJob) -> RunOutcome:
    """Train (or resume, or load) the job's run, then sample its selected checkpoint."""
    plan = job.plan
    with torch_threads(job.threads):
        if plan.load_dir is None:
            classifier = load_classifier(job.classifier, job.device)
            validation = Validation(job.eval_every, validation_score(classifier, plan, job.valid))
            train_or_resume(plan, job.work_dir, validation, job.overwrite)
        run = RunFolder(plan.run_dir)
        best = job.checkpoint == "best" and run.best_checkpoint.is_file()
        loaded = load_run(plan.run_dir, job.device, checkpoint="best" if best else "last")
        images = {category: sample_category(loaded, plan, category, job.n_samples)
                  for category in plan.categories}
        curve = read_jsonl(run.valid_log) if run.valid_log.is_file() else []
        seconds = next((r["train_seconds"] for r in curve if r["step"] == loaded.step),
                       float("nan"))
        return RunOutcome(plan, images, loaded.step, seconds, parameters(loaded.task), curve)


def train_or_resume(plan: PlannedRun, work_dir: Path, validation: Validation | None = None,
                    overwrite: bool = False) -> None:
    """Train the planned run in its folder under ``work_dir``; a finished or killed run with
    the same settings is resumed (a finished one returns at once), one with other settings
    deleted -- only if the suite created it (``outputs.remove_folder``) -- and redone. The
    progress bar's setting is not one that matters. ``overwrite``: as for ``train``."""
    run = RunFolder(plan.train.out)
    if run.config.exists():
        before = load_toml(run.config)
        if before.to_dict() | {"progress": None} != plan.train.to_dict() | {"progress": None}:
            outputs.remove_folder(run.path, work_dir, RunFolder.kind)
    train(plan.train, resume=True, overwrite=overwrite, validation=validation)


def validation_score(classifier: Classifier, plan: PlannedRun, valid: dict[str, np.ndarray]):
    """The ``score`` of the run's ``Validation``: FID, precision and recall per category
    (``fid/<category>``, ...) and their mean FID (``fid``, the selection key)."""
    reference = {category: metrics.extract_features(classifier.features, valid[category])
                 for category in plan.categories}

    def score(task: Task, step: int) -> dict[str, float]:
        result: dict[str, float] = {}
        for category in plan.categories:
            labels = _labels(plan, category, len(valid[category]))
            stream = derived_seed(plan.seed, f"valid:{plan.spec.name}:{category}")
            images = task_images(task, labels, stream)
            features = metrics.extract_features(classifier.features, images)
            precision, recall = metrics.precision_recall(reference[category], features)
            result |= {f"fid/{category}": metrics.fid(reference[category], features),
                       f"precision/{category}": precision, f"recall/{category}": recall}
        result["fid"] = float(np.mean([result[f"fid/{c}"] for c in plan.categories]))
        return result

    return score


def _labels(plan: PlannedRun, category: str, n: int) -> torch.Tensor:
    index = plan.class_names.index(category) if plan.conditional else 0
    return torch.full((n,), index, dtype=torch.int64)


def sample_category(loaded: LoadedRun, plan: PlannedRun, category: str, n: int) -> np.ndarray:
    """N drawings meant to be ``category`` (by label, or from a one-category run), from a
    stream of the run's seed: each seed's run is sampled with noise of its own."""
    labels = sample_labels(loaded, n, category if plan.conditional else None)
    stream = derived_seed(plan.seed, f"compare:{plan.spec.name}:{category}")
    return sample_images(loaded, labels, stream)


def parameters(task: Task) -> str:
    """The parameter count of each of the task's networks, e.g. ``"G 1,234,567; D 45,678"``."""
    return "; ".join(f"{name} {sum(p.numel() for p in network.parameters()):,}"
                     for name, network in task.networks().items())


def curve_rows(outcome: RunOutcome) -> list[dict]:
    """The run's validation records as rows of the report's ``curves.csv``, one per category
    and step."""
    plan = outcome.plan
    return [{"model": plan.spec.name, "category": category, "seed": plan.seed,
             "step": record["step"], "train_seconds": record["train_seconds"],
             **{name: record[f"{name}/{category}"] for name in VALID_METRICS}}
            for record in outcome.curve for category in plan.categories]


def evaluation_seconds(outcomes: list[RunOutcome]) -> tuple[float, float]:
    """Seconds spent on validation scores and on training, summed over the trained runs."""
    valid = sum(r.get("valid_seconds", 0.0) for o in outcomes for r in o.curve)
    trained = sum(o.curve[-1]["train_seconds"] for o in outcomes if o.curve)
    return valid, trained
