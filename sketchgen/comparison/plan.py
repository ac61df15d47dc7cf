"""The plan of a comparison: which training runs it needs, each checked before any work.

Owns: :class:`PlannedRun` (one run to train or load, and the categories scored from it),
:func:`plan_runs` and its checks -- the models' names together, categories and their class
names, the evaluator's size, runs to load, and the file names the report will write -- and
those file names (:func:`grid_path`, :func:`figures_name`).

Every model is trained once per seed of ``seeds``. Class-conditional models are trained once
on all categories and asked for each category in turn; unconditional models are trained once
per category. A category is a class name of
``sketchgen.data`` (:func:`sketchgen.data.sources.class_name`): sources with the same class
name -- the category ``sun`` and a file ``sun.ndjson`` -- are one category, as they are one
label to ``sketchgen train``, so an unconditional model's run of it reads them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sketchgen import outputs
from sketchgen.comparison.config import CompareConfig, ModelSpec
from sketchgen.data.sources import class_name, class_names
from sketchgen.errors import UsageError
from sketchgen.evaluation.calibration import DEGRADATIONS
from sketchgen.evaluation.evaluator import load_classifier
from sketchgen.evaluation.feature_space import EvaluatorConfig
from sketchgen.models import registry
from sketchgen.report.results import REAL_FLOOR
from sketchgen.training.config import TrainConfig, config_from_mapping
from sketchgen.training.inputs import check_categories
from sketchgen.training.run_folder import RunFolder
from sketchgen.training.sampling import load_run


@dataclass(frozen=True)
class PlannedRun:
    """One training run (or loaded run) and the categories it is scored on."""

    spec: ModelSpec
    train: TrainConfig  # what `sketchgen train` would be given
    categories: tuple[str, ...]  # class names scored from this run
    conditional: bool  # asked for each category by label
    load_dir: Path | None  # an existing run to sample instead of training
    first_seed: bool  # the run of the config's first seed: its figures go into the report

    @property
    def seed(self) -> int:
        return self.train.seed

    @property
    def class_names(self) -> tuple[str, ...]:
        """The run's classes, in label order (``sketchgen.data``'s rule)."""
        return class_names(self.train.categories)

    @property
    def run_dir(self) -> Path:
        return self.load_dir or Path(self.train.out)


def plan_runs(config: CompareConfig) -> list[PlannedRun]:
    """Every training run of the comparison, each validated; raises UsageError on the first
    problem, before anything is trained."""
    _check_settings(config)
    check_categories(TrainConfig(categories=config.categories))
    names = _class_names(config)
    runs_dir = config.work_dir / "runs"
    plans = []
    for spec in config.models:
        for seed in config.seeds if spec.load is None else config.seeds[:1]:  # one run to load
            first = seed == config.seeds[0]
            folder = runs_dir / spec.name / f"seed{seed}"
            everything = _train_config(config, spec, config.categories, folder, seed)
            if first:
                check_categories(everything)
                _, model_config = registry.resolve(everything)  # unknown model or option
            if model_config.conditional:
                plans.append(_planned(spec, everything, names, True, first))
                continue
            for name in names:
                sources = tuple(s for s in config.categories if class_name(s) == name)
                one = _train_config(config, spec, sources, folder / name, seed)
                plans.append(_planned(spec, one, (name,), False, first))
    _check_report_files(plans, names)
    return plans


def _check_settings(config: CompareConfig) -> None:
    """What the fields' own checks cannot see: the models' names together, the classifier's
    size at this image size, and a classifier to load (read and checked now, not after the
    data are loaded)."""
    config.classifier.classifier_config(config.size, config.seed)  # the network's size
    _check_default_evaluator(config)
    load = config.classifier.load
    if load is not None and not Path(load).is_file():
        raise UsageError(f"classifier.load = {load!r}: no such file")
    if load is not None:
        load_classifier(load, "cpu")
    collapse = max(DEGRADATIONS["mode collapse"].strengths)
    if config.calibration and config.n_samples <= collapse:
        raise UsageError(f"calibration = true needs n_samples > {collapse:g} (it collapses the "
                         f"real drawings to {collapse:g} distinct ones), got "
                         f"{config.n_samples}; raise n_samples or set calibration = false")
    names = [spec.name for spec in config.models]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(f"models: {', '.join(twice)} listed twice; give each a distinct label")
    if REAL_FLOOR in names:
        raise UsageError(f"models: {REAL_FLOOR!r} is reserved for the real-vs-real floor")


def _check_default_evaluator(config: CompareConfig) -> None:
    """The default evaluator trained on the first drawings of its categories: of a compared
    category, those must be training drawings of the comparison, never held out."""
    if config.classifier.evaluator != "default":
        return
    if config.classifier.load is not None:
        raise UsageError("classifier: give evaluator = \"default\" or load, not both")
    default = EvaluatorConfig()
    shared = sorted(set(class_names(config.categories)) & set(default.categories))
    if shared and config.per_class < default.per_class:
        raise UsageError(f"classifier.evaluator = \"default\" was trained on the first "
                         f"{default.per_class} drawings of {', '.join(shared)}; per_class = "
                         f"{config.per_class} would hold some of them out as validation and "
                         f"test drawings (raise per_class to {default.per_class} or more)")


def _class_names(config: CompareConfig) -> tuple[str, ...]:
    """The categories of the comparison, each once: the class names of its sources (data's
    rule), which become file and folder names, so each is checked to be a plain name."""
    outputs.check_name(config.name, "name")
    folded: dict[str, str] = {}  # run folders are one where file systems ignore case
    for index, spec in enumerate(config.models):
        if spec.label:
            outputs.check_name(spec.label, f"models[{index}].label")
        first = folded.setdefault(spec.name.casefold(), spec.name)
        if first != spec.name:
            raise UsageError(f"models: {first!r} and {spec.name!r} differ only in case; give "
                             "each a distinct label")
    for index, source in enumerate(config.categories):
        outputs.check_name(class_name(source), f"class name of categories[{index}]")
    names = class_names(config.categories)
    if len(names) < 2:
        raise UsageError(f"categories: give at least two classes (the classifier needs them), "
                         f"got {', '.join(map(repr, names))}")
    return names


def _train_config(config: CompareConfig, spec: ModelSpec, categories: tuple[str, ...],
                  out: Path, seed: int) -> TrainConfig:
    return config_from_mapping({
        "model": spec.model, "categories": categories, "size": config.size,
        "per_class": config.per_class, "steps": spec.steps, "batch_size": spec.batch_size,
        "seed": seed, "out": str(out), "device": config.device,
        "model_options": dict(spec.options),
        **({} if spec.seconds is None else {"seconds": spec.seconds}),
        **({} if spec.grad_norm_every is None else {"grad_norm_every": spec.grad_norm_every}),
    })


def _planned(spec: ModelSpec, train_config: TrainConfig, categories: tuple[str, ...],
             conditional: bool, first_seed: bool) -> PlannedRun:
    load_dir = None
    if spec.load is not None:
        load_dir = Path(spec.load) if conditional else Path(spec.load) / categories[0]
        if first_seed:
            _check_loadable(spec, load_dir, categories)
    return PlannedRun(spec, train_config, categories, conditional, load_dir, first_seed)


def _check_loadable(spec: ModelSpec, run_dir: Path, categories: tuple[str, ...]) -> None:
    """The run exists, holds this model, was trained on these categories with this budget,
    and its weights fit the model (read as sampling will read them)."""
    run = RunFolder(run_dir)
    path = run.checkpoint
    if not path.is_file():
        raise UsageError(f"models: {spec.name}: load = {spec.load!r} but {path} does not exist")
    checkpoint = run.read_checkpoint()
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


# -- the report's file names --------------------------------------------------------------------


def _check_report_files(plans: list[PlannedRun], names: tuple[str, ...]) -> None:
    """Each figure of the report gets a file of its own: the names in file names are made
    file-safe ("a b" as a_b) and joined by "-" (model "x-y" on "z", model "x" on "y-z"), and
    some file systems ignore case."""
    files = [(grid_path(REAL_FLOOR, name), f"{REAL_FLOOR} on {name}")
             for name in names]
    for plan in (plan for plan in plans if plan.first_seed):
        files.append((f"training/{figures_name(plan)}/", run_name(plan)))
        files += [(grid_path(plan.spec.name, category), f"{plan.spec.name} on {category}")
                  for category in plan.categories]
    seen: dict[str, str] = {}
    for path, what in files:
        first = seen.setdefault(path.casefold(), what)
        if first != what:
            raise UsageError(f"models: {first} and {what} would write one file, {path}; give "
                             "one of them another label")


def grid_path(model: str, category: str) -> str:
    """Where ``model``'s grid of ``category`` goes in the report folder."""
    return f"grids/{_slug(model)}-{_slug(category)}.png"


def run_name(plan: PlannedRun) -> str:
    """The model of the planned run, and its category if it is trained on one."""
    return plan.spec.name + ("" if plan.conditional else f" on {plan.categories[0]}")


def run_title(plan: PlannedRun) -> str:
    """The planned run as the progress lines and figure captions name it."""
    return f"{run_name(plan)}, seed {plan.seed}"


def figures_name(plan: PlannedRun) -> str:
    """The folder under ``training/`` that receives the planned run's own figures."""
    return _slug(plan.spec.name + ("" if plan.conditional else f"-{plan.categories[0]}"))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
