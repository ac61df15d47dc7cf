"""Metric values against hand-worked cases, the textbook formula and torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import poly_mmd

from sketchgen.evaluation.metrics import (
    FEATURE_METRICS,
    blank_share,
    bootstrap_ci,
    duplicate_share,
    extract_features,
    feature_statistics,
    fid,
    frechet_distance,
    kid,
    polynomial_mmd,
    precision_recall,
    real_vs_real_floor,
    split_halves,
)


def correlated_features(
    seed: int, n: int = 600, dim: int = 24, shift: float = 0.0, covariance_seed: int = 0
):
    """``n`` samples of a Gaussian with a full, non-diagonal covariance (one per
    ``covariance_seed``) and mean ``shift`` in every feature."""
    mixing = np.random.default_rng(covariance_seed).normal(size=(dim, dim)) / np.sqrt(dim)
    return np.random.default_rng(seed).normal(size=(n, dim)) @ mixing + shift


def textbook_fid(a: np.ndarray, b: np.ndarray) -> float:
    """pytorch-fid's formula with scipy's general matrix square root."""
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    sigma1, sigma2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2.0 * covmean))


# --- FID ------------------------------------------------------------------------------------


def test_fid_equals_the_textbook_formula():
    a, b = correlated_features(0), correlated_features(1, shift=0.3, covariance_seed=1)
    expected = textbook_fid(a, b)
    assert expected > 1.0  # a real difference, not a comparison of two near-zero numbers
    assert fid(a, b) == pytest.approx(expected, rel=1e-6)


class PassThrough(torch.nn.Module):
    """A 'feature extractor' whose input already is the features."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_fid_equals_torchmetrics_given_the_same_features():
    a, b = correlated_features(2), correlated_features(3, shift=0.2, covariance_seed=1)
    reference = FrechetInceptionDistance(feature=PassThrough(a.shape[1]))
    reference.update(torch.from_numpy(a), real=True)
    reference.update(torch.from_numpy(b), real=False)
    assert fid(a, b) == pytest.approx(reference.compute().item(), rel=1e-6)


def test_identical_sets_have_zero_fid():
    a = correlated_features(4)
    scale = np.trace(feature_statistics(a)[1])
    assert fid(a, a) <= 1e-10 * scale


def test_shifted_gaussians_equal_covariance_give_squared_mean_difference():
    rng = np.random.default_rng(5)
    root = rng.normal(size=(6, 6))
    sigma = root @ root.T  # full, non-diagonal covariance
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = float(((mu1 - mu2) ** 2).sum())
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(expected, rel=1e-9)
    # The same on samples: a shifted copy has exactly the same covariance.
    a = correlated_features(6)
    shift = np.linspace(-1.0, 1.0, a.shape[1])
    assert fid(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-9)


@pytest.mark.parametrize(
    ("var1", "var2", "mean_gap", "expected"),
    [
        # |(1, 2)|^2 + (sqrt 1 - sqrt 4)^2 + (sqrt 4 - sqrt 9)^2 = 5 + 1 + 1
        ((1.0, 4.0), (4.0, 9.0), (1.0, 2.0), 7.0),
        # a singular covariance (a dead feature): (0 - 3)^2 + (2 - 1)^2
        ((0.0, 4.0), (9.0, 1.0), (0.0, 0.0), 10.0),
    ],
)
def test_diagonal_covariances_worked_by_hand(var1, var2, mean_gap, expected):
    mu1 = np.array([0.5, -1.0])
    distance = frechet_distance(mu1, np.diag(var1), mu1 + np.array(mean_gap), np.diag(var2))
    assert distance == pytest.approx(expected, rel=1e-12)


def test_fid_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


# --- KID ------------------------------------------------------------------------------------


def test_kid_of_a_tiny_case_worked_by_hand():
    # D = 1, kernel (x y + 1)^3. Within x: k(0, 1) = 1; within y: k(0, 2) = 1;
    # across: k(0,0) = k(0,2) = k(1,0) = 1, k(1,2) = 27, mean 7.5. MMD^2 = 1 + 1 - 2 * 7.5.
    x, y = np.array([[0.0], [1.0]]), np.array([[0.0], [2.0]])
    assert polynomial_mmd(x, y) == pytest.approx(-13.0)
    assert kid(x, y, subsets=5, subset_size=2) == (pytest.approx(-13.0), 0.0, 5, 2)


