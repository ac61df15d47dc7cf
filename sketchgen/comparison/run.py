"""The comparison run behind ``sketchgen compare CONFIG.toml``.

Every model is trained (or loaded) on the same categories, sampled, and scored identically:
the same real reference drawings, the same rasterizer, the same classifier features.

The config (TOML)::

    name = "cpu-small"                 # report folder reports/<name>/ unless `out` is given
    label = "Small CPU budget"         # one line stating what kind of run this is
    categories = ["eye", "mouth"]      # Google names, or ndjson/npy paths ($VARS expanded)
    size = 28
    per_class = 2000                   # training drawings per category: the first N
    n_samples = 500                    # N: generated (and real reference) drawings per row
    seed = 0

    [classifier]                       # see ClassifierSettings
    width = 16

    [[models]]                         # see ModelSpec; one table per compared model
    model = "dcgan"
    steps = 300
    batch_size = 64
    [models.options]                   # the model's own config fields
    width = 32

Data: per category the first ``per_class`` drawings are the training data (exactly what
``sketchgen train`` reads); the next ``2 * n_samples`` are held out and split at random into
the reference set (compared with every model's samples) and a second real set of the same
size (the real-vs-real floor). The classifier is trained on the training drawings (early
stopping on a part of them) and tested on the held-out ones.

Class-conditional models are trained once on all categories and asked for each category in
turn; unconditional models are trained once per category. Working files (training runs, the
classifier) go to ``<out>/_work/``; a killed comparison resumes its runs when started again,
and a run whose settings changed is trained afresh.

The report folder is claimed and locked for the whole run (``sketchgen.outputs``): a new or
empty folder, or one an earlier comparison made; its marker records the files the report
wrote, and only those are removed before a new report is written. Model labels and the name
are file names (``outputs.check_name``).

Validation happens before any training: unknown model, category or option, an impossible
size, a ``load`` directory without a fitting checkpoint, too few drawings for the held-out
sets -- each is a one-line :class:`sketchgen.cli.UsageError`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from sketchgen import outputs
from sketchgen.config import (
    BATCH_SIZES,
    DRAWINGS_PER_CLASS,
    EPOCHS,
    EVALUATOR_BATCH_SIZE,
    EVALUATOR_MAX_EPOCHS,
    EVALUATOR_PATIENCE,
    EVALUATOR_WIDTH,
    FRACTIONS,
    MAX_CLASSES,
    SEEDS,
    SIZES,
    STEPS,
    TOO_DEEP,
    WIDTHS,
    TrainConfig,
    check_fields,
    instantiate,
    listed,
    setting,
)
from sketchgen.errors import ConfigError, UsageError
from sketchgen.report import writer as report

if TYPE_CHECKING:
    import torch

    from sketchgen.evaluation.classifier import Classifier, ClassifierConfig, Evaluation
    from sketchgen.training.sampling import LoadedRun

WORK = "_work"  # under the report folder; git-ignored (reports/**/_work/)
REPORT_KIND = "report"  # the report folder's kind in its sketchgen.outputs marker
GRID_SAMPLES = 64  # drawings shown per sample grid (8 x 8)
GRID_COLUMNS = 8


# -- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """One compared model: a registry entry with its budget."""

    model: str  # registry name, e.g. "dcgan", "sngan", "sketch-rnn"
    steps: int = setting(within=STEPS)  # optimiser steps of training
    batch_size: int = setting(within=BATCH_SIZES)  # images (or sketches) per step
    label: str = ""  # row name in the tables; "" = the model name (labels must be unique)
    options: dict[str, Any] = field(default_factory=dict)  # the model config's fields
    # A `sketchgen train` run directory (relative to the working directory) to use instead of
    # training; for an unconditional model, a folder holding one run per category, named by
    # its class name (the layout of <out>/_work/runs/<label>/).
    load: str | None = setting(None, path=True)

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def name(self) -> str:
        return self.label or self.model


@dataclass(frozen=True)
class ClassifierSettings:
    """The evaluator and feature space: sketchgen.evaluation.classifier's width-k CNN (defaults:
    sketchgen.config's EVALUATOR_*, shared with ClassifierConfig)."""

    width: int = setting(EVALUATOR_WIDTH, within=WIDTHS)
    max_epochs: int = setting(EVALUATOR_MAX_EPOCHS, within=EPOCHS)
    patience: int = setting(EVALUATOR_PATIENCE, within=EPOCHS)
    batch_size: int = setting(EVALUATOR_BATCH_SIZE, within=BATCH_SIZES)
    # share of the training drawings used for early stopping
    valid_fraction: float = setting(0.1, within=FRACTIONS)
    load: str | None = setting(None, path=True)  # a saved classifier to use instead of training

    def __post_init__(self) -> None:
        check_fields(self)

    def classifier_config(self, size: int, seed: int) -> ClassifierConfig:
        """These settings as the classifier module's config (also the API's default evaluator)."""
        from sketchgen.evaluation.classifier import ClassifierConfig

        return ClassifierConfig(width=self.width, size=size, batch_size=self.batch_size,
                                max_epochs=self.max_epochs, patience=self.patience, seed=seed)


