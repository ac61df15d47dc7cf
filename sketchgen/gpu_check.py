"""``python -m sketchgen.gpu_check``: a GPU machine checks every CUDA path the README claims.

Nothing in this project ran on a GPU while it was written. Each check here does a few steps
of real work on the device -- GAN training with ``--amp`` and ``--compile``, Sketch-RNN
training (it applies neither), resume, sampling, the torch renderer against cairo, the
classifier, FID, torchrun with NCCL, the training and render benchmarks -- and returns a
one-line figure or raises. The runner times every check and prints one aligned line per
check, then a summary line::

    PASS  train sngan --amp          4.1 s  50 steps + 10 resumed, loss_d 1.23, ...
    FAIL  train sngan --compile     61.0 s  BackendCompilerFailed: ...
    SKIP  torchrun dcgan (nccl)          -  (needs CUDA)

The exit status is 1 if any check failed, else 0. Without CUDA (and the default ``--device
cuda``) it prints one line and exits 0. ``--device cpu`` runs the same checks on the CPU
and reports the CUDA-only ones as SKIP; ``tests/test_gpu_check.py`` runs that at ``--scale
tiny`` so the checks cannot rot on machines without a GPU.

Data: Google category names only (:data:`CATEGORIES`), read through ``sketchgen.data.datasets`` from
``--mirror`` / ``$QUICKDRAW_MIRROR`` or, without either, Google's bucket.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

# apple's first 100 and eye's first 250 simplified lines are Google's, in Google's order, in
# the shared mirror and the bucket alike, and are among the 450 drawings whose Google bitmaps
# the README's torch-renderer bounds were measured on.
CATEGORIES = ("apple", "eye")
STROKE_CATEGORIES = ("eye",)  # Sketch-RNN learns one category (vae mode)
# README "Torch renderer" (tests/test_torch_render.py): mean |torch - Google| per image,
# guarded at 0.56 / 1.15 grey levels; cairo reproduces Google's bitmaps byte for byte.
RENDER_MEAN_BOUND = 0.56
RENDER_WORST_BOUND = 1.15
RENDER_DEVICE_BOUND = 1  # grey levels between devices: float order (tests/test_torch_render.py)
GRADIENT_TOLERANCE = 1e-2  # relative L2 distance of the renderer's gradients across devices
# Task.sample promises the same samples from the same seed on every device: the randomness is
# drawn on the CPU. GPU kernels (TF32 convolutions by default on Ampere and later) round
# differently, so a GAN's pixels may move by a level or two: allowed on average, per pixel.
SAMPLE_MEAN_TOLERANCE = 1.0
# Sketch-RNN samples point by point: a rounding difference that flips one mixture or pen
# choice changes the rest of that drawing, so only a share of drawings is held identical.
IDENTICAL_DRAWINGS_SHARE = 0.5
# relative difference of apple-vs-eye FIDs, features from the device vs the CPU (a large FID:
# the real-vs-real FID of two halves is near 0 and its relative error many times the features')
FID_TOLERANCE = 1e-2
# seconds: a hung NCCL rendezvous or benchmark is a failure; ~10 times the ~25 s expected,
# within the whole run's 5-minute budget (600 let one hang take twice that)
SUBPROCESS_TIMEOUT = 240
TORCHRUN_CHILD = "_torchrun-child"  # argv[1] of the process torchrun starts (not public)
PROBE = "gpu-check probe: "  # prefix of the child's JSON line on stdout
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")  # present when an NVIDIA driver is loaded
# benchmarks/ of the checkout the package was installed from in place (pip install -e)
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


class CheckFailed(Exception):
    """A check's expectation did not hold; the message is the line printed after FAIL."""


