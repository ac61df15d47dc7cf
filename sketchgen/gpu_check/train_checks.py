"""Checks of training, resuming, sampling and torchrun on the device."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rasterize.geometry import GOOGLE_SIZE
from sketchgen import runtime
from sketchgen.gpu_check.context import (
    CATEGORIES,
    PROBE,
    STROKE_CATEGORIES,
    SUBPROCESS_TIMEOUT,
    TORCHRUN_CHILD,
    Context,
    last_line,
    require,
)
from sketchgen.models import registry
from sketchgen.training.config import TrainConfig

if TYPE_CHECKING:
    import torch

# --- training --------------------------------------------------------------------------------

# Task.sample promises the same samples from the same seed on every device: the randomness is
# drawn on the CPU. GPU kernels (TF32 convolutions by default on Ampere and later) round
# differently, so a GAN's pixels may move by a level or two: allowed on average, per pixel.
SAMPLE_MEAN_TOLERANCE = 1.0
# Sketch-RNN samples point by point: a rounding difference that flips one mixture or pen
# choice changes the rest of that drawing, so only a share of drawings is held identical.
IDENTICAL_DRAWINGS_SHARE = 0.5


@contextlib.contextmanager
def _recording_cuda_options() -> Iterator[dict[str, Any]]:
    """Record what ``runtime.autocast``, ``grad_scaler`` and ``maybe_compile`` really gave the
    task: the harness returns no task, and a flag that silently does nothing is exactly what
    these checks are for."""
    from unittest import mock

    import torch

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
    kind = registry.get_model(model).kind
    return dict(ctx.scale.gan_options if kind == "bitmap" else ctx.scale.rnn_options)


def train_config(ctx: Context, model: str, out: Path, **changes: Any) -> TrainConfig:
    """A short run of ``model`` on the check's data, everything written into ``out``."""
    scale = ctx.scale
    strokes = registry.get_model(model).kind == "strokes"
    settings = dict(
        model=model, categories=STROKE_CATEGORIES if strokes else CATEGORIES,
        per_class=scale.per_class, size=GOOGLE_SIZE, steps=scale.steps,
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
    require(result.step == config.steps + resumed,
             f"ended at step {result.step}, not {config.steps + resumed}")
    return TrainedRun(result.run_dir, result.step, resumed, result.metrics, used)


def _applied(run: TrainedRun, amp: bool, compile: bool) -> list[str]:
    """What the requested CUDA options did, as words; one that did nothing fails."""
    words = []
    if amp:
        require(bool(run.used["autocast"]), "--amp on CUDA, but the task entered no autocast")
        dtypes = "/".join(sorted(run.used["autocast"]))
        scaler = "GradScaler on" if run.used["scaler"] else "no GradScaler"
        words.append(f"autocast {dtypes}, {scaler}")
    if compile:
        require(run.used["compiled"] > 0, "--compile on CUDA, but the task compiled no module")
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
    require(np.array_equal(first, again), f"the same seed gave different samples on {ctx.device}")
    require(not np.array_equal(first, other), "seeds 1 and 2 gave the same samples")
    ink = float((first > 127).mean())
    return f"{len(first)} samples, the same seed twice identical, ink {ink:.1%} of pixels"


def sample_across_devices_check(ctx: Context, model: str) -> str:
    """Task.sample's promise: the same seed gives the same samples on every device."""
    here, on_cpu = (_samples(ctx, model, device, seed=1) for device in (ctx.device, "cpu"))
    difference = np.abs(here.astype(int) - on_cpu.astype(int))
    identical = float((difference.reshape(len(here), -1).max(axis=1) == 0).mean())
    figures = (f"{identical:.0%} of {len(here)} samples identical to the CPU's, mean pixel "
               f"difference {difference.mean():.3f}, largest {difference.max()}")
    if registry.get_model(model).kind == "strokes":
        require(identical >= IDENTICAL_DRAWINGS_SHARE,
                 f"{figures} (expected >= {IDENTICAL_DRAWINGS_SHARE:.0%} identical)")
    else:
        require(difference.mean() <= SAMPLE_MEAN_TOLERANCE,
                 f"{figures} (expected a mean <= {SAMPLE_MEAN_TOLERANCE})")
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
    from sketchgen.training.run_folder import RunFolder

    out = ctx.work / "torchrun-dcgan"
    done = subprocess.run(_torchrun_command(ctx, out), capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT)
    require(done.returncode == 0,
             f"torchrun exited with {done.returncode}: {last_line(done.stderr)}")
    probes = [line.removeprefix(PROBE) for line in done.stdout.splitlines()
              if line.startswith(PROBE)]
    require(len(probes) == 1, f"rank 0 printed {len(probes)} probe lines: "
                               f"{last_line(done.stdout)}")
    probe = json.loads(probes[0])
    expected = "nccl" if ctx.device.type == "cuda" else "gloo"
    require(probe["world_size"] == ctx.ranks,
             f"{probe['world_size']} ranks started, not {ctx.ranks}")
    require(probe["device"].startswith(ctx.device.type),
             f"rank 0 trained on {probe['device']}, not {ctx.device.type}")
    if ctx.ranks > 1:
        require(probe["backend"] == expected,
                 f"init_distributed chose {probe['backend']}, not {expected}")
    elif ctx.device.type == "cuda":
        require(probe["nccl_alone"], "NCCL's all-reduce of 1 on one rank did not give 1")
    step = runtime.load_checkpoint(RunFolder(out).checkpoint)["step"]
    require(step == ctx.scale.steps, f"the run's checkpoint is at step {step}")
    if ctx.ranks > 1:
        return f"{ctx.ranks} ranks, backend {probe['backend']} on {probe['device']}, step {step}"
    nccl = ", NCCL all-reduce ok on its own" if ctx.device.type == "cuda" else ""
    return (f"1 rank on {probe['device']}, step {step}{nccl}; with WORLD_SIZE=1 "
            "init_distributed starts no process group: its NCCL path needs 2 GPUs")


def distributed_child(train_args: Sequence[str]) -> int:
    """Run under torchrun: report the rank setup ``runtime.init_distributed`` chose, then run
    ``sketchgen train`` exactly as ``torchrun -m sketchgen train ...`` would."""
    import torch
    import torch.distributed as dist

    from sketchgen import cli

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