@dataclass(frozen=True)
class CompareConfig:
    """A whole comparison; see the module docstring for the TOML form."""

    name: str  # names the report folder and its title
    # Quick, Draw! names or data file paths; one class each
    categories: tuple[str, ...] = setting(max_items=MAX_CLASSES)
    models: tuple[ModelSpec, ...]
    label: str = "Comparison run"  # one line for the report, e.g. how small the budget is
    size: int = setting(28, within=SIZES)  # bitmap side; 28 = Google's numpy_bitmap size
    # training drawings per category (the first ones in the file)
    per_class: int = setting(2000, within=DRAWINGS_PER_CLASS)
    # N per model and category, and per real set; FID needs some, memory bounds it
    n_samples: int = setting(500, within=(10, 1_000_000))
    seed: int = setting(0, within=SEEDS)  # training, sampling, held-out split and bootstrap
    device: str = "auto"  # CUDA, then MPS, then CPU; or a torch device string
    bootstrap: int = setting(200, within=(1, 100_000))  # replicates behind every interval
    ci_level: float = setting(0.95, within=FRACTIONS)  # coverage of the intervals
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    out: str | None = setting(None, path=True)  # report folder; None = reports/<name>

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("reports") / self.name

    @property
    def work_dir(self) -> Path:
        return self.out_dir / WORK


def _check_keys(table: dict, cls, where: str) -> None:
    """No unknown key, and every field without a default given."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {listed(unknown)}; "
                         f"known: {', '.join(known)}")
    missing = [key for key, f in known.items() if key not in table
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UsageError(f"{where}: missing {', '.join(missing)}")


def _model_spec(table: Any, index: int) -> ModelSpec:
    """One [[models]] table; its options are checked by the model's own config."""
    from sketchgen.models import registry

    where = f"models[{index}]"
    if not isinstance(table, dict):
        raise UsageError(f"{where}: expected a [[models]] table")
    _check_keys(table, ModelSpec, where)
    spec = instantiate(ModelSpec, table, where)
    try:
        entry = registry.get_model(spec.model)
    except ConfigError as error:
        raise UsageError(f"{where}.model: {error}") from None
    entry.model_config(spec.options, where=f"{where}.options")
    return spec


def config_from_dict(data: dict) -> CompareConfig:
    """A CompareConfig from parsed TOML; structure, types and ranges checked, one-line errors
    naming each field by its path (``models[1].batch_size``, ``classifier.max_epochs``)."""
    _check_keys(data, CompareConfig, "config")
    models = data["models"]
    if not isinstance(models, list) or not models:
        raise UsageError("models: give at least one [[models]] table")
    classifier = data.get("classifier", {})
    if not isinstance(classifier, dict):
        raise UsageError("classifier: must be a [classifier] table")
    _check_keys(classifier, ClassifierSettings, "classifier")
    config = CompareConfig(**{
        **data, "models": tuple(_model_spec(table, i) for i, table in enumerate(models)),
        "classifier": instantiate(ClassifierSettings, classifier, "classifier")})
    return dataclasses.replace(
        config, categories=tuple(os.path.expandvars(c) for c in config.categories))


