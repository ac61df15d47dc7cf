"""Sample-quality metrics on feature vectors: features -> statistics -> distance.

Every metric takes two float arrays of shape ``(N, D)`` -- features of real and of generated
drawings from the same extractor -- so the feature space is a choice made once, by the caller
(in this suite the Quick, Draw! classifier's penultimate layer, named in every table). Any
callable mapping ``uint8`` images ``(N, H, W)`` to ``(N, D)`` floats is an extractor;
:func:`extract_features` runs it in batches.

* FID (Heusel et al. 2017): Fréchet distance between Gaussians fitted to the two sets, in
  float64, the matrix square root through symmetric eigendecompositions.
* KID (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel
  ``(x·y / D + 1)³``, averaged over random subsets (mean and spread).
* Precision and recall (Kynkäänniemi et al. 2019): the fraction of generated samples inside
  the real k-NN manifold, and of real samples inside the generated one.
* :func:`bootstrap_ci` and :func:`real_vs_real_floor` put any of them in context.

Two checks read the images themselves, no features: :func:`blank_share` and
:func:`duplicate_share`, the failures that a distance alone reports only as "large".

:data:`METRICS` names them all, with how a table prints each, for the API, scoring and the
report alike; :data:`FEATURE_METRICS` are those computed from two feature sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

FeatureExtractor = Callable[[np.ndarray], np.ndarray]
MetricFn = Callable[[np.ndarray, np.ndarray], float]


def extract_features(
    extractor: FeatureExtractor, images: np.ndarray, batch_size: int = 500
) -> np.ndarray:
    """Features of ``images`` as float64 ``(N, D)``, ``batch_size`` images per extractor call."""
    if len(images) == 0:
        raise ValueError("no images to extract features from")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    batches = [
        np.asarray(extractor(images[start : start + batch_size]), dtype=np.float64)
        for start in range(0, len(images), batch_size)
    ]
    features = np.concatenate(batches)
    if features.ndim != 2 or len(features) != len(images):
        raise ValueError(
            f"extractor returned shape {features.shape} for {len(images)} images; expected (N, D)"
        )
    return features


def _check_features(features: np.ndarray, name: str, min_rows: int = 2) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"{name}: expected features of shape (N, D), got {features.shape}")
    if len(features) < min_rows:
        raise ValueError(f"{name}: need at least {min_rows} samples, got {len(features)}")
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{name}: features contain NaN or inf")
    return features


# --- FID ------------------------------------------------------------------------------------


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of ``(N, D)`` features, in float64."""
    features = _check_features(features, "features")
    mu = features.mean(axis=0)
    sigma = np.atleast_2d(np.cov(features, rowvar=False))
    return mu, sigma


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``Tr sqrt(sigma1 @ sigma2)`` for symmetric positive semi-definite matrices.

    With ``sigma1 = V diag(w) V^T``, ``sigma1 @ sigma2`` has the eigenvalues of the symmetric
    PSD ``diag(sqrt w) V^T sigma2 V diag(sqrt w)``, so two symmetric eigendecompositions
    replace the general (Schur-based) ``scipy.linalg.sqrtm`` and its complex round-off. Unlike
    a Cholesky factor this also holds for singular ``sigma1`` (dead ReLU units, N <= D).
    """
    eigenvalues, eigenvectors = np.linalg.eigh(sigma1)
    # Covariances are PSD: negative eigenvalues are rounding noise.
    roots = np.sqrt(np.clip(eigenvalues, 0.0, None))
    product = (eigenvectors.T @ sigma2 @ eigenvectors) * roots[:, None] * roots[None, :]
    product_eigenvalues = np.linalg.eigvalsh((product + product.T) / 2.0)
    return float(np.sqrt(np.clip(product_eigenvalues, 0.0, None)).sum())


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """``|mu1 - mu2|² + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))``, in float64."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    dim = mu1.shape[0]
    if (
        mu1.shape != (dim,)
        or mu2.shape != (dim,)
        or sigma1.shape != (dim, dim)
        or (sigma2.shape != (dim, dim))
    ):
        raise ValueError(
            f"mismatched shapes: mu1 {mu1.shape}, sigma1 {sigma1.shape}, "
            f"mu2 {mu2.shape}, sigma2 {sigma2.shape}"
        )
    diff = mu1 - mu2
    distance = (
        diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    )
    # A squared distance: a negative value can only be rounding, of the order of 1e-12 * trace.
    return max(float(distance), 0.0)


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets."""
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


# --- KID ------------------------------------------------------------------------------------


class KID(NamedTuple):
    mean: float  # unbiased MMD² averaged over the subsets
    std: float  # spread over the subsets (population std, as torch-fidelity and torchmetrics)
    subsets: int
    subset_size: int  # the size actually used: capped at the smaller set


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef: float = 1.0):
    """``(x·y / D + coef) ** degree`` for every pair of rows, the KID kernel."""
    return (x @ y.T / x.shape[1] + coef) ** degree


def polynomial_mmd(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased estimate of MMD² between the distributions of rows of ``x`` and ``y``."""
    m, n = len(x), len(y)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    # Unbiased: the diagonals k(x_i, x_i) pair a sample with itself and are left out.
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def kid(
    features_a: np.ndarray,
    features_b: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> KID:
    """KID: :func:`polynomial_mmd` over ``subsets`` random subsets drawn without replacement.

    ``subset_size`` is capped at the smaller set (the result states the size used).
    """
    features_a = _check_features(features_a, "features_a")
    features_b = _check_features(features_b, "features_b")
    if features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"feature sizes differ: {features_a.shape[1]} vs {features_b.shape[1]}")
    if subsets < 1:
        raise ValueError(f"subsets must be positive, got {subsets}")
    size = min(subset_size, len(features_a), len(features_b))
    if size < 2:
        raise ValueError(f"subset_size must be at least 2, got {subset_size}")
    if size == len(features_a) == len(features_b):
        # Every subset is a permutation of both whole sets, and MMD ignores order.
        return KID(polynomial_mmd(features_a, features_b), 0.0, subsets, size)
    rng = np.random.default_rng(seed)
    mmds = np.array(
        [
            polynomial_mmd(
                features_a[rng.choice(len(features_a), size, replace=False)],
                features_b[rng.choice(len(features_b), size, replace=False)],
            )
            for _ in range(subsets)
        ]
    )
    return KID(float(mmds.mean()), float(mmds.std()), subsets, size)