class Skipped(Exception):
    """A check cannot run here for a reason outside the code it checks (printed after SKIP)."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass(frozen=True)
class Scale:
    """How much work every check does."""

    per_class: int  # drawings per category: training, renderer and classifier data
    batch_size: int  # GAN and torchrun batch
    steps: int  # training steps before the resume
    resumed_steps: int  # further steps after ``--resume``
    rnn_batch_size: int  # Sketch-RNN batch (magenta: 100)
    samples: int  # drawings per sampling check
    classifier_width: int  # k of the width-k classifier: 8k features
    classifier_epochs: int  # epochs (patience as long: no early stop)
    # the suite's 128 would be 2 Adam steps an epoch here: the classifier would stay at chance
    classifier_batch_size: int
    # on the held-out tenth; 0: no bound (at the tiny scale a few images after a few steps)
    min_accuracy: float
    bench_cases: tuple[str, ...]  # benchmarks/bench_train.py case ids
    timing_rounds: int  # best of this many rounds in the render timing
    gan_options: dict[str, Any] = field(default_factory=dict)  # --set for every GAN
    rnn_options: dict[str, Any] = field(default_factory=dict)  # --set for Sketch-RNN


SCALES = {
    # the GPU run: the models at their real sizes, a few steps each
    "normal": Scale(per_class=100, batch_size=64, steps=50, resumed_steps=10, rnn_batch_size=100,
                    samples=64, classifier_width=8, classifier_epochs=3,
                    classifier_batch_size=16, min_accuracy=0.8,  # CPU: 0.95 to 1.0, 5 seeds
                    bench_cases=("sngan-28", "sngan-64"), timing_rounds=3),
    # the CPU test: small networks and a handful of steps, every code path still taken
    "tiny": Scale(per_class=16, batch_size=8, steps=2, resumed_steps=1, rnn_batch_size=8,
                  samples=8, classifier_width=4, classifier_epochs=1, classifier_batch_size=16,
                  min_accuracy=0.0, bench_cases=("sngan-28",),
                  timing_rounds=1, gan_options={"width": 8, "standing_batches": 1},
                  rnn_options={"enc_rnn_size": 16, "dec_rnn_size": 32, "z_size": 8,
                               "num_mixture": 3, "sample_max_len": 40}),
}


@dataclass
class Context:
    """What the checks share: the device, the scale, a work folder this run created, and the
    products of earlier checks (trained runs, the classifier) so each is made once."""

    device: torch.device
    scale: Scale
    work: Path
    mirror: str | None = None  # None: $QUICKDRAW_MIRROR, else Google's bucket
    ranks: int = 1  # torchrun processes
    benchmarks: Path = BENCHMARKS  # the checkout's benchmarks/ folder
    products: dict[str, tuple[Any, BaseException | None]] = field(default_factory=dict)

    def product(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()``'s result, made once; a failure is remembered and named to later users."""
        if key not in self.products:
            try:
                self.products[key] = (make(), None)
            except Exception as error:
                self.products[key] = (None, error)
                raise
        value, error = self.products[key]
        if error is not None:
            raise CheckFailed(f"needs {key}, which failed: {one_line(error)}") from error
        return value


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Context], str]  # returns the figure printed after PASS, or raises
    seconds: float  # expected time on a typical GPU at the normal scale (an estimate)
    needs_cuda: bool = False  # AMP, compile, NCCL, or a comparison of CUDA with the CPU


# --- training --------------------------------------------------------------------------------


@contextlib.contextmanager
def _recording_cuda_options() -> Iterator[dict[str, Any]]:
    """Record what ``runtime.autocast``, ``grad_scaler`` and ``maybe_compile`` really gave the
    task: the harness returns no task, and a flag that silently does nothing is exactly what
    these checks are for."""
    from unittest import mock

    import torch

    from sketchgen import runtime

    used: dict[str, Any] = {"autocast": set(), "scaler": False, "compiled": 0}
    autocast, grad_scaler, maybe_compile = (runtime.autocast, runtime.grad_scaler,
                                            runtime.maybe_compile)

    def recording_autocast(config, device):
        context = autocast(config, device)
        if isinstance(context, torch.autocast):
            used["autocast"].add(str(context.fast_dtype).removeprefix("torch."))
        return context

    def recording_scaler(config, device):
        scaler = grad_scaler(config, device)
        used["scaler"] |= scaler.is_enabled()
        return scaler

    def recording_compile(module, config, device):
        compiled = maybe_compile(module, config, device)
        used["compiled"] += compiled is not module
        return compiled

    with (mock.patch.object(runtime, "autocast", recording_autocast),
          mock.patch.object(runtime, "grad_scaler", recording_scaler),
          mock.patch.object(runtime, "maybe_compile", recording_compile)):
        yield used


