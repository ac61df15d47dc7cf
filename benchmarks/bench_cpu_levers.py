"""CPU levers for GAN training (issue 16 item 5), each a ratio to the default measured in the
same run: which of them the harness should adopt on a CPU.

* channels-last memory format for G, D and the real batches, vs torch's default NCHW;
* ``torch.compile`` of G and D (inductor, CPU), vs eager; the first call's compile time too;
* Adam's implementations: ``foreach`` and ``fused`` vs the per-parameter loop that is
  torch's default on a CPU (the optimizer step alone, over G's and D's parameters);
* torch threads: one training step on 1 vs 2 intra-op threads; and two processes with one
  thread each training side by side vs one process with two threads (images/s of the
  machine: what decides how many runs ``compare`` should train at once).

Every side is ``GanTask.train_step`` of :data:`MODEL` at the small CPU budget's size and
batch (28 px, batch 32) on the benchmarks' real drawings; timings alternate between the sides
and keep each side's best round (``common.best_times``). Ratios > 1 mean the lever helps.
Run: ``pytest benchmarks/bench_cpu_levers.py`` (not in the report's subset).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from common import PER_CATEGORY, best_times, record

from sketchgen import runtime
from sketchgen.models import registry
from sketchgen.models.gan.task import GanTask
from sketchgen.models.task import TaskInputs
from sketchgen.training.config import TrainConfig
from sketchgen.training.inputs import load_data

MODEL = "dcgan"  # the default GAN recipe: plain convolutions with batch norm
CATEGORIES = ("dog", "face")  # two of common.CATEGORIES, as in bench_train
SIZE, BATCH = 28, 32  # configs/cpu-small.toml's size and GAN batch
STEPS = 5  # training steps per timed round
ROUNDS = 3  # alternating rounds per side
PROCESS_ROUNDS = 3  # rounds of the two-process comparison (each trains on both cores)


def build_task(threads: int | None = None) -> GanTask:
    """A fresh seeded task as the harness builds it, on the CPU."""
    config = TrainConfig(model=MODEL, categories=CATEGORIES, per_class=PER_CATEGORY, size=SIZE,
                         batch_size=BATCH, device="cpu", progress=False)
    entry, model_config = registry.resolve(config)
    device = torch.device("cpu")
    bitmaps, class_names = load_data(config, entry.kind, device)
    runtime.seed_everything(0)
    return entry.build(TaskInputs(config, model_config, class_names, device, bitmaps))


def stepper(task: GanTask):
    """A closure taking the task's next STEPS training steps."""
    steps = itertools.count(1)

    def run():
        for _ in range(STEPS):
            task.train_step(next(steps))

    return run


class ChannelsLastTask(GanTask):
    """The same step with real batches in channels-last layout (G and D are converted too)."""

    def _real_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = super()._real_batch(n)
        return images.contiguous(memory_format=torch.channels_last), labels


def channels_last(task: GanTask) -> GanTask:
    task.__class__ = ChannelsLastTask
    task.G.to(memory_format=torch.channels_last)  # in place: the optimizers keep their params
    task.D.to(memory_format=torch.channels_last)
    return task


def images_per_s(seconds: float, processes: int = 1) -> float:
    return processes * STEPS * BATCH / seconds


@pytest.fixture(scope="module")
def default_step():
    task = build_task()
    run = stepper(task)
    run()  # warm-up: allocator, first-call dispatch
    return run


@pytest.mark.benchmark(group="cpu-levers")
def test_channels_last_vs_default_layout(benchmark, default_step):
    lever = stepper(channels_last(build_task()))
    lever()
    default, fast = best_times(default_step, lever, rounds=ROUNDS)
    benchmark.pedantic(lever, rounds=1, iterations=1)
    record(benchmark, model=MODEL, size=SIZE, batch=BATCH, threads=torch.get_num_threads(),
           images_per_s=images_per_s(fast), default_images_per_s=images_per_s(default),
           speedup_channels_last_vs_default=default / fast)


@pytest.mark.benchmark(group="cpu-levers")
def test_torch_compile_vs_eager(benchmark, default_step):
    task = build_task()
    task.run_G, task.run_D = torch.compile(task.G), torch.compile(task.D)
    lever = stepper(task)
    start = time.perf_counter()
    lever()  # compiles G and D (forward and backward) on the first steps
    compile_seconds = time.perf_counter() - start
    eager, fast = best_times(default_step, lever, rounds=ROUNDS)
    benchmark.pedantic(lever, rounds=1, iterations=1)
    record(benchmark, model=MODEL, size=SIZE, batch=BATCH, threads=torch.get_num_threads(),
           images_per_s=images_per_s(fast), eager_images_per_s=images_per_s(eager),
           speedup_compiled_vs_eager=eager / fast, first_steps_with_compile_seconds=compile_seconds)


