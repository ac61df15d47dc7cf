"""Checks of the torch renderer, the classifier, FID and the benchmarks on the device."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rasterize.geometry import GOOGLE_SIZE
from rasterize.render import render, render_reference
from sketchgen.data import datasets as data
from sketchgen.evaluation.metrics import extract_features, fid
from sketchgen.gpu_check.context import (
    CATEGORIES,
    SUBPROCESS_TIMEOUT,
    CheckFailed,
    Context,
    Skipped,
    last_line,
    require,
)

if TYPE_CHECKING:
    import torch

# --- the torch renderer ----------------------------------------------------------------------

# README "Torch renderer" (tests/test_torch_render.py): mean |torch - Google| per image,
# guarded at 0.56 / 1.15 grey levels; cairo reproduces Google's bitmaps byte for byte.
RENDER_MEAN_BOUND = 0.56
RENDER_WORST_BOUND = 1.15
RENDER_DEVICE_BOUND = 1  # grey levels between devices: float order (tests/test_torch_render.py)
GRADIENT_TOLERANCE = 1e-2  # relative L2 distance of the renderer's gradients across devices
# relative difference of apple-vs-eye FIDs, features from the device vs the CPU (a large FID:
# the real-vs-real FID of two halves is near 0 and its relative error many times the features')
FID_TOLERANCE = 1e-2


def _drawings(ctx: Context) -> list:
    return ctx.product("drawings", lambda: data.load_drawings(
        CATEGORIES, per_class=ctx.scale.per_class, mirror=ctx.mirror).drawings)


def _per_image_difference(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.abs(images.astype(int) - reference.astype(int)).mean(axis=(1, 2))


def render_check(ctx: Context) -> str:
    """The torch renderer on the device against cairo, within the README's bounds."""
    from rasterize.torch_render import TorchRenderConfig, render_drawings

    drawings = _drawings(ctx)
    images = render_drawings(drawings, TorchRenderConfig(), device=ctx.device)
    per_image = _per_image_difference(images, render(drawings, size=GOOGLE_SIZE))
    mean, worst = float(per_image.mean()), float(per_image.max())
    figures = (f"{len(drawings)} drawings at {GOOGLE_SIZE} px: mean |torch - cairo| "
               f"{mean:.3f} grey levels (bound {RENDER_MEAN_BOUND}), worst image {worst:.3f} "
               f"(bound {RENDER_WORST_BOUND})")
    require(mean <= RENDER_MEAN_BOUND and worst <= RENDER_WORST_BOUND, figures)
    return figures


def _pixels_and_gradient(drawings: list, device: str | torch.device):
    from rasterize.torch_render import PolylineBatch, coverage
    from rasterize.torch_render import render as torch_render

    batch = PolylineBatch.from_drawings(drawings, device)
    points = batch.points.clone().requires_grad_()
    coverage(PolylineBatch(points, batch.pen_up, batch.mask)).square().sum().backward()
    return torch_render(batch).cpu().numpy(), points.grad.cpu().numpy()


def render_across_devices_check(ctx: Context) -> str:
    """Pixels and gradients (``coverage`` is differentiable) on the device vs the CPU."""
    drawings = _drawings(ctx)
    (pixels, gradient), (cpu_pixels, cpu_gradient) = (
        _pixels_and_gradient(drawings, device) for device in (ctx.device, "cpu"))
    largest = int(np.abs(pixels.astype(int) - cpu_pixels.astype(int)).max())
    relative = float(np.linalg.norm(gradient - cpu_gradient) / np.linalg.norm(cpu_gradient))
    figures = (f"{len(drawings)} drawings: largest pixel difference {largest} (bound "
               f"{RENDER_DEVICE_BOUND}), gradient relative difference {relative:.1e} "
               f"(bound {GRADIENT_TOLERANCE:.0e})")
    require(largest <= RENDER_DEVICE_BOUND and relative <= GRADIENT_TOLERANCE, figures)
    return figures


# --- classifier and FID ----------------------------------------------------------------------


@dataclass(frozen=True)
class TrainedClassifier:
    classifier: Any  # sketchgen.evaluation.classifier.Classifier, on the device
    accuracy: float  # on the held-out tenth
    images: np.ndarray  # every image it saw (train, valid and test)
    labels: np.ndarray  # their classes, indices into CATEGORIES
    path: Path  # saved with save_classifier


def _train_classifier(ctx: Context) -> TrainedClassifier:
    from sketchgen.evaluation.classifier import ClassifierConfig
    from sketchgen.evaluation.evaluator import fit_and_evaluate, save_classifier, training_images

    epochs = ctx.scale.classifier_epochs
    config = ClassifierConfig(width=ctx.scale.classifier_width, max_epochs=epochs,
                              patience=epochs, batch_size=ctx.scale.classifier_batch_size)
    images, labels, names = training_images(CATEGORIES, config, per_class=ctx.scale.per_class,
                                            mirror=ctx.mirror)
    classifier, evaluation = fit_and_evaluate(images, labels, names, config, device=ctx.device)
    path = save_classifier(classifier, ctx.work / "classifier.pt")
    return TrainedClassifier(classifier, evaluation.accuracy, images, labels, path)


def _classes_fid(features: np.ndarray, labels: np.ndarray) -> float:
    return fid(features[labels == 0], features[labels == 1])


