"""Calibration of a feature space: how far known degradations of real drawings score.

After Heusel et al. 2017 (Fig. 3): a second real set of a category, disjoint from the
reference, is degraded in standard ways at increasing strengths and scored against the
reference like a model's samples (FID, KID, precision, recall). A reader can then say "this
model is as far from real as a blur of σ = 1 px". :data:`DEGRADATIONS` is the one registry
(name -> strengths and function); :func:`calibrate` gives the table, whose ``none`` row
(the undegraded second set) is the real-vs-real floor.

White ink on black, as the rasterizer draws: a black rectangle hides the ink under it. The
stroke degradations move or drop points before rendering with ``rasterize.render`` at
Google's settings (those of the suite's training bitmaps). Every degradation draws from its
own generator, seeded from the seed and its name, so a row does not depend on the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter
from threadpoolctl import threadpool_limits

from rasterize.drawings import Drawing
from rasterize.render import render
from sketchgen.evaluation import metrics
from sketchgen.runtime import derived_seed

COLUMNS = ("degradation", "strength", "fid", "kid", "precision", "recall")
NONE = "none"  # the undegraded second set: the real-vs-real floor, at strength 0


@dataclass(frozen=True)
class Inputs:
    """What a degradation may use: the second real set as strokes and as bitmaps, and
    bitmaps of another category (for contamination)."""

    drawings: Sequence[Drawing]
    images: np.ndarray  # uint8 (N, size, size): ``drawings`` rendered at Google's settings
    other: np.ndarray  # uint8 (M, size, size)
    size: int


Apply = Callable[[Inputs, float, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Degradation:
    """One way to spoil real drawings, at strengths in order of severity."""

    strengths: tuple[float, ...]  # >= 4, none of them 0 (the none row is strength 0)
    unit: str  # what a strength measures, for the figure's axis and the table
    apply: Apply  # (inputs, strength, generator) -> uint8 (N, size, size)


def _noise(inputs: Inputs, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy = inputs.images + rng.normal(0.0, sigma, inputs.images.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _blur(inputs: Inputs, sigma: float, rng: np.random.Generator) -> np.ndarray:
    # sigma 0 along the batch axis: each image is blurred on its own
    blurred = gaussian_filter(inputs.images.astype(np.float64), (0.0, sigma, sigma))
    return np.clip(np.rint(blurred), 0, 255).astype(np.uint8)


def _rectangles(inputs: Inputs, share: float, rng: np.random.Generator) -> np.ndarray:
    """One black square per image, of side ``share`` x the image's, wholly inside it."""
    images = inputs.images.copy()
    side = max(1, round(share * inputs.size))
    corners = rng.integers(0, inputs.size - side + 1, size=(len(images), 2))
    for image, (top, left) in zip(images, corners, strict=True):
        image[top : top + side, left : left + side] = 0
    return images


