"""Feature spaces for FID, KID and precision/recall, and the suite's default one.

An :class:`Evaluator` is a trained Quick, Draw! classifier (``sketchgen.evaluation.evaluator``)
together with what identifies it (``identity``: its recipe, the sha256 of its training bitmaps
and of its weights, its test accuracy). :class:`EvaluatorConfig` is the recipe of one the
suite trains itself -- the suite downloads no weights --, once, on the CPU, and keeps in the
cache folder keyed by the recipe's sha256 (:func:`evaluator`).

torch is imported by the functions that need it, so that the notebook API (``import
sketchgen``) stays light.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from rasterize.geometry import GOOGLE_SIZE
from sketchgen.config import DRAWINGS_PER_CLASS, SEEDS, SIZES, check_fields, setting
from sketchgen.data.cache import cache_dir
from sketchgen.data.datasets import LabelledBitmaps, drawings_of, load_bitmaps
from sketchgen.errors import FieldError
from sketchgen.evaluation import metrics
from sketchgen.runtime import atomic_write, file_lock, torch_threads

if TYPE_CHECKING:
    from sketchgen.evaluation.classifier import Classifier, ClassifierConfig


# Every category whose first 250 simplified lines the shared mirror holds in Google's order
# (its README), so the default evaluator is the same from Google's bucket and from the mirror.
EVALUATOR_CATEGORIES = (
    "bear", "beard", "bird", "bowtie", "circle", "cookie", "crab", "dog", "dragon", "ear",
    "eye", "eyeglasses", "face", "hat", "headphones", "hot dog", "monkey", "moustache",
    "mouth", "necklace", "nose", "sandwich", "sock", "wine bottle", "wine glass", "zigzag",
)
EVALUATOR_FORMAT = "sketchgen.api.evaluator/1"  # bumped when the build recipe changes


@dataclass(frozen=True)
class EvaluatorConfig:
    """What defines an evaluator; its network and training are ``ClassifierConfig``'s
    defaults, split 80/10/10 by ``evaluator.fit_and_evaluate``."""

    categories: tuple[str, ...] = setting(EVALUATOR_CATEGORIES)  # Google names, one class each
    # Google's first N simplified drawings of each: 26 x 250 train in 22 s on one core (early
    # stopping after 11 epochs), once per cache folder
    per_class: int = setting(250, within=DRAWINGS_PER_CLASS)
    # bitmap side; the suite's default training size and Google's numpy_bitmap
    size: int = setting(GOOGLE_SIZE, within=SIZES)
    seed: int = setting(0, within=SEEDS)  # weight initialisation, batch order and the split

    def __post_init__(self) -> None:
        if isinstance(self.categories, list):
            object.__setattr__(self, "categories", tuple(self.categories))
        check_fields(self)
        if len(self.categories) < 2:
            raise FieldError("categories", "must name at least two (a classifier's classes), "
                                           f"got {list(self.categories)}")

    def to_dict(self) -> dict[str, Any]:
        """The full recipe, which keys the cache: these fields, the classifier's config, the
        format (always rendered from simplified drawings)."""
        return {"format": EVALUATOR_FORMAT, "categories": list(self.categories),
                "per_class": self.per_class, "size": self.size, "seed": self.seed,
                "classifier": self.classifier_config().to_dict()}

    def classifier_config(self) -> ClassifierConfig:
        from sketchgen.evaluation.classifier import ClassifierConfig

        return ClassifierConfig(size=self.size, seed=self.seed)


@dataclass(frozen=True)
class Evaluator:
    """A feature space for FID, KID and precision/recall: a trained Quick, Draw! classifier
    and what identifies it (``identity``: config, weights sha256, ...)."""

    classifier: Classifier
    identity: dict[str, Any]

    @property
    def feature_name(self) -> str:
        return self.classifier.feature_name  # e.g. "qd-cnn-k16/dense", as in compare's tables

    def images(self, value: Any, name: str = "images") -> np.ndarray:
        """``value`` as the classifier's input: uint8 bitmaps ``(N, size, size)`` (or the
        suite's ``.npy`` rows ``(N, size*size)``), LabelledBitmaps, or drawings (rendered as
        the classifier's training data were)."""
        if isinstance(value, LabelledBitmaps):
            return value.bitmaps
        if not isinstance(value, np.ndarray):
            return self.classifier.render(drawings_of(value, name))
        side = self.classifier.config.size
        if value.ndim == 2 and value.shape[1] == side * side:
            return value.reshape(len(value), side, side)
        return value

    def features(self, value: Any, name: str = "images") -> np.ndarray:
        """float64 ``(N, D)`` features of ``value`` (see :meth:`images`)."""
        from sketchgen.evaluation.classifier import as_input

        images = self.images(value, name)
        try:
            as_input(images, self.classifier.config)
            return metrics.extract_features(self.classifier.features, images)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None