def classifier_check(ctx: Context) -> str:
    """Train on the device (it must learn); its features, and the same after save and load."""
    from sketchgen.evaluation.evaluator import load_classifier

    trained = ctx.product("classifier", lambda: _train_classifier(ctx))
    classifier = trained.classifier
    require(classifier.device.type == ctx.device.type,
             f"the classifier trained on {classifier.device}, not {ctx.device}")
    require(trained.accuracy >= ctx.scale.min_accuracy,
             f"test accuracy {trained.accuracy:.2f} after {len(classifier.history)} epochs "
             f"(expected >= {ctx.scale.min_accuracy})")
    features = extract_features(classifier.features, trained.images)
    require(features.shape == (len(trained.images), classifier.num_features)
             and bool(np.isfinite(features).all()),
             f"features of shape {features.shape} or not finite")
    reloaded = load_classifier(trained.path, ctx.device)
    require(np.array_equal(extract_features(reloaded.features, trained.images), features),
             "the saved and reloaded classifier gives other features")
    epochs = len(classifier.history)
    return (f"{epochs} epoch{'s' * (epochs != 1)} on {len(trained.images)} drawings, test "
            f"accuracy {trained.accuracy:.2f}; {classifier.feature_name} features "
            f"{features.shape[0]}x{features.shape[1]}; FID {' vs '.join(CATEGORIES)} "
            f"{_classes_fid(features, trained.labels):.3g}")


def fid_across_devices_check(ctx: Context) -> str:
    """The same classifier's features on the device and on the CPU, and the FIDs from them."""
    from sketchgen.evaluation.evaluator import load_classifier

    trained = ctx.product("classifier", lambda: _train_classifier(ctx))
    on_cpu = load_classifier(trained.path, "cpu")
    here, there = (extract_features(model.features, trained.images)
                   for model in (trained.classifier, on_cpu))
    feature_difference = float(np.abs(here - there).max() / max(np.abs(there).max(), 1e-12))
    fid_here, fid_there = (_classes_fid(features, trained.labels) for features in (here, there))
    relative = abs(fid_here - fid_there) / max(fid_there, 1e-12)
    figures = (f"FID {fid_here:.6g} from {ctx.device} features vs {fid_there:.6g} from CPU "
               f"features (relative difference {relative:.1e}, bound {FID_TOLERANCE:.0e}); "
               f"features differ by {feature_difference:.1e} of their largest value")
    require(relative <= FID_TOLERANCE, figures)
    return figures


# --- benchmarks ------------------------------------------------------------------------------


def bench_train_check(ctx: Context) -> str:
    """``benchmarks/bench_train.py`` (it trains on CUDA when there is one) for a few cases."""
    script = ctx.benchmarks / "bench_train.py"
    if not script.is_file():
        raise Skipped(f"{script} not found: give --benchmarks (a source checkout's folder)")
    if importlib.util.find_spec("pytest_benchmark") is None:
        raise Skipped("pytest-benchmark is not installed (pip install -e '.[test]')")
    report = ctx.work / "bench_train.json"
    # pytest-benchmark disables itself when it sees PYTEST_XDIST_WORKER (set when this check
    # runs inside an xdist worker, as in the test suite)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_XDIST")}
    if ctx.mirror:
        env["QUICKDRAW_MIRROR"] = ctx.mirror
    if ctx.device.type != "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ""  # the benchmark picks CUDA whenever it sees one
    cases = [f"{script}::test_train_throughput_vs_naive_loop[{case}]"
             for case in ctx.scale.bench_cases]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *cases,
               f"--benchmark-json={report}"]
    done = subprocess.run(command, cwd=ctx.benchmarks.parent, env=env, capture_output=True,
                          text=True, timeout=SUBPROCESS_TIMEOUT)
    require(done.returncode == 0,
             f"pytest exited with {done.returncode}: {last_line(done.stdout + done.stderr)}")
    written = report.read_text() if report.exists() else ""
    require(bool(written), f"pytest-benchmark wrote no results: {last_line(done.stderr)}")
    results = [entry["extra_info"] for entry in json.loads(written)["benchmarks"]]
    require(len(results) == len(cases), f"{len(results)} results for {len(cases)} cases")
    wrong = [info["device"] for info in results
             if not info["device"].startswith(ctx.device.type)]
    if wrong:
        raise CheckFailed(f"the benchmark trained on {wrong[0]}, not {ctx.device.type}")
    return "; ".join(f"{info['model']} {info['size']} px {info['images_per_s']:,.0f} images/s, "
                     f"{info['speedup_vs_naive']:.2f}x the DataLoader loop" for info in results)


def _best_seconds(function: Callable[[], Any], rounds: int, device: torch.device) -> float:
    import torch

    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - began)
    return best


def _render_rates(drawings: list, size: int, rounds: int, device: torch.device) -> str:
    from rasterize.torch_render import PolylineBatch, TorchRenderConfig, render_drawings
    from rasterize.torch_render import render as torch_render

    config = TorchRenderConfig(size=size)
    tensors = PolylineBatch.from_drawings(drawings, device)
    torch_render(tensors, config)  # warm-up: kernels, allocator
    loop, ours, ready = (_best_seconds(function, rounds, device) for function in (
        lambda: render_reference(drawings, size),
        lambda: render_drawings(drawings, config, device),
        lambda: torch_render(tensors, config),
    ))
    count = len(drawings)
    return (f"{size} px {count / ours:,.0f} drawings/s ({count / ready:,.0f} batch ready), "
            f"{loop / ours:.2f}x the cairo loop")


def bench_render_check(ctx: Context) -> str:
    """The code ``benchmarks/bench_torch_render.py`` times, run on the device (the benchmark
    itself renders on the CPU): drawings/s from records and from a ready batch, against the
    per-point cairo loop."""
    drawings = _drawings(ctx)
    return "; ".join(_render_rates(drawings, size, ctx.scale.timing_rounds, ctx.device)
                     for size in (28, 64))