def _flags(amp: bool, compile: bool) -> str:
    return "".join(f" --{name}" for name, on in (("amp", amp), ("compile", compile)) if on)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _model_options(ctx: Context, model: str) -> dict[str, Any]:
    from sketchgen.models import registry

    kind = registry.get_model(model).kind
    return dict(ctx.scale.gan_options if kind == "bitmap" else ctx.scale.rnn_options)


def train_config(ctx: Context, model: str, out: Path, **changes: Any):
    """A short run of ``model`` on the check's data, everything written into ``out``."""
    from sketchgen.config import TrainConfig
    from sketchgen.models import registry

    scale = ctx.scale
    strokes = registry.get_model(model).kind == "strokes"
    settings = dict(
        model=model, categories=STROKE_CATEGORIES if strokes else CATEGORIES,
        per_class=scale.per_class, size=28, steps=scale.steps,
        batch_size=scale.rnn_batch_size if strokes else scale.batch_size, seed=0, out=str(out),
        checkpoint_every=scale.steps, sample_every=scale.steps, grid_size=16,
        device=str(ctx.device), progress=False, mirror=ctx.mirror,
        model_options=_model_options(ctx, model),
    )
    return TrainConfig(**(settings | changes))


@dataclass(frozen=True)
class TrainedRun:
    run_dir: Path
    steps: int  # the step the run ended at
    resumed: int  # steps taken after the resume (0: not resumed)
    metrics: dict[str, float]  # of the last step
    used: dict[str, Any]  # what the CUDA options really did (_recording_cuda_options)


def _train_run(ctx: Context, model: str, amp: bool = False, compile: bool = False) -> TrainedRun:
    """Train, then resume for a few more steps (the checkpoint written and read back; under
    AMP with the GradScaler's state). A compiled run is not resumed: it would compile again."""
    from sketchgen.training.harness import train

    config = train_config(ctx, model, ctx.work / _slug(f"run {model}{_flags(amp, compile)}"),
                          amp=amp, compile=compile)
    resumed = 0 if compile else ctx.scale.resumed_steps
    with _recording_cuda_options() as used:
        result = train(config)
        if resumed:
            result = train(dataclasses.replace(config, steps=config.steps + resumed), resume=True)
    _require(result.step == config.steps + resumed,
             f"ended at step {result.step}, not {config.steps + resumed}")
    return TrainedRun(result.run_dir, result.step, resumed, result.metrics, used)


def _applied(run: TrainedRun, amp: bool, compile: bool) -> list[str]:
    """What the requested CUDA options did, as words; one that did nothing fails."""
    words = []
    if amp:
        _require(bool(run.used["autocast"]), "--amp on CUDA, but the task entered no autocast")
        dtypes = "/".join(sorted(run.used["autocast"]))
        scaler = "GradScaler on" if run.used["scaler"] else "no GradScaler"
        words.append(f"autocast {dtypes}, {scaler}")
    if compile:
        _require(run.used["compiled"] > 0, "--compile on CUDA, but the task compiled no module")
        words.append(f"{run.used['compiled']} modules compiled")
    return words


def train_check(ctx: Context, model: str, amp: bool = False, compile: bool = False) -> str:
    """Train ``model`` on the device with the options, which must take effect."""
    run = ctx.product(f"run {model}{_flags(amp, compile)}",
                      lambda: _train_run(ctx, model, amp, compile))
    steps = f"{run.steps - run.resumed} steps" + (f" + {run.resumed} resumed" if run.resumed
                                                  else "")
    losses = [f"{key} {value:.3g}" for key, value in run.metrics.items()
              if key.startswith("loss")][:2]
    return ", ".join([steps, *losses, *_applied(run, amp, compile)])


