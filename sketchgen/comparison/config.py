"""A comparison's settings: the TOML file of ``sketchgen compare CONFIG.toml``, as dataclasses.

Owns: :class:`ModelSpec` (one compared model and its budget), :class:`ClassifierSettings` (the
evaluator: its ``ClassifierConfig``, or a saved one to load), :class:`CompareConfig` (the whole
comparison) and reading them from TOML (:func:`load_config`, :func:`config_from_dict`).

The config (TOML)::

    name = "cpu-small"                 # report folder reports/<name>/ unless `out` is given
    label = "Small CPU budget"         # one line stating what kind of run this is
    categories = ["eye", "mouth"]      # Google names, or ndjson/npy paths ($VARS expanded)
    size = 28
    per_class = 2000                   # training drawings per category: the first N
    n_samples = 500                    # N: generated drawings per row, and each real test set
    seeds = [0, 1, 2]                  # one training run per seed (`seed = 0` alone: one seed)
    eval_every = 100                   # validation scores every K steps (the learning curves)
    eval_samples = 200                 # drawings per validation score
    select = "best-valid"              # or "last": which checkpoint the test set scores

    [executor]                         # see ExecutorSettings: --jobs, Slurm
    jobs = 2

    [classifier]                       # see ClassifierSettings
    width = 16

    [[models]]                         # see ModelSpec; one table per compared model
    model = "dcgan"
    steps = 300
    batch_size = 64
    [models.options]                   # the model's own config fields
    width = 32

Read by ``sketchgen.config``'s loader, so an unknown key or a bad value is one line naming its
TOML path (``models[1].steps``, ``classifier.width``) and the file; model names and options
are checked against the registry here. What needs the data or other runs (categories, loaded
runs, file names) is checked by ``sketchgen.comparison.plan``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rasterize.geometry import GOOGLE_SIZE
from sketchgen.config import (
    BATCH_SIZES,
    DRAWINGS_PER_CLASS,
    FRACTIONS,
    MAX_CLASSES,
    SECONDS,
    SEEDS,
    SIZES,
    STEPS,
    check_fields,
    from_mapping,
    from_toml,
    inline,
    setting,
)
from sketchgen.errors import ConfigError, FieldError
from sketchgen.evaluation.classifier import ClassifierConfig
from sketchgen.models import registry
from sketchgen.runtime import DEVICE

MAX_SEEDS = 1_000  # seeds of one comparison; a paper reports 3 to 10

WORK = "_work"  # under the report folder; git-ignored (reports/**/_work/)


@dataclass(frozen=True)
class ModelSpec:
    """One compared model: a registry entry with its budget."""

    model: str  # registry name, e.g. "dcgan", "sngan", "sketch-rnn"
    steps: int = setting(within=STEPS)  # optimiser steps of training
    batch_size: int = setting(within=BATCH_SIZES)  # images (or sketches) per step
    label: str = ""  # row name in the tables; "" = the model name (labels must be unique)
    options: dict[str, Any] = field(default_factory=dict)  # the model config's fields
    # steps between per-layer gradient norms in the run's log.jsonl; None = TrainConfig's
    grad_norm_every: int | None = setting(None, within=STEPS)
    # A `sketchgen train` run directory (relative to the working directory) to use instead of
    # training; for an unconditional model, a folder holding one run per category, named by
    # its class name (the layout of <out>/_work/runs/<label>/).
    load: str | None = setting(None, path=True)
    # a budget of training wall-clock seconds, so models can be compared at equal time: a run
    # stops at `steps` or once it has trained this long, whichever comes first. Not
    # reproducible step for step (the steps reached depend on the machine and its load).
    seconds: float | None = setting(None, within=SECONDS)
    eval_every: int | None = setting(None, within=STEPS)  # None = the comparison's eval_every

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def name(self) -> str:
        return self.label or self.model


# The ClassifierConfig fields a [classifier] table sets. The others are the comparison's: its
# size and seed, and the rendering of its real drawings (Google's line width and padding, no
# extra channels), which the evaluator must share with the models' samples.
NETWORK_KEYS = ("width", "max_epochs", "patience", "batch_size")


EVALUATORS = ("compared", "default")


@dataclass(frozen=True)
class ClassifierSettings:
    """The ``[classifier]`` table: the evaluator the comparison trains, or one it loads.

    The table's ``width``, ``max_epochs``, ``patience`` and ``batch_size`` are ``network``'s
    (a ``ClassifierConfig``, with its defaults); :meth:`classifier_config` is the network the
    comparison trains, at its size and seed."""

    network: ClassifierConfig = inline(ClassifierConfig, NETWORK_KEYS)
    # "compared": trained here on the compared categories' training drawings; "default": the
    # suite's default evaluator (sketchgen.evaluation.feature_space: 26 Google categories x
    # 250 drawings, trained once and cached), the feature space of the API too, so the FIDs of
    # every report that uses it are comparable (its network settings are its own)
    evaluator: str = setting("compared", choices=EVALUATORS)
    # share of the training drawings used for early stopping
    valid_fraction: float = setting(0.1, within=FRACTIONS)
    load: str | None = setting(None, path=True)  # a saved classifier to use instead of training

    def __post_init__(self) -> None:
        check_fields(self)

    def classifier_config(self, size: int, seed: int) -> ClassifierConfig:
        """The evaluator's config: ``network``'s settings at this size and seed, rendered as
        the real drawings are."""
        return ClassifierConfig(size=size, seed=seed,
                                **{key: getattr(self.network, key) for key in NETWORK_KEYS})


SELECT_RULES = ("last", "best-valid")  # checkpoint scored on the test set: the final one, or
# the one with the lowest validation FID (mean over the run's categories)
EXECUTORS = ("local", "slurm")
CURVE_POINTS = 10  # validation scores per run when eval_every is not given: steps // 10


@dataclass(frozen=True)
class ExecutorSettings:
    """The ``[executor]`` table: where the independent training runs go (``--jobs``,
    ``--executor`` on the command line override it). Every run is a resumable run folder, the
    only state: a command given again skips finished runs and resumes killed ones."""

    kind: str = setting("local", choices=EXECUTORS)  # worker processes here, or Slurm jobs
    # runs trained at once by local worker processes; 1 = one after another in this process;
    # 0 = one per GPU on CUDA, else one per `threads` CPU cores (on the 2-core CPU, two
    # one-thread runs at once beat one two-thread run: benchmarks/bench_cpu_levers.py)
    jobs: int = setting(0, within=(0, 1_024))
    # torch threads of each training run, whatever `jobs` is, so that any `jobs` gives the same
    # numbers (CPU kernels may sum in another order with another thread count). 1: on the
    # 2-core CPU two one-thread runs at once trained faster than one two-thread run.
    threads: int = setting(1, within=(1, 1_024))
    # Slurm (kind = "slurm", through submitit): one job per run
    partition: str = ""  # "" = the cluster's default partition
    time_minutes: int = setting(240, within=(1, 100_000))  # wall-clock limit of each job
    gpus_per_run: int = setting(0, within=(0, 64))  # 0 = CPU jobs
    cpus_per_run: int = setting(2, within=(1, 1_024))
    # extra sbatch settings (submitit's slurm_additional_parameters), e.g. {account = "x"}
    slurm_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class CompareConfig:
    """A whole comparison; see the module docstring for the TOML form."""

    name: str  # names the report folder and its title
    # Quick, Draw! names or data file paths; sources of one class name are one category
    categories: tuple[str, ...] = setting(max_items=MAX_CLASSES)
    models: tuple[ModelSpec, ...]
    label: str = "Comparison run"  # one line for the report, e.g. how small the budget is
    size: int = setting(GOOGLE_SIZE, within=SIZES)  # bitmap side; Google's numpy_bitmap size
    # training drawings per category (the first ones in the file)
    per_class: int = setting(2000, within=DRAWINGS_PER_CLASS)
    # N per model and category, and per real set; FID needs some, memory bounds it
    n_samples: int = setting(500, within=(10, 1_000_000))
    # one training run per seed and model (and category); the tables give mean ± std over them
    seeds: tuple[int, ...] = setting((0, 1, 2), within=SEEDS, max_items=MAX_SEEDS)
    # the evaluation's seed: the held-out split, the classifier, the bootstrap. A config with
    # `seed` and no `seeds` trains that one seed too (config_from_dict)
    seed: int = setting(0, within=SEEDS)
    eval_every: int | None = setting(None, within=STEPS)  # None = each model's steps // 10
    # N of each validation score (drawings generated, and the real validation set's size)
    eval_samples: int = setting(200, within=(10, 1_000_000))
    select: str = setting("last", choices=SELECT_RULES)
    # FID, KID, precision and recall of degraded real drawings, to read the distances by
    calibration: bool = True
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    device: str = DEVICE  # CUDA, then MPS, then CPU; or a torch device string
    bootstrap: int = setting(200, within=(2, 100_000))  # replicates behind every interval
    ci_level: float = setting(0.95, within=FRACTIONS)  # coverage of the intervals
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    out: str | None = setting(None, path=True)  # report folder; None = reports/<name>

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.models:
            raise FieldError("models", "must be at least one [[models]] table, got none")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise FieldError("seeds", f"must be distinct seeds, at least one, got "
                                      f"{list(self.seeds)}")
        object.__setattr__(self, "seeds", tuple(self.seeds))

    def eval_every_of(self, spec: ModelSpec) -> int:
        """Steps between the validation scores of ``spec``'s runs."""
        every = spec.eval_every or self.eval_every
        return every if every is not None else max(1, spec.steps // CURVE_POINTS)

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("reports") / self.name

    @property
    def work_dir(self) -> Path:
        return self.out_dir / WORK


def config_from_dict(data: Mapping[str, Any]) -> CompareConfig:
    """A CompareConfig from parsed TOML; structure, types and ranges checked, one-line errors
    naming each field by its path (``models[1].batch_size``, ``classifier.max_epochs``), each
    model's name and options checked by the registry; ``$VARS`` in categories expanded."""
    config = from_mapping(CompareConfig, data)
    if "seed" in data and "seeds" not in data:  # the one-seed form of earlier configs
        config = dataclasses.replace(config, seeds=(config.seed,))
    for index, spec in enumerate(config.models):
        _check_model(spec, f"models[{index}]")
    return dataclasses.replace(
        config, categories=tuple(os.path.expandvars(c) for c in config.categories))


def _check_model(spec: ModelSpec, where: str) -> None:
    """The model is registered and its options are fields of its config, in range."""
    try:
        entry = registry.get_model(spec.model)
    except ConfigError as error:
        raise ConfigError(f"{where}.model: {error}") from None
    entry.model_config(spec.options, where=f"{where}.options")


def load_config(path: str | os.PathLike) -> CompareConfig:
    """Read and check a comparison TOML file; an error names the file."""
    return from_toml(path, config_from_dict)
