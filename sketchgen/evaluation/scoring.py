"""Scoring generated drawings of one category against held-out real drawings of it.

A :class:`Scorer` holds the evaluator and the reference features of every category, extracted
once; :meth:`Scorer.score` gives one results row: FID and KID with bootstrap intervals,
precision, recall, recognizability (NaN for a category the classifier does not know: its
features serve any category) and the two image checks (blank, duplicates), named as in
``sketchgen.evaluation.metrics.METRICS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from sketchgen.evaluation import metrics
from sketchgen.evaluation.classifier import Classifier
from sketchgen.evaluation.evaluator import recognizability


@dataclass(frozen=True)
class Scorer:
    """Scores a set of drawings of one category against that category's reference set."""

    classifier: Classifier
    reference: dict[str, np.ndarray]  # class -> reference features (N, D), float64
    bootstrap: int
    alpha: float  # 1 - ci_level
    seed: int

    def score(self, category: str, images: np.ndarray) -> dict[str, float]:
        features = metrics.extract_features(self.classifier.features, images)
        # Covariances and kernels of a few hundred rows are too small for threaded BLAS: on
        # the 2-core CPU one thread ran the FID bootstrap 5.8x and KID's 1.9x faster (the
        # threads' hand-offs, and waiting for torch's threads, cost more than they share).
        with threadpool_limits(limits=1, user_api="blas"):
            row = self._distances(self.reference[category], features)
        # The features serve any category; recognising one needs it among the classes.
        known = category in self.classifier.class_names
        row["recognizability"] = (recognizability(self.classifier, images, category).accuracy
                                  if known else float("nan"))
        return row | {"blank": metrics.blank_share(images),
                      "duplicates": metrics.duplicate_share(images)}

    def _distances(self, reference: np.ndarray, features: np.ndarray) -> dict[str, float]:
        row: dict[str, float] = {}
        for name in ("fid", "kid"):
            interval = metrics.bootstrap_ci(metrics.METRICS[name].compute, reference, features,
                                            self.bootstrap, self.seed, self.alpha)
            row |= {name: interval.value, f"{name}_low": interval.low,
                    f"{name}_high": interval.high}
        precision, recall = metrics.precision_recall(reference, features)
        return row | {"precision": precision, "recall": recall}


def make_scorer(classifier: Classifier, reference: Mapping[str, np.ndarray], bootstrap: int,
                ci_level: float, seed: int) -> Scorer:
    """A scorer of ``classifier``'s features against ``reference`` (class -> real uint8
    bitmaps), with ``bootstrap`` replicates behind ``ci_level`` intervals drawn from ``seed``."""
    features = {name: metrics.extract_features(classifier.features, images)
                for name, images in reference.items()}
    return Scorer(classifier, features, bootstrap, 1 - ci_level, seed)