# --- precision and recall -------------------------------------------------------------------


class PrecisionRecall(NamedTuple):
    precision: float  # fraction of generated samples inside the real manifold: fidelity
    recall: float  # fraction of real samples inside the generated manifold: coverage


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between rows of ``a`` and rows of ``b``."""
    squared = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.clip(squared, 0.0, None)  # the expansion can dip below zero by rounding


def knn_radii(features: np.ndarray, k: int = 3, batch_size: int = 1000) -> np.ndarray:
    """Squared distance from each row to its k-th nearest other row."""
    if not 1 <= k < len(features):
        raise ValueError(f"k must be in 1..{len(features) - 1} for {len(features)} samples")
    radii = np.empty(len(features))
    for start in range(0, len(features), batch_size):
        distances = _squared_distances(features[start : start + batch_size], features)
        # Position 0 of each sorted row is the sample itself (distance 0), so k is the k-th NN.
        radii[start : start + batch_size] = np.partition(distances, k, axis=1)[:, k]
    return radii


def manifold_coverage(
    manifold: np.ndarray, radii: np.ndarray, queries: np.ndarray, batch_size: int = 1000
) -> float:
    """Fraction of ``queries`` within the squared radius of at least one ``manifold`` row."""
    inside = np.empty(len(queries), dtype=bool)
    for start in range(0, len(queries), batch_size):
        distances = _squared_distances(queries[start : start + batch_size], manifold)
        inside[start : start + batch_size] = np.any(distances <= radii[None, :], axis=1)
    return float(inside.mean())


def precision_recall(
    real: np.ndarray, fake: np.ndarray, k: int = 3, batch_size: int = 1000
) -> PrecisionRecall:
    """Improved precision and recall with k-NN manifolds (Kynkäänniemi et al. 2019).

    Distances are computed ``batch_size`` rows at a time, so memory stays at
    ``batch_size x N`` floats.
    """
    real = _check_features(real, "real", min_rows=k + 1)
    fake = _check_features(fake, "fake", min_rows=k + 1)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} vs {fake.shape[1]}")
    precision = manifold_coverage(real, knn_radii(real, k, batch_size), fake, batch_size)
    recall = manifold_coverage(fake, knn_radii(fake, k, batch_size), real, batch_size)
    return PrecisionRecall(precision, recall)


# --- uncertainty and context ----------------------------------------------------------------


class BootstrapCI(NamedTuple):
    value: float  # the metric on the full sets
    low: float  # value - z * the bootstrap standard error, z the normal 1 - alpha/2 quantile
    high: float  # value + z * the bootstrap standard error
    n_boot: int
    alpha: float


def bootstrap_ci(
    metric_fn: MetricFn,
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
) -> BootstrapCI:
    """Normal bootstrap interval (Efron and Tibshirani 1993, 13.3): ``value ± z * se``, with
    ``se`` the standard deviation (ddof 1) of the metric over ``n_boot`` replicates that
    resample both sets with replacement, independently.

    The replicates only measure the spread: resampled sets repeat samples, which raises FID
    and KID (and shrinks k-NN radii), so their percentiles can lie wholly above ``value``
    (real vs real eyes: FID 0.239, percentile interval [0.434, 0.682]). Centred on ``value``,
    the interval always contains it; it is symmetric, so for FID near 0 ``low`` can be < 0.
    """
    if n_boot < 2 or not 0.0 < alpha < 1.0:
        raise ValueError(f"need n_boot >= 2 and 0 < alpha < 1, got {n_boot}, {alpha}")
    rng = np.random.default_rng(seed)
    replicates = np.array(
        [
            metric_fn(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))])
            for _ in range(n_boot)
        ]
    )
    value = float(metric_fn(a, b))
    half_width = NormalDist().inv_cdf(1 - alpha / 2) * float(replicates.std(ddof=1))
    return BootstrapCI(value, value - half_width, value + half_width, n_boot, alpha)


def split_halves(
    features: np.ndarray, seed: int = 0, size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random subsets of ``size`` rows each (default: half the rows)."""
    size = len(features) // 2 if size is None else size
    if size < 1 or 2 * size > len(features):
        raise ValueError(f"cannot draw two disjoint sets of {size} from {len(features)} rows")
    order = np.random.default_rng(seed).permutation(len(features))
    return features[order[:size]], features[order[size : 2 * size]]


