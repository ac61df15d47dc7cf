"""Metric and feature-extraction speed, each as a ratio to a baseline measured in the same run.

* FID on 10k x 512 features: ours (symmetric eigendecompositions) vs the textbook
  ``scipy.linalg.sqrtm`` formula, both from the raw features, plus the distance alone;
* classifier features (``qd-cnn-k32/dense``) on real 28 px bitmaps (the 4,140 drawings of
  ``common.CATEGORIES``, rendered): batches of 512 vs one image per call.

Ratios and rates go to ``benchmark.extra_info`` (read by ``sketchgen.report.tables``). Run:
``pytest benchmarks/bench_metrics.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from common import best_times, real_bitmaps, record

from sketchgen.data.datasets import LabelledBitmaps
from sketchgen.evaluation.classifier import Classifier, ClassifierConfig, build_model
from sketchgen.evaluation.metrics import extract_features, feature_statistics, fid, frechet_distance

FEATURES, DIM = 10_000, 512
TARGET_FID_SPEEDUP = 1.0  # issue 5: faster than scipy.linalg.sqrtm on 10k x 512


def textbook_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, sigma1 = a.mean(axis=0), np.cov(a, rowvar=False)
    mu2, sigma2 = b.mean(axis=0), np.cov(b, rowvar=False)
    return textbook_distance(mu1, sigma1, mu2, sigma2)


def textbook_distance(mu1, sigma1, mu2, sigma2) -> float:
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2.0 * covmean))


@pytest.fixture(scope="module")
def feature_sets() -> tuple[np.ndarray, np.ndarray]:
    """Two 10k x 512 Gaussian sets with different full covariances and means."""
    rng = np.random.default_rng(0)
    return tuple(
        rng.normal(size=(FEATURES, DIM)) @ (rng.normal(size=(DIM, DIM)) / np.sqrt(DIM)) + shift
        for shift in (0.0, 0.1)
    )


@pytest.mark.report
@pytest.mark.benchmark(group="metrics")
def test_fid_vs_scipy_sqrtm(benchmark, feature_sets):
    a, b = feature_sets
    statistics = (*feature_statistics(a), *feature_statistics(b))
    ours, scipy_fid, ours_distance, scipy_distance = best_times(
        lambda: fid(a, b),
        lambda: textbook_fid(a, b),
        lambda: frechet_distance(*statistics),
        lambda: textbook_distance(*statistics),
        rounds=3,
    )
    value = benchmark.pedantic(fid, args=(a, b), rounds=1, iterations=1)
    scipy_value = textbook_distance(*statistics)  # the same statistics as textbook_fid's
    record(
        benchmark,
        features=f"{FEATURES}x{DIM}",
        fid=value,
        relative_difference_to_scipy=f"{abs(value - scipy_value) / value:.1e}",
        fid_seconds=ours,
        scipy_sqrtm_fid_seconds=scipy_fid,
        speedup_vs_scipy_sqrtm=scipy_fid / ours,
        distance_only_speedup=scipy_distance / ours_distance,
        target=TARGET_FID_SPEEDUP,
        meets_target=scipy_fid / ours >= TARGET_FID_SPEEDUP,
    )


@pytest.fixture(scope="module")
def real() -> LabelledBitmaps:
    """Real 28 px bitmaps: the benchmarks' drawings, rendered as Google's bitmaps are."""
    return real_bitmaps()


@pytest.mark.report
@pytest.mark.benchmark(group="features")
def test_feature_extraction_throughput(benchmark, real):
    config = ClassifierConfig(width=32)
    # Speed does not depend on the weights: a freshly initialised network stands in.
    classifier = Classifier(
        build_model(config, num_classes=len(real.class_names)).eval(), config, real.class_names
    )
    bitmaps = real.bitmaps
    single = bitmaps[:200]
    batched, one_by_one = best_times(
        lambda: extract_features(classifier.features, bitmaps, batch_size=512),
        lambda: extract_features(classifier.features, single, batch_size=1),
        rounds=3,
    )
    benchmark.pedantic(
        extract_features, args=(classifier.features, bitmaps, 512), rounds=1, iterations=1
    )
    images_per_s, single_per_s = len(bitmaps) / batched, len(single) / one_by_one
    record(
        benchmark,
        feature_space=classifier.feature_name,
        images=len(bitmaps),
        images_per_s=images_per_s,
        one_per_call_images_per_s=single_per_s,
        speedup_vs_one_per_call=images_per_s / single_per_s,
        device=str(classifier.device),
        torch_threads=torch.get_num_threads(),
    )