def _jitter(inputs: Inputs, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Every point moved by Gaussian noise of ``sigma`` units of the 256-unit frame."""
    moved = [Drawing(tuple(stroke + rng.normal(0.0, sigma, stroke.shape)
                           for stroke in drawing.strokes)) for drawing in inputs.drawings]
    return render(moved, size=inputs.size)


def _drop(inputs: Inputs, share: float, rng: np.random.Generator) -> np.ndarray:
    """Each stroke dropped with probability ``share``; a drawing keeps one at random if
    every stroke was drawn to go (a blank image is a different failure)."""
    kept = []
    for drawing in inputs.drawings:
        keep = rng.random(len(drawing.strokes)) >= share
        if not keep.any():
            keep[rng.integers(len(keep))] = True
        kept.append(Drawing(tuple(s for s, k in zip(drawing.strokes, keep, strict=True) if k)))
    return render(kept, size=inputs.size)


def _contaminate(inputs: Inputs, share: float, rng: np.random.Generator) -> np.ndarray:
    """``share`` of the images replaced by drawings of the other category."""
    images = inputs.images.copy()
    count = round(share * len(images))
    replaced = rng.choice(len(images), count, replace=False)
    images[replaced] = inputs.other[rng.choice(len(inputs.other), count,
                                               replace=count > len(inputs.other))]
    return images


def _collapse(inputs: Inputs, k: float, rng: np.random.Generator) -> np.ndarray:
    """``k`` of the drawings, each repeated to fill the set (in random order)."""
    chosen = rng.choice(len(inputs.images), int(k), replace=False)
    return inputs.images[rng.permutation(np.resize(chosen, len(inputs.images)))]


# Strengths in order of severity, the weakest just above the floor at 28 px (with a width-16
# evaluator and N = 500: noise of σ = 8 grey levels and jitter of σ = 2 units scored at the
# floor), the strongest far above it.
DEGRADATIONS: dict[str, Degradation] = {
    "noise": Degradation((16.0, 32.0, 64.0, 128.0), "σ, grey levels", _noise),
    "blur": Degradation((0.5, 1.0, 1.5, 2.0), "σ, px", _blur),
    "rectangles": Degradation((0.25, 0.4, 0.55, 0.7), "side / image side", _rectangles),
    "jitter": Degradation((4.0, 8.0, 16.0, 32.0), "σ, units of 256", _jitter),
    "drop strokes": Degradation((0.1, 0.2, 0.4, 0.6), "share of strokes", _drop),
    "contamination": Degradation((0.1, 0.2, 0.4, 0.6), "share of the other category",
                                 _contaminate),
    "mode collapse": Degradation((64.0, 16.0, 4.0, 1.0), "k distinct drawings", _collapse),
}


def degrade(name: str, inputs: Inputs, strength: float, seed: int) -> np.ndarray:
    """``DEGRADATIONS[name]`` at ``strength``, the same images for the same seed."""
    if name not in DEGRADATIONS:
        raise ValueError(f"degradation {name!r} is not one of {', '.join(DEGRADATIONS)}")
    rng = np.random.default_rng(derived_seed(seed, f"calibration {name} {strength}"))
    return DEGRADATIONS[name].apply(inputs, strength, rng)


def calibrate(
    extractor: metrics.FeatureExtractor,
    reference: np.ndarray,
    drawings: Sequence[Drawing],
    other: np.ndarray,
    size: int,
    seed: int = 0,
) -> pd.DataFrame:
    """FID, KID, precision and recall of the degraded second set against ``reference``.

    ``reference``: uint8 ``(N, size, size)`` real bitmaps; ``drawings``: a second real set of
    the same category, disjoint from it (rendered here at Google's settings); ``other``:
    uint8 bitmaps of another category. One row per degradation and strength (columns
    :data:`COLUMNS`), after the ``none`` row: the undegraded second set, the floor.
    """
    most = int(max(DEGRADATIONS["mode collapse"].strengths))
    if len(drawings) <= most:
        raise ValueError(f"drawings: {len(drawings)} are too few to collapse to {most} "
                         "distinct ones")
    inputs = Inputs(list(drawings), render(drawings, size=size), np.asarray(other), size)
    real = metrics.extract_features(extractor, reference)
    sets = [(NONE, 0.0, inputs.images)] + [
        (name, strength, degrade(name, inputs, strength, seed))
        for name, degradation in DEGRADATIONS.items() for strength in degradation.strengths]
    rows = []
    for name, strength, images in sets:
        features = metrics.extract_features(extractor, images)
        # Small matrices: one BLAS thread is the fast choice (see scoring.Scorer.score).
        with threadpool_limits(limits=1, user_api="blas"):
            precision, recall = metrics.precision_recall(real, features)
            rows.append((name, strength, metrics.fid(real, features),
                         metrics.kid(real, features).mean, precision, recall))
    return pd.DataFrame(rows, columns=list(COLUMNS))