def load_config(path: str | Path) -> CompareConfig:
    """Read and check a comparison TOML file; an error names the file."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: {error}") from None
    except RecursionError:  # tomllib parses [[[...]]] by recursion
        raise UsageError(f"{path}: {TOO_DEEP}") from None
    try:
        return config_from_dict(data)
    except UsageError as error:
        raise ConfigError(f"{path}: {error}") from None


# -- the plan: which training runs, checked before any work --------------------------------------


@dataclass(frozen=True)
class PlannedRun:
    """One training run (or loaded run) and the categories it is scored on."""

    spec: ModelSpec
    train: TrainConfig  # what `sketchgen train` would be given
    categories: tuple[str, ...]  # class names scored from this run
    conditional: bool  # asked for each category by label
    load_dir: Path | None  # an existing run to sample instead of training

    @property
    def run_dir(self) -> Path:
        return self.load_dir or Path(self.train.out)


def _check_settings(config: CompareConfig) -> None:
    """What the fields' own checks cannot see: the models' names together, the classifier's
    size at this image size, and a classifier to load (read and checked now, not after the
    data are loaded)."""
    config.classifier.classifier_config(config.size, config.seed)  # the network's size
    load = config.classifier.load
    if load is not None and not Path(load).is_file():
        raise UsageError(f"classifier.load = {load!r}: no such file")
    if load is not None:
        from sketchgen.evaluation.classifier import load_classifier

        load_classifier(load, "cpu")
    names = [spec.name for spec in config.models]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(f"models: {', '.join(twice)} listed twice; give each a distinct label")
    if report.REAL_FLOOR in names:
        raise UsageError(f"models: {report.REAL_FLOOR!r} is reserved for the real-vs-real floor")


def _check_names(config: CompareConfig, class_names: tuple[str, ...]) -> None:
    """Strings that become file or folder names are plain names (nothing can point
    elsewhere): the report name, model labels (run folders, grids) and class names (the run
    folders of unconditional models)."""
    outputs.check_name(config.name, "name")
    folded: dict[str, str] = {}  # run folders are one where file systems ignore case
    for index, spec in enumerate(config.models):
        if spec.label:
            outputs.check_name(spec.label, f"models[{index}].label")
        first = folded.setdefault(spec.name.casefold(), spec.name)
        if first != spec.name:
            raise UsageError(f"models: {first!r} and {spec.name!r} differ only in case; give "
                             "each a distinct label")
    for index, name in enumerate(class_names):
        outputs.check_name(name, f"class name of categories[{index}]")


def _check_report_files(plans: list[PlannedRun], class_names: tuple[str, ...]) -> None:
    """Each figure of the report gets a file of its own: the names in file names are made
    file-safe ("a b" as a_b) and joined by "-" (model "x-y" on "z", model "x" on "y-z"), and
    some file systems ignore case."""
    files = [(_grid_path(report.REAL_FLOOR, name), f"{report.REAL_FLOOR} on {name}")
             for name in class_names]
    for plan in plans:
        files.append((f"training/{_figures_name(plan)}/", _run_title(plan)))
        files += [(_grid_path(plan.spec.name, category), f"{plan.spec.name} on {category}")
                  for category in plan.categories]
    seen: dict[str, str] = {}
    for path, what in files:
        first = seen.setdefault(path.casefold(), what)
        if first != what:
            raise UsageError(f"models: {first} and {what} would write one file, {path}; give "
                             "one of them another label")


def class_names_of(categories: tuple[str, ...]) -> tuple[str, ...]:
    """Class name per source (the category, or a file's name without suffix), checked unique."""
    from sketchgen.data.datasets import check_category

    names = []
    for source in categories:
        try:
            names.append(check_category(source))
        except ValueError:
            names.append(_file_class_name(source))
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(f"config: category {', '.join(twice)} given twice")
    return tuple(names)


def _file_class_name(source: str) -> str:
    from sketchgen.data.datasets import DATA_SUFFIXES

    suffix = next((s for s in DATA_SUFFIXES if source.endswith(s)), "")
    return Path(source).name[: len(Path(source).name) - len(suffix)]


def _train_config(config: CompareConfig, spec: ModelSpec, categories: tuple[str, ...],
                  out: Path) -> TrainConfig:
    from sketchgen.config import config_from_mapping

    return config_from_mapping({
        "model": spec.model, "categories": categories, "size": config.size,
        "per_class": config.per_class, "steps": spec.steps, "batch_size": spec.batch_size,
        "seed": config.seed, "out": str(out), "device": config.device,
        "model_options": dict(spec.options),
    })


def plan_runs(config: CompareConfig) -> list[PlannedRun]:
    """Every training run of the comparison, each validated; raises UsageError on the first
    problem, before anything is trained."""
    from sketchgen.models import registry
    from sketchgen.training.harness import check_categories

    _check_settings(config)
    check_categories(TrainConfig(categories=config.categories))
    class_names = class_names_of(config.categories)
    _check_names(config, class_names)
    if len(class_names) < 2:
        raise UsageError("config: give at least two categories (the classifier needs them)")
    runs_dir = config.work_dir / "runs"
    plans = []
    for spec in config.models:
        everything = _train_config(config, spec, config.categories, runs_dir / spec.name)
        check_categories(everything)
        _, model_config = registry.resolve(everything)  # unknown model or option, bad size
        if model_config.conditional:
            plans.append(_planned(spec, everything, class_names, True))
            continue
        for source, name in zip(config.categories, class_names, strict=True):
            one = _train_config(config, spec, (source,), runs_dir / spec.name / name)
            plans.append(_planned(spec, one, (name,), False))
    _check_report_files(plans, class_names)
    return plans


def _planned(spec: ModelSpec, train_config: TrainConfig, categories: tuple[str, ...],
             conditional: bool) -> PlannedRun:
    load_dir = None
    if spec.load is not None:
        load_dir = Path(spec.load) if conditional else Path(spec.load) / categories[0]
        _check_loadable(spec, load_dir, categories)
    return PlannedRun(spec, train_config, categories, conditional, load_dir)


def _check_loadable(spec: ModelSpec, run_dir: Path, categories: tuple[str, ...]) -> None:
    """The run exists, holds this model, was trained on these categories with this budget,
    and its weights fit the model (read as sampling will read them: sketchgen.training.checkpoints)."""
    from sketchgen.training.checkpoints import read_checkpoint
    from sketchgen.training.harness import CHECKPOINT
    from sketchgen.training.sampling import load_run

    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise UsageError(f"models: {spec.name}: load = {spec.load!r} but {path} does not exist")
    checkpoint = read_checkpoint(path)
    if checkpoint.get("model") != spec.model:
        raise UsageError(f"models: {spec.name}: {path} holds model "
                         f"{checkpoint.get('model')!r}, not {spec.model!r}")
    missing = [name for name in categories if name not in checkpoint.get("class_names", [])]
    if missing:
        raise UsageError(f"models: {spec.name}: {path} was not trained on {', '.join(missing)}")
    budget = (checkpoint["step"], checkpoint["config"]["batch_size"])
    if budget != (spec.steps, spec.batch_size):
        raise UsageError(f"models: {spec.name}: {path} was trained for {budget[0]} steps of "
                         f"batch {budget[1]}; the config says {spec.steps} of {spec.batch_size}")
    load_run(run_dir)


# -- real data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RealData:
    """Per class: the training drawings and the two held-out sets of N."""

    class_names: tuple[str, ...]
    train_images: np.ndarray  # uint8 (M, size, size): the first per_class of every class
    train_labels: np.ndarray  # int64 (M,)
    reference: dict[str, np.ndarray]  # class -> N held-out bitmaps compared with samples
    second: dict[str, np.ndarray]  # class -> N other held-out bitmaps (the floor)


def load_real(config: CompareConfig) -> RealData:
    """Bitmaps of every category, split as the module docstring says; too few is an error."""
    from sketchgen.data.datasets import load_bitmaps, split_indices

    held_out = 2 * config.n_samples
    try:
        loaded = load_bitmaps(config.categories, config.size,
                              per_class=config.per_class + held_out)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    train_parts, label_parts, reference, second = [], [], {}, {}
    for index, name in enumerate(loaded.class_names):
        images = loaded.bitmaps[loaded.labels == index]
        if len(images) < config.per_class + held_out:
            raise UsageError(
                f"category {name!r} has {len(images)} drawings; per_class + 2 * n_samples = "
                f"{config.per_class + held_out} are needed (lower per_class or n_samples)")
        train_parts.append(images[: config.per_class])
        label_parts.append(np.full(config.per_class, index, dtype=np.int64))
        first, other = split_indices(held_out, config.seed, (0.5, 0.5))
        rest = images[config.per_class:]
        reference[name], second[name] = rest[first], rest[other]
    return RealData(tuple(loaded.class_names), np.concatenate(train_parts),
                    np.concatenate(label_parts), reference, second)


# -- classifier ---------------------------------------------------------------------------------


def get_classifier(config: CompareConfig, real: RealData, device: torch.device) -> Classifier:
    """Load the configured classifier (checked against the data) or train one on the
    training drawings, with early stopping on ``valid_fraction`` of them."""
    from sketchgen.data.datasets import split_indices
    from sketchgen.evaluation import classifier as qd

    settings = config.classifier
    if settings.load is not None:
        loaded = qd.load_classifier(settings.load, device)
        _check_classifier(loaded, config, real)
        return loaded
    train, valid = split_indices(len(real.train_images), config.seed,
                                 (1 - settings.valid_fraction, settings.valid_fraction))
    classifier_config = settings.classifier_config(config.size, config.seed)
    with tqdm(total=settings.max_epochs, desc="classifier", unit="epoch", file=sys.stderr,
              dynamic_ncols=True) as bar:

        def log(entry: dict) -> None:
            bar.update(1)
            bar.set_postfix(valid_accuracy=f"{entry['valid_accuracy']:.3f}", refresh=False)

        trained = qd.train_classifier(
            real.train_images[train], real.train_labels[train], real.train_images[valid],
            real.train_labels[valid], real.class_names, classifier_config, device, log)
    qd.save_classifier(trained, config.work_dir / "classifier.pt")
    return trained


def _check_classifier(loaded: Classifier, config: CompareConfig, real: RealData) -> None:
    from sketchgen.evaluation.classifier import ClassifierConfig

    defaults = ClassifierConfig()
    if list(loaded.class_names) != list(real.class_names):
        raise UsageError(f"classifier: {config.classifier.load} knows classes "
                         f"{loaded.class_names}, the config has {list(real.class_names)}")
    rendered_like_models = (loaded.config.size == config.size and not loaded.config.channels
                            and loaded.config.line_width == defaults.line_width
                            and loaded.config.padding == defaults.padding)
    if not rendered_like_models:
        raise UsageError(f"classifier: {config.classifier.load} was trained on other bitmaps "
                         f"than the models make ({loaded.config}); train one with this config")


def evaluate_classifier(classifier: Classifier, real: RealData) -> Evaluation:
    """Accuracy on every held-out real drawing (never trained on)."""
    from sketchgen.evaluation.classifier import evaluate

    images = np.concatenate([np.concatenate([real.reference[n], real.second[n]])
                             for n in real.class_names])
    labels = np.repeat(np.arange(len(real.class_names)),
                       [len(real.reference[n]) + len(real.second[n]) for n in real.class_names])
    return evaluate(classifier, images, labels)


# -- scoring ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scorer:
    """Scores a set of drawings of one category against that category's reference set."""

    classifier: Classifier
    reference: dict[str, np.ndarray]  # class -> reference features (N, D), float64
    bootstrap: int
    alpha: float  # 1 - ci_level
    seed: int

    def score(self, category: str, images: np.ndarray) -> dict[str, float]:
        from sketchgen.evaluation import metrics
        from sketchgen.evaluation.classifier import recognizability

        features = metrics.extract_features(self.classifier.features, images)
        # Covariances and kernels of a few hundred rows are too small for threaded BLAS: on
        # the 2-core CPU one thread ran the FID bootstrap 5.8x and KID's 1.9x faster (the
        # threads' hand-offs, and waiting for torch's threads, cost more than they share).
        with threadpool_limits(limits=1, user_api="blas"):
            row = self._distances(self.reference[category], features)
        row["recognizability"] = recognizability(self.classifier, images, category).accuracy
        return row | {"blank": metrics.blank_share(images),
                      "duplicates": metrics.duplicate_share(images)}

    def _distances(self, reference: np.ndarray, features: np.ndarray) -> dict[str, float]:
        from sketchgen.evaluation import metrics

        row: dict[str, float] = {}
        for name in ("fid", "kid"):
            interval = metrics.bootstrap_ci(metrics.METRICS[name].compute, reference, features,
                                            self.bootstrap, self.seed, self.alpha)
            row |= {name: interval.value, f"{name}_low": interval.low,
                    f"{name}_high": interval.high}
        precision, recall = metrics.precision_recall(reference, features)
        return row | {"precision": precision, "recall": recall}


def make_scorer(config: CompareConfig, classifier: Classifier, real: RealData) -> Scorer:
    from sketchgen.evaluation.metrics import extract_features

    reference = {name: extract_features(classifier.features, images)
                 for name, images in real.reference.items()}
    return Scorer(classifier, reference, config.bootstrap, 1 - config.ci_level, config.seed)


# -- training and sampling ----------------------------------------------------------------------


def train_or_resume(plan: PlannedRun, work_dir: Path, overwrite: bool = False) -> None:
    """Train the planned run in its folder under ``work_dir``; a finished or killed run with
    the same settings is resumed (a finished one returns at once), one with other settings
    deleted -- only if the suite created it (``outputs.remove_folder``) -- and redone.
    ``overwrite``: as for ``train``."""
    from sketchgen.config import load_toml
    from sketchgen.training.harness import CONFIG, RUN_KIND, train

    run_dir = Path(plan.train.out)
    stored = run_dir / CONFIG
    if stored.exists() and load_toml(stored) != plan.train:
        outputs.remove_folder(run_dir, work_dir, RUN_KIND)
    train(plan.train, resume=True, overwrite=overwrite)


def sample_category(loaded: LoadedRun, plan: PlannedRun, category: str, n: int,
                    seed: int) -> np.ndarray:
    """N drawings meant to be ``category`` (by label, or from a one-category run)."""
    from sketchgen.runtime import derived_seed
    from sketchgen.training.sampling import sample_images, sample_labels

    labels = sample_labels(loaded, n, category if plan.conditional else None)
    stream = derived_seed(seed, f"compare:{plan.spec.name}:{category}")
    return sample_images(loaded, labels, stream)


def describe_device(device: torch.device) -> str:
    """The device as the report states it: CUDA's card name, or the CPU thread count."""
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type


# -- the whole run ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a comparison produced; the report is written from it."""

    results: pd.DataFrame
    figures: list[report.Figure]
    info: report.RunInfo
    written: list[Path]


CONFUSION = "confusion.png"


def clear_previous_report(folder: outputs.Claim) -> None:
    """Remove what earlier comparisons wrote there -- the files its marker records, never
    `_work` or anyone else's files -- so the folder holds no figure or table of a model that
    is no longer in the config. A folder that is not the suite's (``overwrite``) keeps all."""
    folder.remove_recorded()


def _minutes(began: float) -> str:
    return f"{(time.perf_counter() - began) / 60:.1f} min"


def _say(message: str) -> None:
    """A phase line on stderr that does not break the progress bars."""
    tqdm.write(message, file=sys.stderr)


def _grid(images: np.ndarray, out_dir: Path, model: str, category: str) -> report.Figure:
    """The first 64 drawings as an 8 x 8 grid for the index's samples table."""
    from sketchgen.figures import save_grid

    relative = _grid_path(model, category)
    save_grid(images[:GRID_SAMPLES], out_dir / relative, columns=GRID_COLUMNS)
    return report.Figure(relative, f"{model}, {category}", model, category)


def copy_run_figures(run_dir: Path, out_dir: Path, name: str, what: str) -> list[report.Figure]:
    """The run's own PNG figures -- loss curves, anything a model adds (e.g. Sketch-RNN
    reconstructions) -- copied into ``training/<name>/`` so the report stands alone. The learning
    GIF stays in the run folder: ~1 MB each, too heavy for a report meant to be committed."""
    from sketchgen.training.harness import CURVES

    figures = []
    for source in sorted(run_dir.glob("*.png")):
        relative = f"training/{name}/{source.name}"
        (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, out_dir / relative)
        caption = "Training curves" if source.name == CURVES else source.stem.capitalize()
        figures.append(report.Figure(relative, f"{caption}: {what}"))
    return figures


def _grid_path(model: str, category: str) -> str:
    """Where ``model``'s grid of ``category`` goes in the report folder."""
    return f"grids/{_slug(model)}-{_slug(category)}.png"


def _run_title(plan: PlannedRun) -> str:
    """The planned run as the progress lines and figure captions name it."""
    return plan.spec.name + ("" if plan.conditional else f" on {plan.categories[0]}")


def _figures_name(plan: PlannedRun) -> str:
    """The folder under ``training/`` that receives the planned run's own figures."""
    return _slug(plan.spec.name + ("" if plan.conditional else f"-{plan.categories[0]}"))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


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
    from sketchgen.training.sampling import load_run

    what = _run_title(plan)
    _say(f"[{number}/{total}] {what} (at {_minutes(began)})")
    if plan.load_dir is None:
        train_or_resume(plan, collected.config.work_dir, overwrite)
    loaded = load_run(plan.run_dir, str(device))
    collected.figures += copy_run_figures(plan.run_dir, collected.out_dir, _figures_name(plan),
                                          what)
    config = collected.config
    for category in tqdm(plan.categories, desc=f"sample+score {plan.spec.name}",
                         file=sys.stderr, dynamic_ncols=True, leave=False):
        images = sample_category(loaded, plan, category, config.n_samples, config.seed)
        collected.add(plan.spec.name, category, loaded.step, plan.spec.batch_size, images)


def run_comparison(config: CompareConfig, benchmarks: Path | None = None,
                   overwrite: bool = False) -> Outcome:
    """Validate, train or load, sample, score and write the report; see the module doc.

    ``overwrite``: write into a report folder that is neither empty nor one the suite made
    (replacing files of the names a report writes, deleting nothing); see sketchgen.outputs.
    """
    from sketchgen.evaluation.classifier import plot_confusion
    from sketchgen.runtime import choose_device

    began = time.perf_counter()
    if benchmarks is not None and not benchmarks.is_file():
        raise UsageError(f"--benchmarks {benchmarks}: no such file")
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
        collected = _Collected(config, make_scorer(config, classifier, real),
                               describe_device(device), out_dir,
                               figures=[report.Figure(CONFUSION, "Classifier confusion on "
                                                                 "held-out real drawings")])
        for name in real.class_names:
            collected.add(report.REAL_FLOOR, name, 0, 0, real.second[name])
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