# --- sampling --------------------------------------------------------------------------------


def _samples(ctx: Context, model: str, device: str | torch.device, seed: int) -> np.ndarray:
    from sketchgen.training.sampling import load_run, sample_images, sample_labels

    run_dir = ctx.product(f"run {model}", lambda: _train_run(ctx, model)).run_dir
    run = load_run(run_dir, device=str(device))
    return sample_images(run, sample_labels(run, ctx.scale.samples), seed=seed)


def sample_check(ctx: Context, model: str) -> str:
    """The trained run reloaded on the device: the same seed gives the same samples there."""
    first, again = (_samples(ctx, model, ctx.device, seed=1) for _ in range(2))
    other = _samples(ctx, model, ctx.device, seed=2)
    _require(np.array_equal(first, again), f"the same seed gave different samples on {ctx.device}")
    _require(not np.array_equal(first, other), "seeds 1 and 2 gave the same samples")
    ink = float((first > 127).mean())
    return f"{len(first)} samples, the same seed twice identical, ink {ink:.1%} of pixels"


def sample_across_devices_check(ctx: Context, model: str) -> str:
    """Task.sample's promise: the same seed gives the same samples on every device."""
    from sketchgen.models import registry

    here, on_cpu = (_samples(ctx, model, device, seed=1) for device in (ctx.device, "cpu"))
    difference = np.abs(here.astype(int) - on_cpu.astype(int))
    identical = float((difference.reshape(len(here), -1).max(axis=1) == 0).mean())
    figures = (f"{identical:.0%} of {len(here)} samples identical to the CPU's, mean pixel "
               f"difference {difference.mean():.3f}, largest {difference.max()}")
    if registry.get_model(model).kind == "strokes":
        _require(identical >= IDENTICAL_DRAWINGS_SHARE,
                 f"{figures} (expected >= {IDENTICAL_DRAWINGS_SHARE:.0%} identical)")
    else:
        _require(difference.mean() <= SAMPLE_MEAN_TOLERANCE,
                 f"{figures} (expected a mean <= {SAMPLE_MEAN_TOLERANCE})")
    return figures


# --- the torch renderer ----------------------------------------------------------------------


def _drawings(ctx: Context) -> list:
    from sketchgen.data import datasets as data

    return ctx.product("drawings", lambda: data.load_drawings(
        CATEGORIES, per_class=ctx.scale.per_class, mirror=ctx.mirror).drawings)