def optimizer_steps(task: GanTask, **implementation):
    """A closure taking STEPS Adam steps over G's and D's parameters with ``implementation``
    (``foreach=True``, ``fused=True`` or the default), on fixed random gradients."""
    optimizers = [torch.optim.Adam(opt.param_groups[0]["params"], **{
        key: opt.defaults[key] for key in ("lr", "betas", "eps", "weight_decay")},
        **implementation) for opt in (task.opt_g, task.opt_d)]
    generator = torch.Generator().manual_seed(0)
    for optimizer in optimizers:
        for param in optimizer.param_groups[0]["params"]:
            param.grad = torch.randn(param.shape, generator=generator)

    def run():
        for _ in range(STEPS):
            for optimizer in optimizers:
                optimizer.step()

    return run


@pytest.mark.benchmark(group="cpu-levers")
def test_adam_foreach_and_fused_vs_default(benchmark, default_step):
    task = build_task()
    plain = optimizer_steps(task)
    foreach = optimizer_steps(task, foreach=True)
    fused = optimizer_steps(task, fused=True)
    for run in (plain, foreach, fused):
        run()  # warm-up: state tensors allocated
    plain_s, foreach_s, fused_s, step_s = best_times(plain, foreach, fused, default_step,
                                                     rounds=ROUNDS)
    benchmark.pedantic(fused, rounds=1, iterations=1)
    weights = sum(p.numel() for opt in (task.opt_g, task.opt_d)
                  for p in opt.param_groups[0]["params"])
    record(benchmark, model=MODEL, weights=weights, threads=torch.get_num_threads(),
           plain_adam_ms=1e3 * plain_s / STEPS, foreach_adam_ms=1e3 * foreach_s / STEPS,
           fused_adam_ms=1e3 * fused_s / STEPS, training_step_ms=1e3 * step_s / STEPS,
           speedup_foreach_vs_plain=plain_s / foreach_s, speedup_fused_vs_plain=plain_s / fused_s,
           plain_adam_share_of_step=plain_s / step_s)


def with_threads(count: int, function):
    def run():
        with runtime.torch_threads(count):
            function()

    return run


@pytest.mark.benchmark(group="cpu-levers")
def test_one_vs_two_threads(benchmark, default_step):
    one, two = with_threads(1, default_step), with_threads(2, default_step)
    one(), two()
    one_s, two_s = best_times(one, two, rounds=ROUNDS)
    benchmark.pedantic(two, rounds=1, iterations=1)
    record(benchmark, model=MODEL, size=SIZE, batch=BATCH, cores=os.cpu_count(),
           one_thread_images_per_s=images_per_s(one_s),
           two_threads_images_per_s=images_per_s(two_s), speedup_two_vs_one_thread=one_s / two_s)


# -- two single-thread processes vs one two-thread process ------------------------------------


class Trainer:
    """A worker process (this file run as a script) that builds the task, warms up, then
    takes STEPS steps per "go" line on stdin and answers with the seconds they took."""

    def __init__(self, threads: int) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(threads)], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.answer()  # "ready": set up and warmed up

    def go(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def answer(self) -> str:
        line = self.process.stdout.readline()
        assert line, f"the worker exited with {self.process.wait()}"
        return line.strip()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def side_by_side(trainers: list[Trainer]) -> float:
    """Seconds until the last of ``trainers`` has taken its STEPS steps, started together."""
    start = time.perf_counter()
    for trainer in trainers:
        trainer.go()
    for trainer in trainers:
        trainer.answer()
    return time.perf_counter() - start


@pytest.mark.benchmark(group="cpu-levers")
def test_two_single_thread_processes_vs_one_two_thread_process(benchmark):
    pair = [Trainer(1), Trainer(1)]
    single = [Trainer(2)]
    try:
        pair_s, single_s = best_times(lambda: side_by_side(pair), lambda: side_by_side(single),
                                      rounds=PROCESS_ROUNDS)
        benchmark.pedantic(side_by_side, args=(pair,), rounds=1, iterations=1)
    finally:
        for trainer in (*pair, *single):
            trainer.close()
    pair_rate, single_rate = images_per_s(pair_s, processes=2), images_per_s(single_s)
    record(benchmark, model=MODEL, size=SIZE, batch=BATCH, cores=os.cpu_count(),
           two_processes_images_per_s=pair_rate, one_process_images_per_s=single_rate,
           speedup_two_processes_vs_one=pair_rate / single_rate)


def worker(threads: int) -> None:
    torch.set_num_threads(threads)
    run = stepper(build_task())
    run()
    print("ready", flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        run()
        print(time.perf_counter() - start, flush=True)


if __name__ == "__main__":
    worker(int(sys.argv[1]))