def test_polynomial_mmd_equals_torchmetrics():
    a, b = correlated_features(7, n=200), correlated_features(8, n=200, shift=0.1)
    reference = poly_mmd(torch.from_numpy(a), torch.from_numpy(b)).item()
    assert polynomial_mmd(a, b) == pytest.approx(reference, rel=1e-9)


def test_kid_is_about_zero_for_the_same_distribution():
    same = kid(correlated_features(9, n=1500), correlated_features(10, n=1500), 50, 500)
    shifted = kid(
        correlated_features(9, n=1500), correlated_features(10, n=1500, shift=0.5), 50, 500
    )
    assert shifted.mean > 0.1
    # Unbiased: centred on zero, within its subset-to-subset noise.
    assert abs(same.mean) < same.std
    assert abs(same.mean) < 0.02 * shifted.mean


def test_kid_is_seeded_and_caps_the_subset_size():
    a, b = correlated_features(11, n=300), correlated_features(12, n=200)
    first, again = kid(a, b, 10, 100, seed=3), kid(a, b, 10, 100, seed=3)
    assert first == again
    assert first != kid(a, b, 10, 100, seed=4)
    assert kid(a, b, 10, 1000).subset_size == 200


# --- precision and recall -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fake", "expected"),
    [
        # Real points 0..9 with k = 3: radius 3 at both ends, 2 inside, so the real
        # manifold is [-3, 12]. Fake balls: 0 -> [-1.5, 1.5], 0.5 -> [-0.5, 1.5],
        # 1 -> [0, 2], 1.5 -> [0, 3] (3 on the boundary counts): real 0, 1, 2, 3 covered.
        ([0.0, 0.5, 1.0, 1.5], (1.0, 0.4)),
        # Inside [-3, 12]: -2.5, 4.5, 11.5. The ball of -10 (radius 21.5) covers all reals.
        ([-10.0, -2.5, 4.5, 11.5, 12.5, 100.0], (0.5, 1.0)),
    ],
)
def test_precision_recall_of_constructed_cases(fake, expected):
    real = np.arange(10.0)[:, None]
    result = precision_recall(real, np.array(fake)[:, None], k=3)
    assert result == pytest.approx(expected)


def test_precision_recall_rejects_too_few_samples_for_k():
    with pytest.raises(ValueError, match="at least 4"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)


# --- batch-size independence ----------------------------------------------------------------


@pytest.fixture(scope="module")
def real_bitmaps(mirror) -> tuple[np.ndarray, np.ndarray]:
    """300 real 28 px bitmaps each of two categories (Google's numpy_bitmap rows)."""
    folder = mirror / "full" / "numpy_bitmap"
    return tuple(
        np.load(folder / f"{name}.npy")[:300].reshape(-1, 28, 28) for name in ("apple", "cat")
    )


def tiny_extractor(images: np.ndarray) -> np.ndarray:
    """A fixed random projection of the pixels through tanh: 16 features."""
    projection = np.random.default_rng(0).normal(size=(images[0].size, 16)) / 255.0
    return np.tanh(images.reshape(len(images), -1) @ projection)


def test_features_and_metrics_do_not_depend_on_batch_size(real_bitmaps):
    apples, cats = real_bitmaps
    by_batch = {
        size: (
            extract_features(tiny_extractor, apples, size),
            extract_features(tiny_extractor, cats, size),
        )
        for size in (1, 7, 1000)
    }
    reference_a, reference_b = by_batch[1000]
    reference_fid = fid(reference_a, reference_b)
    reference_pr = precision_recall(reference_a, reference_b, batch_size=1000)
    assert reference_fid > 0.1 and 0.0 < reference_pr.precision < 1.0
    for a, b in by_batch.values():
        np.testing.assert_allclose(a, reference_a, rtol=1e-12, atol=1e-12)
        assert fid(a, b) == pytest.approx(reference_fid, rel=1e-9)
        assert kid(a, b, 5, 100) == pytest.approx(kid(reference_a, reference_b, 5, 100), rel=1e-9)
    for rows in (1, 13, 299):
        assert precision_recall(reference_a, reference_b, batch_size=rows) == reference_pr


