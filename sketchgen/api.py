"""The notebook API: one call per step, numpy in and numpy out.

::

    import sketchgen as sg
    drawings = sg.load("eye", per_class=2000)        # LabelledDrawings (or a path, or several)
    images = sg.render(drawings, size=28)             # uint8 (N, 28, 28), white ink on black
    model = sg.fit("dcgan", drawings, steps=500)      # a Model (temporary run folder, or out=)
    fake = model.sample(1000, seed=1)                 # uint8 (1000, 28, 28)
    print(sg.fid(images[-1000:], fake))               # in the default evaluator's features

FID in steps, as pytorch-fid composes it (the real set's statistics computed once)::

    real = sg.feature_statistics(sg.features(images))   # (mean, covariance) of (N, D) features
    sg.frechet_distance(*real, *sg.feature_statistics(sg.features(fake)))  # == sg.fid(...)

Every default has one home, shared with the command line: loading is
``sketchgen.data.datasets.load_drawings``, rendering ``rasterize.render.render`` (Google's
geometry), training settings ``sketchgen.training.config.TrainConfig`` plus the model's config
dataclass, the evaluator's network and training
``sketchgen.evaluation.classifier.ClassifierConfig`` (what ``sketchgen compare`` trains by
default), the metrics ``sketchgen.evaluation.metrics``, the evaluator's cache
``sketchgen.evaluation.feature_space``. Errors name parameters, never flags.

The default evaluator: the suite downloads no weights, so FID's feature space is a width-k
Quick, Draw! classifier it trains itself (:class:`EvaluatorConfig`), once, on Google's first
250 simplified drawings of 26 categories -- lines that Google's bucket and the shared mirror
hold identically -- and keeps in the cache folder keyed by its full config; its identity
(config, sha256 of the training bitmaps and of the weights, test accuracy) is
``sg.evaluator().identity``.

torch is imported only by the functions that need it, so ``import sketchgen`` stays light.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rasterize.drawings import Drawing
from rasterize.render import render as render_drawings
from sketchgen import outputs
from sketchgen.config import SAMPLE_SEED, SEEDS
from sketchgen.data.datasets import LabelledBitmaps, LabelledDrawings, drawings_of, load_drawings
from sketchgen.errors import ConfigError, DivergenceError, OutputError
from sketchgen.evaluation import metrics
from sketchgen.evaluation.feature_space import Evaluator as Evaluator  # the API's names
from sketchgen.evaluation.feature_space import EvaluatorConfig as EvaluatorConfig
from sketchgen.evaluation.feature_space import as_evaluator
from sketchgen.evaluation.feature_space import evaluator as evaluator
from sketchgen.models import registry
from sketchgen.training.config import FIELDS, TrainConfig, config_from_mapping

if TYPE_CHECKING:
    from sketchgen.training.sampling import LoadedRun

load = load_drawings  # sg.load(sources, per_class=None, fmt="simplified", ...): the data module's
# FID in steps (see the module docstring): features -> (mean, covariance) -> distance
feature_statistics = metrics.feature_statistics
frechet_distance = metrics.frechet_distance


def render(drawings: LabelledDrawings | Sequence[Drawing], **options: Any) -> np.ndarray:
    """uint8 bitmaps ``(N, size, size)``, white ink on black, of LabelledDrawings or a list of
    drawings: ``rasterize.render.render`` with its options and defaults (``size=28``, line
    width 16, padding 16: byte for byte Google's numpy_bitmap at 28 px)."""
    return render_drawings(drawings_of(drawings, "drawings"), **options)


# -- training -----------------------------------------------------------------------------------


def fit(model: str, data: LabelledDrawings | LabelledBitmaps, *,
        out: str | os.PathLike | None = None, resume: bool = True, **settings: Any) -> Model:
    """Train registry model ``model`` on ``data`` (drawings or bitmaps already loaded) and
    return it as a :class:`Model`.

    ``settings``: ``TrainConfig`` fields (``steps``, ``batch_size``, ``seed``, ``size``,
    ``device``, ``progress``, ...; their defaults are the CLI's) and the model's own options
    (e.g. ``width=32``; or a ``model_options`` dict). ``out=None`` trains in a temporary run
    folder that the Model removes when closed or garbage-collected; with ``out``, the run stays
    there, and calling ``fit`` again with the same settings and data returns that run
    (continuing it if it was interrupted, or if ``steps`` grew); other settings or data are
    refused, naming what differs. ``resume=False`` refuses an ``out`` that holds a run.
    """
    from sketchgen.training.harness import train
    from sketchgen.training.run_folder import RunFolder
    from sketchgen.training.sampling import load_run

    config = _train_config(model, data, out, settings)
    registry.resolve(config)  # bad options fail here, before an existing run is looked at
    if out is None:
        folder = tempfile.mkdtemp(prefix="sketchgen-run-")
        try:
            train(dataclasses.replace(config, out=folder), data=data)
        except DivergenceError:
            raise  # the message points into the folder: keep it for inspection
        except BaseException:
            with contextlib.suppress(OSError, OutputError):  # the failure is what matters
                _remove_temporary(Path(folder))
            raise
        return Model(load_run(folder), temporary=True)
    if not RunFolder(out).checkpoint.exists():
        train(config, data=data)
    elif not _finished(config, data, resume):
        train(config, resume=True, data=data)
    return Model(load_run(out))


def _remove_temporary(folder: Path) -> None:
    """Delete a temporary run folder of ``fit``'s: through the checked delete
    (``outputs.remove_folder``: marked by train, in the temporary directory), or as the empty
    folder it still is if train stopped before taking it."""
    from sketchgen.training.run_folder import RunFolder

    if not folder.exists():
        return
    if not any(folder.iterdir()):
        folder.rmdir()
        return
    outputs.remove_folder(folder, tempfile.gettempdir(), RunFolder.kind)


def _train_config(model: str, data: Any, out: str | os.PathLike | None,
                  settings: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a ``fit`` call: TrainConfig fields as given, everything else a model
    option (unknown names fail, listing both kinds)."""
    from sketchgen.training.inputs import config_for_data

    entry = registry.get_model(model)
    options = {key: value for key, value in settings.items() if key not in FIELDS}
    known = sorted(field.name for field in dataclasses.fields(entry.default_config()))
    unknown = sorted(set(options) - set(known))
    if unknown:
        trainable = sorted(set(FIELDS) - {"model", "out"})
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}: training settings are "
                          f"{', '.join(trainable)}; options of model {model!r} are "
                          f"{', '.join(known)}")
    values = {key: value for key, value in settings.items() if key in FIELDS}
    values["model"] = model
    if options:
        values["model_options"] = {**settings.get("model_options", {}), **options}
    if out is not None:
        values["out"] = os.fspath(out)
    return config_for_data(config_from_mapping(values), data)


def _finished(config: TrainConfig, data: Any, resume: bool) -> bool:
    """Whether the run in ``config.out`` is complete; refuses one that does not fit."""
    from sketchgen.training.checkpoints import check_resumable
    from sketchgen.training.run_folder import RunFolder

    where = f"out={config.out!r}"
    if not resume:
        raise ConfigError(f"{where} already holds a run; pass resume=True to continue or "
                          "reuse it, or choose another out")
    checkpoint = RunFolder(config.out).read_checkpoint()  # names the file if damaged
    try:
        check_resumable(checkpoint, config, data)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}; choose another out to train with these "
                          "settings") from None
    if checkpoint["step"] > config.steps:
        raise ConfigError(f"{where} holds a run trained for {checkpoint['step']} steps, more "
                          f"than steps={config.steps}")
    return checkpoint["step"] == config.steps


def _seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed not in SEEDS:
        raise ValueError(f"seed must be an integer in {SEEDS}, got {seed!r}")
    return int(seed)


class Model:
    """A trained run, sampled as numpy: :meth:`sample` gives uint8 bitmaps, and
    :meth:`sample_drawings` strokes for stroke models; the same seed gives the same samples
    (``sketchgen.training.sampling``'s functions, as ``sketchgen sample`` uses)."""

    def __init__(self, run: LoadedRun, temporary: bool = False) -> None:
        self._run = run
        self._remove = None  # removes a temporary run folder, once
        if temporary:
            self._remove = weakref.finalize(self, _remove_temporary, run.run_dir)

    @classmethod
    def open(cls, run_dir: str | os.PathLike, **options: Any) -> Model:
        """A run folder written by ``fit(out=...)`` or ``sketchgen train``; ``options`` go to
        ``sketchgen.training.sampling.load_run`` (``device``)."""
        from sketchgen.training.sampling import load_run

        return cls(load_run(run_dir, **options))

    @property
    def kind(self) -> str:
        return self._run.kind  # "bitmap" or "strokes"

    @property
    def size(self) -> int:
        return self._run.size

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._run.class_names

    @property
    def conditional(self) -> bool:
        return self._run.task.conditional

    @property
    def step(self) -> int:
        return self._run.step

    @property
    def run_dir(self) -> Path | None:
        """The run folder (checkpoint, log, grids, learning.gif); None once a temporary one
        has been removed."""
        if self._remove is not None and not self._remove.alive:
            return None
        return self._run.run_dir

    def sample_classes(self, n: int, category: str | None = None) -> np.ndarray:
        """The class name of each of the ``n`` rows ``sample`` returns (str array): the given
        category, or (none given) the classes in turn."""
        return np.asarray(self.class_names)[self._labels(n, category).numpy()]

    def sample(self, n: int, seed: int = SAMPLE_SEED, category: str | None = None
               ) -> np.ndarray:
        """``n`` uint8 bitmaps ``(n, size, size)``, white ink on black; ``category`` for a
        class-conditional model, else the classes in turn (see :meth:`sample_classes`)."""
        from sketchgen.training.sampling import sample_images

        return sample_images(self._run, self._labels(n, category), _seed(seed))

    def sample_drawings(self, n: int, seed: int = SAMPLE_SEED, category: str | None = None
                        ) -> list[Drawing]:
        """``n`` drawings (strokes) from a stroke model; ``render`` of them is what
        :meth:`sample` returns for the same arguments."""
        from sketchgen.training.sampling import sample_drawings

        if self.kind != "strokes":
            raise ValueError(f"this model draws bitmaps, not strokes ({self.kind!r}); "
                             "use sample()")
        return sample_drawings(self._run, self._labels(n, category), _seed(seed))

    def _labels(self, n: int, category: str | None):
        from sketchgen.training.sampling import sample_labels

        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        return sample_labels(self._run, int(n), category)

    def close(self) -> None:
        """Remove a temporary run folder now (the model stays usable: it is in memory)."""
        if self._remove is not None:
            self._remove()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Model({self.kind}, step {self.step}, classes {list(self.class_names)}, "
                f"run_dir {self.run_dir})")


# -- evaluation ---------------------------------------------------------------------------------


def features(images: Any, evaluator: Any = None) -> np.ndarray:
    """float64 ``(N, D)`` features of bitmaps or drawings in ``evaluator``'s feature space
    (default: the default evaluator); the input of every ``sketchgen.evaluation.metrics``
    function."""
    return as_evaluator(evaluator).features(images, "images")


def _pair(real: Any, fake: Any, evaluator: Any) -> tuple[np.ndarray, np.ndarray]:
    """Features of both sets; every metric needs at least two of each."""
    judge = as_evaluator(evaluator)
    pair = judge.features(real, "real"), judge.features(fake, "fake")
    for name, features in zip(("real", "fake"), pair, strict=True):
        if len(features) < 2:
            raise ValueError(f"{name}: need at least 2 images, got {len(features)}")
    return pair


def fid(real: Any, fake: Any, evaluator: Any = None) -> float:
    """FID between two sets of bitmaps or drawings (``sketchgen.evaluation.metrics.fid``) in
    ``evaluator``'s feature space (default: the default evaluator)."""
    return metrics.fid(*_pair(real, fake, evaluator))


def kid(real: Any, fake: Any, evaluator: Any = None, **options: Any) -> metrics.KID:
    """KID (mean, std, subsets, subset size) as ``sketchgen.evaluation.metrics.kid``, whose options
    (``subsets``, ``subset_size``, ``seed``) and defaults apply."""
    return metrics.kid(*_pair(real, fake, evaluator), **options)


def scores(real: Any, fake: Any, evaluator: Any = None) -> dict[str, float]:
    """Every metric of ``sketchgen.evaluation.metrics.FEATURE_METRICS`` (fid, kid, precision,
    recall), as ``sketchgen compare`` names them, from one feature extraction."""
    real_features, fake_features = _pair(real, fake, evaluator)
    return {name: float(metric.compute(real_features, fake_features))
            for name, metric in metrics.FEATURE_METRICS.items()}
