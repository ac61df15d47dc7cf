"""Sketch Transformer speed, each figure against its baseline in the same run.

* sampling: drawings/s of Sketch-RNN's sampler (``sketch_rnn.sampling.sample_strokes5``) on
  the decoder with its key/value cache -- one new position per step -- against the same
  weights recomputing the whole prefix at every step, at the default sizes (4 blocks of 256).
  Untrained weights would end sketches after a few points, so the end-of-sketch logit is
  biased down: every sketch runs to the cap (``SAMPLE_LEN`` points) and both sides do the
  same work. ``SAMPLE_BATCH`` sketches per step on both sides (the recomputing side at
  Sketch-RNN's benchmark batch of 100 would take minutes a round).
* training: sketches/s of a whole training step of the task (batch + augmentation,
  forward, backward, clip, Adam) at the default sizes and magenta's batch of 100, against
  Sketch-RNN's task at magenta's sizes, both in class mode on the same real face drawings
  (the benchmarks' common set) as ``sketchgen train`` prepares them.

One torch thread (a per-core figure, like the other benchmarks). Timings alternate between
the sides and keep each side's best round. Ratios go to ``benchmark.extra_info``.
Run: ``pytest benchmarks/bench_sketch_transformer.py``.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from common import best_times, real_drawings, record

from sketchgen import runtime
from sketchgen.models.sketch_rnn.config import SketchRNNConfig
from sketchgen.models.sketch_rnn.sampling import sample_strokes5
from sketchgen.models.sketch_rnn.task import build_sketch_rnn_task
from sketchgen.models.sketch_transformer.config import SKETCH_TRANSFORMER
from sketchgen.models.sketch_transformer.model import SketchTransformer
from sketchgen.models.sketch_transformer.task import build_sketch_transformer_task
from sketchgen.models.task import TaskInputs
from sketchgen.training.config import TrainConfig

CATEGORY = "face"  # the sketches: common.PER_CATEGORY simplified drawings of it
BATCH = 100  # magenta's batch size
SAMPLE_LEN = 100  # points per sampled sketch on both sides (issue 15: the target's length)
SAMPLE_BATCH = 25  # sketches per decoding step on both sides
SAMPLE_ROUNDS = 3  # the recomputing side takes ~8 s a round
TRAIN_ROUNDS = 3  # a step of ours takes ~5 s
TARGET = 5.0  # issue 15: the cache >= 5x recomputing the prefix at 100 points


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with runtime.torch_threads(1):
        yield


@pytest.mark.benchmark(group="sketch-transformer")
def test_sampling_with_the_cache_vs_recomputing_the_prefix(benchmark):
    torch.manual_seed(0)
    cached = SketchTransformer(SKETCH_TRANSFORMER, num_classes=1)
    with torch.no_grad():
        cached.decoder.output.bias[2] = -1e4  # never end: every sketch runs to SAMPLE_LEN
    recomputing = SketchTransformer(SKETCH_TRANSFORMER, num_classes=1, cache=False)
    recomputing.load_state_dict(cached.state_dict())
    labels = torch.zeros(SAMPLE_BATCH, dtype=torch.int64)

    def sampler(model):
        def draw():
            samples = sample_strokes5(model, SAMPLE_BATCH, torch.Generator().manual_seed(0),
                                      max_len=SAMPLE_LEN, labels=labels)
            assert all(len(s) == SAMPLE_LEN + 2 for s in samples)
        return draw

    fast, slow = best_times(sampler(cached), sampler(recomputing), rounds=SAMPLE_ROUNDS)
    benchmark.pedantic(sampler(cached), rounds=2, iterations=1)
    record(benchmark, points_per_sketch=SAMPLE_LEN, sketches_per_step=SAMPLE_BATCH, threads=1,
           drawings_per_s=SAMPLE_BATCH / fast, recomputing_drawings_per_s=SAMPLE_BATCH / slow,
           speedup_vs_recomputing=slow / fast, target=TARGET, meets_target=slow / fast >= TARGET)


def _stepper(build, name: str, model_config):
    """A closure taking the next training step of a task built as the harness builds it."""
    data = real_drawings([CATEGORY])
    config = TrainConfig(model=name, categories=(CATEGORY,), batch_size=BATCH, seed=0)
    torch.manual_seed(0)
    task = build(TaskInputs(config, model_config, (CATEGORY,), torch.device("cpu"), data))
    steps = itertools.count(1)
    return lambda: task.train_step(next(steps))


@pytest.mark.benchmark(group="sketch-transformer")
def test_training_throughput_vs_sketch_rnn(benchmark):
    ours = _stepper(build_sketch_transformer_task, "sketch-transformer", SKETCH_TRANSFORMER)
    lstm = _stepper(build_sketch_rnn_task, "sketch-rnn", SketchRNNConfig(mode="class"))
    ours_time, lstm_time = best_times(ours, lstm, rounds=TRAIN_ROUNDS)
    benchmark.pedantic(ours, rounds=2, iterations=1)
    record(benchmark, batch=BATCH, threads=1, sketches_per_s=BATCH / ours_time,
           sketch_rnn_sketches_per_s=BATCH / lstm_time, ratio_vs_sketch_rnn=lstm_time / ours_time)