def test_extract_features_checks_the_extractor_output():
    with pytest.raises(ValueError, match="expected \\(N, D\\)"):
        extract_features(lambda images: images[:, 0, 0], np.zeros((4, 2, 2), np.uint8))


# --- context: bootstrap, floor, registry ----------------------------------------------------


def test_bootstrap_interval_of_a_mean_difference_has_the_textbook_width():
    rng = np.random.default_rng(13)
    a, b = rng.normal(0.0, 1.0, size=(400, 1)), rng.normal(0.5, 1.0, size=(400, 1))

    def mean_gap(x, y):
        return float(y.mean() - x.mean())

    interval = bootstrap_ci(mean_gap, a, b, n_boot=400, seed=0, alpha=0.05)
    assert interval.value == mean_gap(a, b)
    assert interval.low < interval.value < interval.high
    normal_width = 2 * 1.96 * np.sqrt(a.var() / len(a) + b.var() / len(b))
    assert interval.high - interval.low == pytest.approx(normal_width, rel=0.2)
    assert bootstrap_ci(mean_gap, a, b, n_boot=400, seed=0) == interval


@pytest.mark.parametrize("name", ["fid", "kid"])
def test_interval_contains_the_estimate_on_two_disjoint_real_sets(mirror, name):
    # Resampling with replacement repeats drawings, which raises FID and KID: the percentile
    # interval of real vs real eyes lay wholly above its estimate (FID 0.239 in [0.434, 0.682]).
    eyes = np.load(mirror / "full" / "numpy_bitmap" / "eye.npy")[:600].reshape(-1, 28, 28)
    features = extract_features(tiny_extractor, eyes)
    first, second = features[:300], features[300:]
    interval = bootstrap_ci(FEATURE_METRICS[name].compute, first, second, n_boot=50, seed=0)
    assert interval.value == FEATURE_METRICS[name].compute(first, second)
    assert interval.low <= interval.value <= interval.high
    assert interval.high - interval.low > 0.0


def test_real_vs_real_floor_uses_two_disjoint_halves_of_the_same_size():
    real = np.arange(101.0)[:, None] * np.ones((1, 3))  # every row distinct
    first, second = split_halves(real, seed=0)
    assert len(first) == len(second) == 50
    assert not set(first[:, 0]) & set(second[:, 0])
    small = split_halves(real, seed=0, size=20)
    assert len(small[0]) == len(small[1]) == 20
    with pytest.raises(ValueError, match="disjoint"):
        split_halves(real, size=51)

    features = correlated_features(14, n=2000)
    floor = real_vs_real_floor(fid, features, seed=1)
    assert floor == fid(*split_halves(features, seed=1))
    # The floor is the sampling noise of 1000 vs 1000: well below a real shift of 0.3 per feature.
    assert floor < 0.5 * fid(features[:1000], correlated_features(15, n=1000, shift=0.3))


def test_registry_names_the_metrics_the_report_prints():
    a, b = correlated_features(16, n=300), correlated_features(17, n=300, shift=0.2)
    assert set(FEATURE_METRICS) == {"fid", "kid", "precision", "recall"}
    assert FEATURE_METRICS["fid"].compute(a, b) == fid(a, b)
    assert FEATURE_METRICS["kid"].compute(a, b) == kid(a, b).mean
    assert FEATURE_METRICS["precision"].compute(a, b) == precision_recall(a, b).precision
    assert FEATURE_METRICS["recall"].compute(a, b) == precision_recall(a, b).recall
    assert [m.higher_is_better for m in FEATURE_METRICS.values()] == [False, False, True, True]


def test_blank_and_duplicate_shares_of_a_constructed_set():
    images = np.zeros((5, 4, 4), np.uint8)  # 0, 1: blank and equal
    images[2, 1, 1] = 127  # blank still: nothing at 128 or brighter; distinct from 0 and 1
    images[3, 0, 0] = images[4, 0, 0] = 128  # ink, and the same drawing twice
    assert blank_share(images) == pytest.approx(3 / 5)
    assert duplicate_share(images) == pytest.approx(2 / 5)  # images 1 and 4 repeat earlier ones
    assert duplicate_share(np.repeat(images[3:4], 8, axis=0)) == pytest.approx(7 / 8)
    assert blank_share(images[3:]) == duplicate_share(images[2:4]) == 0.0
    with pytest.raises(ValueError, match="no images"):
        blank_share(images[:0])