def _per_image_difference(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.abs(images.astype(int) - reference.astype(int)).mean(axis=(1, 2))


def render_check(ctx: Context) -> str:
    """The torch renderer on the device against cairo, within the README's bounds."""
    from rasterize.render import render
    from rasterize.torch_render import TorchRenderConfig, render_drawings

    drawings = _drawings(ctx)
    images = render_drawings(drawings, TorchRenderConfig(), device=ctx.device)
    per_image = _per_image_difference(images, render(drawings, size=28))
    mean, worst = float(per_image.mean()), float(per_image.max())
    figures = (f"{len(drawings)} drawings at 28 px: mean |torch - cairo| {mean:.3f} grey "
               f"levels (bound {RENDER_MEAN_BOUND}), worst image {worst:.3f} "
               f"(bound {RENDER_WORST_BOUND})")
    _require(mean <= RENDER_MEAN_BOUND and worst <= RENDER_WORST_BOUND, figures)
    return figures


def _pixels_and_gradient(drawings: list, device: str | torch.device):
    from rasterize.torch_render import PolylineBatch, coverage, render

    batch = PolylineBatch.from_drawings(drawings, device)
    points = batch.points.clone().requires_grad_()
    coverage(PolylineBatch(points, batch.pen_up, batch.mask)).square().sum().backward()
    return render(batch).cpu().numpy(), points.grad.cpu().numpy()


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
    _require(largest <= RENDER_DEVICE_BOUND and relative <= GRADIENT_TOLERANCE, figures)
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
    from sketchgen.evaluation.classifier import (
        ClassifierConfig,
        fit_and_evaluate,
        save_classifier,
        training_images,
    )

    epochs = ctx.scale.classifier_epochs
    config = ClassifierConfig(width=ctx.scale.classifier_width, max_epochs=epochs,
                              patience=epochs, batch_size=ctx.scale.classifier_batch_size)
    images, labels, names = training_images(CATEGORIES, config, per_class=ctx.scale.per_class,
                                            mirror=ctx.mirror)
    classifier, evaluation = fit_and_evaluate(images, labels, names, config, device=ctx.device)
    path = save_classifier(classifier, ctx.work / "classifier.pt")
    return TrainedClassifier(classifier, evaluation.accuracy, images, labels, path)


def _classes_fid(features: np.ndarray, labels: np.ndarray) -> float:
    from sketchgen.evaluation.metrics import fid

    return fid(features[labels == 0], features[labels == 1])


def classifier_check(ctx: Context) -> str:
    """Train on the device (it must learn); its features, and the same after save and load."""
    from sketchgen.evaluation.classifier import load_classifier
    from sketchgen.evaluation.metrics import extract_features

    trained = ctx.product("classifier", lambda: _train_classifier(ctx))
    classifier = trained.classifier
    _require(classifier.device.type == ctx.device.type,
             f"the classifier trained on {classifier.device}, not {ctx.device}")
    _require(trained.accuracy >= ctx.scale.min_accuracy,
             f"test accuracy {trained.accuracy:.2f} after {len(classifier.history)} epochs "
             f"(expected >= {ctx.scale.min_accuracy})")
    features = extract_features(classifier.features, trained.images)
    _require(features.shape == (len(trained.images), classifier.num_features)
             and bool(np.isfinite(features).all()),
             f"features of shape {features.shape} or not finite")
    reloaded = load_classifier(trained.path, ctx.device)
    _require(np.array_equal(extract_features(reloaded.features, trained.images), features),
             "the saved and reloaded classifier gives other features")
    epochs = len(classifier.history)
    return (f"{epochs} epoch{'s' * (epochs != 1)} on {len(trained.images)} drawings, test "
            f"accuracy {trained.accuracy:.2f}; {classifier.feature_name} features "
            f"{features.shape[0]}x{features.shape[1]}; FID {' vs '.join(CATEGORIES)} "
            f"{_classes_fid(features, trained.labels):.3g}")


def fid_across_devices_check(ctx: Context) -> str:
    """The same classifier's features on the device and on the CPU, and the FIDs from them."""
    from sketchgen.evaluation.classifier import load_classifier
    from sketchgen.evaluation.metrics import extract_features

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
    _require(relative <= FID_TOLERANCE, figures)
    return figures


# --- torchrun --------------------------------------------------------------------------------


def _torchrun_command(ctx: Context, out: Path) -> list[str]:
    scale = ctx.scale
    settings = [f"{key}={json.dumps(value)}" for key, value in _model_options(ctx, "dcgan").items()]
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node", str(ctx.ranks), "-m", "sketchgen.gpu_check", TORCHRUN_CHILD,
        "dcgan", "--categories", *CATEGORIES, "--per-class", str(scale.per_class),
        "--steps", str(scale.steps), "--batch-size", str(scale.batch_size * ctx.ranks),
        "--checkpoint-every", str(scale.steps), "--sample-every", str(scale.steps),
        # the device type: init_distributed gives each rank its own GPU for "cuda" only
        "--grid-size", "16", "--device", ctx.device.type, "--out", str(out), "--no-progress",
        *(["--mirror", ctx.mirror] if ctx.mirror else []),
        *(item for setting in settings for item in ("--set", setting)),
    ]


