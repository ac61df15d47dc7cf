"""GAN training throughput (images/s) per model at 28 and 64 px: the harness vs a naive loop.

* ours: the harness's data path -- bitmaps rasterized once, one uint8 tensor on the device,
  batches drawn by index with the task's generator;
* naive: a torch ``DataLoader`` (shuffled, default single process) over a ``Dataset`` that
  rasterizes each drawing with ``rasterize.render.render`` in ``__getitem__`` and converts it
  to a float tensor, as tutorials do.

Both run the same model, the same training step (``GanTask.train_step``) and the same batch
size on the same real drawings; only where the real batch comes from differs. Timed
alternately, best of a few rounds (``common.best_times``). Rates, the ratio and the
device go to ``benchmark.extra_info``, with the data path timed alone (milliseconds per real
batch both ways): on a CPU the convolutions dominate a step, so the end-to-end ratio is
bounded by 1 + naive data time / step time. Run: ``pytest benchmarks/bench_train.py``.
"""

from __future__ import annotations

import os

import pytest
import torch
from common import PER_CATEGORY, best_times, real_drawings, record

from rasterize.render import render
from sketchgen import runtime
from sketchgen.data import datasets as data
from sketchgen.models import registry
from sketchgen.models.gan.config import GanConfig
from sketchgen.models.gan.nets import size_supported
from sketchgen.models.gan.task import GanTask
from sketchgen.models.task import TaskInputs
from sketchgen.training.config import TrainConfig
from sketchgen.training.inputs import load_data

CATEGORIES = ("dog", "face")  # two of common.CATEGORIES, PER_CATEGORY drawings each
BATCH = 64  # the presets' batch size
STEPS = 3  # training steps per timed round
TARGET = 1.5  # issue 3: >= 1.5x the naive loop on CPU
# Every GAN at 28 px, and the strong default at 64 px too: all 13 (model, size)
# pairs take ~25 min on a 2-core CPU, too long for `tox -e bench`; set BENCH_ALL_SIZES=1 for them.
_SIZES = (28, 64) if os.environ.get("BENCH_ALL_SIZES") else (28,)
GANS = {name: entry.default_config() for name, entry in registry.MODELS.items()
        if isinstance(entry.default_config(), GanConfig)}
CASES = [(model, size) for model, gan in GANS.items() for size in _SIZES
         if size_supported(gan.architecture, size)]
if ("sngan", 64) not in CASES:
    CASES.append(("sngan", 64))
REPORT_CASE = ("dcgan", 28)  # the report's one GAN (tox -e bench): the fastest step, ~20 s


class RasterizingDataset(torch.utils.data.Dataset):
    """One drawing rendered and scaled per ``__getitem__``: the per-item work we avoid."""

    def __init__(self, drawings, labels, size: int, output: str) -> None:
        self.drawings, self.labels, self.size, self.output = drawings, labels, size, output

    def __len__(self) -> int:
        return len(self.drawings)

    def __getitem__(self, index: int):
        image = torch.from_numpy(render([self.drawings[index]], size=self.size)[0]).float()
        scaled = image / 127.5 - 1.0 if self.output == "tanh" else image / 255.0
        return scaled[None], int(self.labels[index])


class NaiveTask(GanTask):
    """The same GAN step, with real batches from a DataLoader instead of the device tensor."""

    def __init__(self, inputs: TaskInputs, loader: torch.utils.data.DataLoader) -> None:
        super().__init__(inputs)
        self.loader = loader
        self.batches = iter(loader)

    def _real_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            images, labels = next(self.batches)
        except StopIteration:  # a new epoch: reshuffle, as a DataLoader loop does
            self.batches = iter(self.loader)
            images, labels = next(self.batches)
        assert len(images) == n
        return images.to(self.device), labels.to(self.device)


@pytest.fixture(scope="module")
def drawings() -> data.LabelledDrawings:
    return real_drawings(CATEGORIES)


@pytest.mark.benchmark(group="train")
@pytest.mark.parametrize(("model", "size"), [
    pytest.param(*case, marks=pytest.mark.report) if case == REPORT_CASE else case
    for case in CASES])
def test_train_throughput_vs_naive_loop(benchmark, drawings, model, size):
    device = runtime.choose_device("auto")
    config = TrainConfig(model=model, categories=CATEGORIES, per_class=PER_CATEGORY, size=size,
                         batch_size=BATCH, device=str(device), progress=False)
    entry, model_config = registry.resolve(config)
    bitmaps, class_names = load_data(config, entry.kind, device)
    runtime.seed_everything(0)
    ours = entry.build(TaskInputs(config, model_config, class_names, device, bitmaps))
    real_batch = BATCH // 2 if model_config.d_update == "separate" else BATCH
    dataset = RasterizingDataset(drawings.drawings, drawings.labels, size, model_config.output)
    loader = torch.utils.data.DataLoader(dataset, batch_size=real_batch, shuffle=True,
                                         drop_last=True)
    runtime.seed_everything(0)
    naive = NaiveTask(TaskInputs(config, model_config, class_names, device, None), loader)

    def run(task):
        def steps():
            for step in range(1, STEPS + 1):
                task.train_step(step)
            if device.type == "cuda":
                torch.cuda.synchronize()
        return steps

    def real_batches(task):  # the data path alone: where the two loops differ
        return lambda: [task._real_batch(real_batch) for _ in range(STEPS)]

    run(ours)(), run(naive)()  # warm-up: allocator, first-call dispatch
    fast, slow = best_times(run(ours), run(naive), rounds=3)
    data_fast, data_slow = best_times(real_batches(ours), real_batches(naive), rounds=3)
    benchmark.pedantic(run(ours), rounds=1, iterations=1)
    images = STEPS * BATCH
    ratio = slow / fast
    record(benchmark, model=model, size=size, batch=BATCH, device=str(device),
           threads=torch.get_num_threads(), images_per_s=images / fast,
           naive_images_per_s=images / slow, speedup_vs_naive=ratio, target=TARGET,
           meets_target=ratio >= TARGET, data_ms_per_batch=1e3 * data_fast / STEPS,
           naive_data_ms_per_batch=1e3 * data_slow / STEPS,
           data_speedup_vs_naive=data_slow / data_fast)