def real_vs_real_floor(
    metric_fn: MetricFn, real: np.ndarray, seed: int = 0, size: int | None = None
) -> float:
    """The metric between two disjoint halves of the real set: the best a model can score at
    that sample count (FID and KID are biased by N, so compare rows at equal ``size``)."""
    return float(metric_fn(*split_halves(real, seed, size)))


# --- image checks ---------------------------------------------------------------------------


def blank_share(images: np.ndarray, ink_level: int = 128) -> float:
    """Share of ``uint8`` images ``(N, H, W)`` (white ink on black) without a single pixel
    at ``ink_level`` or brighter: drawings of nothing."""
    images = np.asarray(images)
    if not len(images):
        raise ValueError("no images")
    return float((images.reshape(len(images), -1).max(axis=1) < ink_level).mean())


def duplicate_share(images: np.ndarray) -> float:
    """Share of images equal, pixel for pixel, to an earlier image of the same set: hard
    mode collapse (0 for N distinct images, (N - 1) / N for N copies of one)."""
    images = np.ascontiguousarray(images)
    if not len(images):
        raise ValueError("no images")
    distinct = np.unique(images.reshape(len(images), -1), axis=0)
    return 1.0 - len(distinct) / len(images)


# --- registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One named metric: what it means, how tables print it and, for the distances between
    two feature sets, how it is computed."""

    name: str  # key of METRICS, and the metric's column in a comparison's results table
    title: str  # as tables and legends call it
    higher_is_better: bool
    meaning: str  # one line for a report's legend
    # (real features, generated features) -> value; None for the shares read from images and
    # labels (recognizability, blank, duplicates: sketchgen.evaluation.scoring)
    compute: MetricFn | None = None
    # None: 3 significant digits (FID and KID scale with the feature space, so no fixed
    # number of decimals suits every classifier); else this many decimals (values in [0, 1])
    decimals: int | None = None


def _kid_mean(real: np.ndarray, fake: np.ndarray) -> float:
    return kid(real, fake).mean


def _precision(real: np.ndarray, fake: np.ndarray) -> float:
    return precision_recall(real, fake).precision


def _recall(real: np.ndarray, fake: np.ndarray) -> float:
    return precision_recall(real, fake).recall


# In the order of a results table's columns.
METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("fid", "FID", False, "Fréchet distance between Gaussian fits of the generated "
               "and the held-out real drawings' features; in the classifier's feature space, "
               "so not comparable with Inception FIDs", fid),
        Metric("kid", "KID", False, "unbiased squared MMD with a cubic kernel on the same "
               "features; can dip below 0 when the sets are alike", _kid_mean),
        Metric("precision", "Precision", True, "share of generated drawings inside the real "
               "3-NN feature manifold (fidelity)", _precision, 3),
        Metric("recall", "Recall", True, "share of real drawings inside the generated 3-NN "
               "manifold (coverage, diversity)", _recall, 3),
        Metric("recognizability", "Recognizability", True, "share of generated drawings the "
               "classifier assigns to the intended category; on the real-vs-real rows, its "
               "accuracy on held-out real drawings", decimals=3),
        Metric("blank", "Blank", False, "share of generated drawings without one ink pixel "
               "(none at grey level 128 or brighter): a generator that draws nothing",
               decimals=3),
        Metric("duplicates", "Duplicates", False, "share of generated drawings identical, "
               "pixel for pixel, to an earlier one of the same N: hard mode collapse",
               decimals=3),
    )
}
# The metrics between two feature sets, for callers holding features only (the API).
FEATURE_METRICS: dict[str, Metric] = {
    name: metric for name, metric in METRICS.items() if metric.compute is not None
}