def torchrun_check(ctx: Context) -> str:
    """``torchrun -m sketchgen train dcgan`` (batch norm: SyncBatchNorm on several GPUs) with
    the backend ``runtime.init_distributed`` picks: NCCL on CUDA, gloo on the CPU."""
    from sketchgen import runtime
    from sketchgen.training.harness import CHECKPOINT

    out = ctx.work / "torchrun-dcgan"
    done = subprocess.run(_torchrun_command(ctx, out), capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT)
    _require(done.returncode == 0,
             f"torchrun exited with {done.returncode}: {_last_line(done.stderr)}")
    probes = [line.removeprefix(PROBE) for line in done.stdout.splitlines()
              if line.startswith(PROBE)]
    _require(len(probes) == 1, f"rank 0 printed {len(probes)} probe lines: "
                               f"{_last_line(done.stdout)}")
    probe = json.loads(probes[0])
    expected = "nccl" if ctx.device.type == "cuda" else "gloo"
    _require(probe["world_size"] == ctx.ranks,
             f"{probe['world_size']} ranks started, not {ctx.ranks}")
    _require(probe["device"].startswith(ctx.device.type),
             f"rank 0 trained on {probe['device']}, not {ctx.device.type}")
    if ctx.ranks > 1:
        _require(probe["backend"] == expected,
                 f"init_distributed chose {probe['backend']}, not {expected}")
    elif ctx.device.type == "cuda":
        _require(probe["nccl_alone"], "NCCL's all-reduce of 1 on one rank did not give 1")
    step = runtime.load_checkpoint(out / CHECKPOINT)["step"]
    _require(step == ctx.scale.steps, f"the run's checkpoint is at step {step}")
    if ctx.ranks > 1:
        return f"{ctx.ranks} ranks, backend {probe['backend']} on {probe['device']}, step {step}"
    nccl = ", NCCL all-reduce ok on its own" if ctx.device.type == "cuda" else ""
    return (f"1 rank on {probe['device']}, step {step}{nccl}; with WORLD_SIZE=1 "
            "init_distributed starts no process group: its NCCL path needs 2 GPUs")