def evaluator(config: EvaluatorConfig | None = None, mirror: str | None = None) -> Evaluator:
    """The evaluator for ``config`` (default: the suite's default evaluator), from the cache
    folder (``sketchgen.data.cache.cache_dir()/evaluators``) or trained once on the CPU and
    cached there. ``mirror``: where its drawings come from (default: as ``sketchgen.data``)."""
    config = config or EvaluatorConfig()
    recipe = config.to_dict()
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    path = cache_dir() / "evaluators" / f"{key[:32]}.pt"
    record = path.with_suffix(".json")
    if not (path.exists() and record.exists()):
        with file_lock(path.with_suffix(".lock")):  # one process trains; the others wait
            if not (path.exists() and record.exists()):  # and then read what it cached
                return _build(config, path, record, mirror)
    return _cached(path, record, recipe)


def _cached(path: Path, record: Path, recipe: dict[str, Any]) -> Evaluator:
    """The cached evaluator, if its weights, settings and classes are those its record and
    the recipe name (the record's sha256 is checked against the weights as loaded)."""
    from sketchgen.evaluation.evaluator import load_classifier, weights_sha256

    classifier = load_classifier(path, "cpu")
    try:
        identity = json.loads(record.read_text())
    except ValueError:  # not JSON, or not UTF-8
        identity = None
    if not (isinstance(identity, dict) and identity.get("config") == recipe
            and identity.get("weights_sha256") == weights_sha256(classifier)
            and classifier.config.to_dict() == recipe["classifier"]
            and list(classifier.class_names) == recipe["categories"]):
        raise ValueError(f"{path}: the cached evaluator does not match its record {record} "
                         "(modified or corrupt); delete both to build it again")
    return Evaluator(classifier, identity)


# Built on the CPU with one thread: the same torch on the same kind of CPU then gives the
# same weights bit for bit (CUDA kernels are not deterministic, and the thread count changes
# the order of float sums: 1 and 2 threads gave different weights). 6,500 small bitmaps need
# no GPU, and one thread is also the fast choice on a shared machine: two threads on the
# 2-core machine under load took 404 s, one took 22 s.
_BUILD_DEVICE, _BUILD_THREADS = "cpu", 1


def _build(config: EvaluatorConfig, path: Path, record: Path, mirror: str | None) -> Evaluator:
    from sketchgen.evaluation.evaluator import (
        fit_and_evaluate,
        save_classifier,
        source_locations,
        weights_sha256,
    )

    loaded = load_bitmaps(config.categories, config.size, per_class=config.per_class,
                          mirror=mirror)
    counts = np.bincount(loaded.labels, minlength=len(loaded.class_names))
    short = [f"{name} ({count})" for name, count in zip(loaded.class_names, counts, strict=True)
             if count < config.per_class]
    if short:
        raise ValueError(f"the evaluator needs the first {config.per_class} drawings of each "
                         f"category; the data source has fewer for {', '.join(short)}")
    classifier_config = config.classifier_config()
    with (torch_threads(_BUILD_THREADS),
          tqdm(total=classifier_config.max_epochs, unit="epoch", file=sys.stderr,
               desc=f"evaluator {classifier_config.feature_name} (once; cached)") as bar):

        def log(entry: dict) -> None:
            bar.update(1)
            bar.set_postfix(valid_accuracy=f"{entry['valid_accuracy']:.3f}", refresh=False)

        classifier, test = fit_and_evaluate(
            loaded.bitmaps, loaded.labels, loaded.class_names, classifier_config, _BUILD_DEVICE,
            log, source_locations(config.categories, classifier_config, mirror))
    data = hashlib.sha256(np.ascontiguousarray(loaded.bitmaps).tobytes()
                          + loaded.labels.astype(np.int64).tobytes())
    identity = {"feature_space": classifier.feature_name, "config": config.to_dict(),
                "data_sha256": data.hexdigest(), "weights_sha256": weights_sha256(classifier),
                "best_epoch": classifier.best_epoch, "test_accuracy": test.accuracy,
                "test_drawings": test.n, "built_with": _build_environment()}
    # Each written atomically; the cache is used only when both exist (a build killed
    # between the two is redone), and _cached checks that they belong together.
    atomic_write(record, lambda tmp: tmp.write_text(json.dumps(identity, indent=1) + "\n"))
    save_classifier(classifier, path)
    return Evaluator(classifier, identity)


def _build_environment() -> dict[str, Any]:
    """What the weights' bits depend on besides the config (for comparing identities)."""
    import torch

    return {"device": _BUILD_DEVICE, "threads": _BUILD_THREADS, "torch": torch.__version__,
            "machine": platform.machine()}


def as_evaluator(value: Any) -> Evaluator:
    """None (the default evaluator), an Evaluator, an EvaluatorConfig, a Classifier or the
    path of a saved classifier."""
    from sketchgen.evaluation.classifier import Classifier
    from sketchgen.evaluation.evaluator import load_classifier, weights_sha256

    if value is None or isinstance(value, EvaluatorConfig):
        return evaluator(value)
    if isinstance(value, Evaluator):
        return value
    if isinstance(value, (str, os.PathLike)):
        value = load_classifier(value, "cpu")
    if isinstance(value, Classifier):
        return Evaluator(value, {"feature_space": value.feature_name,
                                 "config": value.config.to_dict(),
                                 "weights_sha256": weights_sha256(value)})
    raise TypeError("evaluator: expected None, an Evaluator, an EvaluatorConfig, a Classifier "
                    f"or a saved classifier's path, got {type(value).__name__}")
