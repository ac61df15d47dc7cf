"""Diffusion sampling and training speed at 28 px: DDIM against DDPM's ancestral sampler.

* sampling: drawings/s of DDIM at 50 steps against the ancestral sampler over all 1,000
  steps, same net, same weights, same batch of drawings; each step is one pass of the U-Net
  over the batch (two with guidance: the conditional and the unconditional prediction), so
  the ratio should be about the step ratio, 20;
* training: images/s of ``DdpmTask.train_step`` on real bitmaps (batch, noising, forward,
  backward, clip, Adam, EMA).

The model is the comparison's ``ddpm`` at the CPU budget (:data:`OPTIONS`, the entry
proposed for ``configs/cpu-small.toml``), class-conditional on two categories with its default
guidance. Untrained weights do not change the work a sampler does. Timings alternate between
the sides and keep each side's best round (``common.best_times``); rates and the ratio go to
``benchmark.extra_info``. One torch thread (a per-core figure, like the Sketch-RNN benchmark;
two threads on the shared 2-core machine spent most of their time waiting for each other at
these small convolutions). Run: ``pytest benchmarks/bench_ddpm.py``.
"""

from __future__ import annotations

import pytest
import torch
from common import best_times, real_bitmaps, record

from sketchgen import runtime
from sketchgen.models import registry
from sketchgen.models.ddpm.diffusion import ancestral_sample, ddim_sample
from sketchgen.models.ddpm.task import DdpmTask
from sketchgen.models.task import BitmapData, TaskInputs
from sketchgen.training.config import TrainConfig

CATEGORIES = ("dog", "face")  # two of common.CATEGORIES
SIZE = 28
OPTIONS = {"width": 16}  # the CPU budget's U-Net (see the module docstring)
DDIM_STEPS = 50  # the figure, DdpmConfig's default
SAMPLE_BATCH = 4  # drawings per sampler call, on both sides
BATCH = 32  # the CPU budget's training batch
TRAIN_STEPS = 3  # training steps per timed round
ROUNDS = 2  # an ancestral round is 1,000 passes of the U-Net


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with runtime.torch_threads(1):
        yield


@pytest.fixture(scope="module")
def task() -> DdpmTask:
    device = runtime.choose_device("auto")
    loaded = real_bitmaps(CATEGORIES, SIZE)
    data = BitmapData(torch.from_numpy(loaded.bitmaps).to(device),
                      torch.from_numpy(loaded.labels).long().to(device), CATEGORIES)
    config = TrainConfig(model="ddpm", categories=CATEGORIES, size=SIZE, batch_size=BATCH,
                         device=str(device), progress=False, model_options=OPTIONS)
    entry, model_config = registry.resolve(config)
    runtime.seed_everything(0)
    return entry.build(TaskInputs(config, model_config, CATEGORIES, device, data))


@pytest.mark.benchmark(group="ddpm")
def test_ddim_vs_ancestral_sampling(benchmark, task):
    labels = (torch.arange(SAMPLE_BATCH) % len(CATEGORIES)).to(task.device)
    shape, cfg = (1, SIZE, SIZE), task.cfg
    generator = torch.Generator().manual_seed(0)

    def ddim():
        with torch.no_grad():
            ddim_sample(task.ema, labels, shape, task.alpha_bar, DDIM_STEPS, cfg.eta,
                        task.null_label, cfg.guidance_scale, generator, task.device)

    def ancestral():
        with torch.no_grad():
            ancestral_sample(task.ema, labels, shape, task.alpha_bar, task.null_label,
                             cfg.guidance_scale, generator, task.device)

    ddim()  # warm-up: allocator, first-call dispatch
    fast, slow = best_times(ddim, ancestral, rounds=ROUNDS)
    benchmark.pedantic(ddim, rounds=2, iterations=1)
    record(benchmark, size=SIZE, width=cfg.width, ddim_steps=DDIM_STEPS,
           ancestral_steps=cfg.timesteps, guidance_scale=cfg.guidance_scale,
           drawings_per_call=SAMPLE_BATCH, device=str(task.device),
           threads=torch.get_num_threads(), drawings_per_s=SAMPLE_BATCH / fast,
           ancestral_drawings_per_s=SAMPLE_BATCH / slow, speedup_vs_ancestral=slow / fast,
           step_ratio=cfg.timesteps / DDIM_STEPS)


@pytest.mark.benchmark(group="ddpm")
def test_training_throughput(benchmark, task):
    def steps():
        for step in range(1, TRAIN_STEPS + 1):
            task.train_step(step)
        if task.device.type == "cuda":
            torch.cuda.synchronize()

    steps()  # warm-up
    (best,) = best_times(steps, rounds=3)
    benchmark.pedantic(steps, rounds=1, iterations=1)
    record(benchmark, size=SIZE, width=task.cfg.width, batch=BATCH, device=str(task.device),
           threads=torch.get_num_threads(), images_per_s=TRAIN_STEPS * BATCH / best)