def _distributed_child(train_args: Sequence[str]) -> int:
    """Run under torchrun: report the rank setup ``runtime.init_distributed`` chose, then run
    ``sketchgen train`` exactly as ``torchrun -m sketchgen train ...`` would."""
    import torch
    import torch.distributed as dist

    from sketchgen import cli, runtime

    device_name = train_args[train_args.index("--device") + 1]
    rank, world_size, device = runtime.init_distributed(device_name)
    backend = dist.get_backend() if dist.is_initialized() else None
    nccl_alone = False
    if world_size == 1 and device.type == "cuda":  # one GPU: NCCL itself, one rank
        dist.init_process_group("nccl")
        total = torch.ones(1, device=device)
        dist.all_reduce(total)
        nccl_alone = total.item() == 1.0
        dist.destroy_process_group()
    status = cli.main(["train", *train_args])
    if rank == 0:
        probe = {"world_size": world_size, "backend": backend, "device": str(device),
                 "nccl_alone": nccl_alone}
        print(PROBE + json.dumps(probe), flush=True)
    return status


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
    _require(done.returncode == 0,
             f"pytest exited with {done.returncode}: {_last_line(done.stdout + done.stderr)}")
    written = report.read_text() if report.exists() else ""
    _require(bool(written), f"pytest-benchmark wrote no results: {_last_line(done.stderr)}")
    results = [entry["extra_info"] for entry in json.loads(written)["benchmarks"]]
    _require(len(results) == len(cases), f"{len(results)} results for {len(cases)} cases")
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
    from rasterize.render import render_reference
    from rasterize.torch_render import PolylineBatch, TorchRenderConfig, render, render_drawings

    config = TorchRenderConfig(size=size)
    tensors = PolylineBatch.from_drawings(drawings, device)
    render(tensors, config)  # warm-up: kernels, allocator
    loop, ours, ready = (_best_seconds(function, rounds, device) for function in (
        lambda: render_reference(drawings, size),
        lambda: render_drawings(drawings, config, device),
        lambda: render(tensors, config),
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


# --- the registry ----------------------------------------------------------------------------


def _check(name: str, run: Callable[..., str], seconds: float, needs_cuda: bool = False,
           **arguments: Any) -> Check:
    return Check(name, functools.partial(run, **arguments), seconds, needs_cuda)


CHECKS: tuple[Check, ...] = (
    _check("train sngan", train_check, 8, model="sngan"),
    _check("train sngan --amp", train_check, 8, True, model="sngan", amp=True),
    _check("train dcgan --amp", train_check, 8, True, model="dcgan", amp=True),
    _check("train sngan --compile", train_check, 60, True, model="sngan", compile=True),
    # Sketch-RNN applies neither --amp nor --compile (README): runs with them would train the
    # same float32 model again and could not fail where this one passes
    _check("train sketch-rnn", train_check, 6, model="sketch-rnn"),
    _check("sample sngan", sample_check, 3, model="sngan"),
    _check("sample sngan cuda vs cpu", sample_across_devices_check, 3, True, model="sngan"),
    _check("sample sketch-rnn", sample_check, 4, model="sketch-rnn"),
    _check("sample sketch-rnn cuda vs cpu", sample_across_devices_check, 5, True,
           model="sketch-rnn"),
    _check("torch render vs cairo", render_check, 2),
    _check("torch render cuda vs cpu", render_across_devices_check, 2, True),
    _check("classifier", classifier_check, 4),
    _check("fid cuda vs cpu", fid_across_devices_check, 2, True),
    _check("torchrun dcgan (nccl)", torchrun_check, 25, True),
    _check("bench train", bench_train_check, 25),
    _check("bench torch render", bench_render_check, 5),
)


# --- the runner ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: str  # PASS, FAIL or SKIP
    name: str
    seconds: float | None  # None: not run
    detail: str  # the figure, the one-line reason, or why it was skipped


def one_line(error: BaseException) -> str:
    """An exception as one line: its message (its type too unless it is a CheckFailed)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if not isinstance(error, CheckFailed):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def run_check(check: Check, ctx: Context, verbose: bool = False) -> Outcome:
    """Run and time one check. What it writes to stderr (the harness's summaries, warnings)
    is kept out of the report; ``verbose`` prints it, with the traceback, for a failure."""
    if check.needs_cuda and ctx.device.type != "cuda":
        return Outcome("SKIP", check.name, None, "(needs CUDA)")
    began = time.perf_counter()
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stderr(chatter):
            detail = check.run(ctx)
            if ctx.device.type == "cuda":  # an asynchronous CUDA error belongs to this check
                import torch

                torch.cuda.synchronize(ctx.device)
        status = "PASS"
    except Skipped as reason:
        status, detail = "SKIP", str(reason)
    except Exception as error:
        status, detail = "FAIL", one_line(error)
        if verbose:
            sys.stderr.write(chatter.getvalue())
            traceback.print_exception(error, file=sys.stderr)
    return Outcome(status, check.name, time.perf_counter() - began, detail)


def format_outcome(outcome: Outcome, width: int) -> str:
    """``STATUS  name  seconds  detail``, the name padded to ``width``."""
    seconds = "-" if outcome.seconds is None else f"{outcome.seconds:.1f} s"
    return f"{outcome.status}  {outcome.name:<{width}}  {seconds:>7}  {outcome.detail}"


def summary(outcomes: Sequence[Outcome], seconds: float) -> str:
    counts = {status: sum(o.status == status for o in outcomes) for status in ("PASS", "FAIL",
                                                                               "SKIP")}
    line = (f"{len(outcomes)} checks in {seconds:.1f} s: {counts['PASS']} passed, "
            f"{counts['FAIL']} failed, {counts['SKIP']} skipped")
    failed = [o.name for o in outcomes if o.status == "FAIL"]
    return line + (f"; FAILED: {', '.join(failed)}" if failed else "")


def run_checks(checks: Sequence[Check], ctx: Context, out: IO[str] | None = None,
               verbose: bool = False) -> list[Outcome]:
    """Run every check in order, printing its line (to ``out``, default stdout) as soon as it
    is done."""
    out = out or sys.stdout
    width = max(len(check.name) for check in checks)
    outcomes = []
    for check in checks:
        outcomes.append(run_check(check, ctx, verbose))
        print(format_outcome(outcomes[-1], width), file=out, flush=True)
    return outcomes


def no_cuda_message() -> tuple[str, int]:
    """The line printed when CUDA is wanted but torch sees none, and the exit status: 0 on a
    machine without a GPU, 1 when an NVIDIA driver is loaded (torch is the wrong build)."""
    import torch

    if NVIDIA_DRIVER.exists():
        build = ("a CPU-only build" if torch.version.cuda is None
                 else f"built for CUDA {torch.version.cuda}")
        return (f"no CUDA device visible to torch {torch.__version__} ({build}), but an NVIDIA "
                "driver is loaded: install a CUDA build of torch (tox.ini [testenv:gpu])", 1)
    return f"no CUDA device: nothing to check (torch {torch.__version__}, CUDA not available)", 0


def describe(device: torch.device, scale_name: str) -> str:
    """The header line: what is being checked on what."""
    import torch

    parts = [f"torch {torch.__version__}"]
    if device.type == "cuda":
        gpu = torch.cuda.get_device_properties(device)
        parts += [
            f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}",
            f"{gpu.name} ({gpu.total_memory / 2**30:.0f} GiB) of {torch.cuda.device_count()}",
            "bfloat16" if torch.cuda.is_bf16_supported() else "float16 + GradScaler (no bf16)",
            f"TF32 convolutions {'on' if torch.backends.cudnn.allow_tf32 else 'off'}",
        ]
    return f"sketchgen GPU self-check on {device}, scale {scale_name}: " + ", ".join(parts)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sketchgen.gpu_check",
        description="Check the CUDA paths (AMP, compile, sampling, renderer, classifier, FID, "
                    "torchrun/NCCL, benchmarks): one line per check, exit status 1 on a "
                    "failure. Without CUDA it says so and exits 0.")
    parser.add_argument("--device", default="cuda",
                        help="torch device; cpu runs every check that needs no CUDA "
                             "(default: cuda)")
    parser.add_argument("--scale", choices=SCALES, default="normal",
                        help="normal: the GPU run; tiny: small networks, seconds on a CPU")
    parser.add_argument("--mirror", default=None,
                        help="data folder or URL (default: $QUICKDRAW_MIRROR, else Google's "
                             "bucket)")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="run only checks whose name contains TEXT (repeatable)")
    parser.add_argument("--benchmarks", type=Path, default=BENCHMARKS, metavar="DIR",
                        help="the checkout's benchmarks/ folder (default: beside the package, "
                             "for an editable install)")
    parser.add_argument("--ranks", type=int, default=None,
                        help="torchrun processes (default: 2 if there are 2 GPUs, else 1)")
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    parser.add_argument("--verbose", action="store_true",
                        help="print the traceback of every failure to stderr")
    return parser


def _selected(only: Sequence[str]) -> list[Check]:
    return [check for check in CHECKS if not only or any(text in check.name for text in only)]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [TORCHRUN_CHILD]:
        return _distributed_child(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    checks = _selected(args.only)
    if not checks:
        parser.error(f"no check name contains {' or '.join(map(repr, args.only))}")
    if args.list:
        width = max(len(check.name) for check in checks)
        for check in checks:
            print(f"{check.name:<{width}}  ~{check.seconds:g} s"
                  + ("  (needs CUDA)" if check.needs_cuda else ""))
        print(f"expected in all: ~{sum(check.seconds for check in checks):g} s on a typical GPU "
              "(estimates)")
        return 0
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        message, status = no_cuda_message()
        print(message)
        return status
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        parser.error(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    ranks = args.ranks or (min(2, torch.cuda.device_count()) if device.type == "cuda" else 1)
    began = time.perf_counter()
    print(describe(device, args.scale), flush=True)
    with tempfile.TemporaryDirectory(prefix="sketchgen-gpu-check-") as work:
        ctx = Context(device, SCALES[args.scale], Path(work), args.mirror, ranks,
                      args.benchmarks)
        outcomes = run_checks(checks, ctx, verbose=args.verbose)
    print(summary(outcomes, time.perf_counter() - began))
    return 1 if any(outcome.status == "FAIL" for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
