"""sketchgen.models.sketch_transformer: causality, Sketch-RNN's loss on the Transformer's
outputs, the key/value cache against recomputing, overfitting, exact resume through the
harness, and `sketchgen train` / `sketchgen sample`, on real drawings with small models."""

from __future__ import annotations

import copy
import json
from itertools import islice

import numpy as np
import pytest
import torch
from conftest import train_with_torchrun
from test_resume import assert_identical, final_state

from rasterize.ndjson_reader import read_ndjson
from rasterize.render import render
from rasterize.strokes import drawing_to_stroke3, normalize_splits
from sketchgen import cli, runtime
from sketchgen.data.datasets import LabelledDrawings, load_drawings
from sketchgen.errors import FieldError
from sketchgen.figures import read_jsonl
from sketchgen.models import registry
from sketchgen.models.sketch_rnn.batches import make_batch, random_batch
from sketchgen.models.sketch_rnn.config import SKETCH_RNN
from sketchgen.models.sketch_rnn.loss import kl_divergence, reconstruction_loss
from sketchgen.models.sketch_rnn.sampling import sample_strokes5
from sketchgen.models.sketch_transformer.config import SHARED, SketchTransformerConfig
from sketchgen.models.sketch_transformer.model import SketchTransformer
from sketchgen.models.sketch_transformer.task import build_sketch_transformer_task
from sketchgen.models.task import TaskInputs
from sketchgen.training.config import TrainConfig
from sketchgen.training.harness import train
from sketchgen.training.run_folder import CHECKPOINT

SMALL = dict(d_model=32, n_head=2, n_layer=2, num_mixture=5, enc_rnn_size=16,
             z_size=8)  # small enough to train in seconds, same architecture
MODES = ("class", "unconditional", "vae")
CATEGORIES = ("face", "cat")


@pytest.fixture(scope="module")
def sketches(mirror):
    drawings = list(islice(read_ndjson(mirror / "full" / "simplified" / "face.ndjson"), 60))
    return normalize_splits({"train": [drawing_to_stroke3(d) for d in drawings]}).splits["train"]


@pytest.fixture(scope="module")
def labelled(mirror):
    return load_drawings(list(CATEGORIES), per_class=20, mirror=mirror)


def _model(mode="class", cache=True, seed=0, **options):
    torch.manual_seed(seed)
    return SketchTransformer(SketchTransformerConfig(**(SMALL | options), mode=mode), 2, cache)


def _task(data, batch_size=8, seed=5, categories=CATEGORIES, **options):
    config = TrainConfig(model="sketch-transformer", categories=categories,
                         batch_size=batch_size, seed=seed, size=28)
    torch.manual_seed(seed)  # the harness seeds the global RNG before building a task
    return build_sketch_transformer_task(TaskInputs(
        config, SketchTransformerConfig(**(SMALL | options)), categories, torch.device("cpu"),
        data))


def test_shared_settings_are_sketch_rnns_and_checked_by_its_rules():
    config = SketchTransformerConfig()
    assert {name: getattr(config, name) for name in SHARED if name != "mode"} == {
        name: getattr(SKETCH_RNN, name) for name in SHARED if name != "mode"}
    assert {"max_seq_len", "num_mixture", "learning_rate", "kl_weight"} <= set(SHARED)
    assert config.mode == "class" and config.conditional
    short = SketchTransformerConfig(max_seq_len=100, sample_max_len=30)
    assert short.context == 102  # the first token, S0 and the 100 points of the longest sketch
    with pytest.raises(FieldError, match="test_fraction and valid_fraction must leave"):
        SketchTransformerConfig(valid_fraction=0.5, test_fraction=0.5)  # Sketch-RNN's rule
    with pytest.raises(FieldError, match=r"max_seq_len must be .*\[1, 10_000\]"):
        SketchTransformerConfig(max_seq_len=0)  # Sketch-RNN's range
    with pytest.raises(FieldError, match="d_model must be a multiple of n_head=3, got 32"):
        SketchTransformerConfig(d_model=32, n_head=3)
    with pytest.raises(FieldError, match="positions must be one of"):
        SketchTransformerConfig(positions="rotary")
    entry = registry.get_model("sketch-transformer")
    assert entry.kind == "strokes" and entry.default_config() == config
    with pytest.raises(FieldError, match=r"model_options.dropout must be .*\[0, 1\)"):
        entry.model_config({"dropout": 1.0})


@pytest.mark.parametrize("mode, positions", [("class", "learned"), ("unconditional", "sinusoidal"),
                                             ("vae", "learned")])
def test_a_later_row_never_changes_an_earlier_output(sketches, mode, positions):
    """The output at row t (the distribution of row t + 1) is a function of rows 0..t only:
    any change to a later row leaves it bit for bit, while it does change the outputs from
    that row on. In vae mode z is fixed (the encoder reads the whole sketch by design)."""
    model = _model(mode, positions=positions).eval()
    batch = make_batch(sketches[:3], np.array([0, 1, 1]), 90)
    z = torch.randn(3, model.config.z_size)

    def outputs(strokes5):
        return torch.cat(model.decoder(strokes5[:, :-1], model.condition(z, batch.labels)),
                         dim=-1)

    base = outputs(batch.strokes5)
    for row in (1, 17, 42):
        changed = batch.strokes5.clone()
        changed[:, row:] = torch.randn(changed[:, row:].shape)
        after = outputs(changed)
        assert torch.equal(after[:, :row], base[:, :row]), row
        assert not torch.isclose(after[:, row], base[:, row]).all(), row


@pytest.mark.parametrize("mode", MODES)
def test_the_loss_is_sketch_rnns_on_the_transformers_outputs(labelled, mode):
    """What a training step logs and minimises is Sketch-RNN's cost of the Transformer's
    outputs for the batch the step drew: row t's output scored against target row t + 1,
    the KL term with its tolerance in vae mode."""
    task = _task(labelled, mode=mode, dropout=0.0, kl_tolerance=0.0)
    generator = torch.Generator()
    generator.set_state(task.generator.get_state())  # the draws train_step is about to make
    before = copy.deepcopy(task.model).train()
    logged = task.train_step(1)

    batch = random_batch(task.data.sketches["train"], task.data.labels["train"], 8,
                         task.data.padded_length, task.cfg, generator)
    out = before(*batch, before.draw_noise(batch, generator))
    assert out.params.mu_x.shape == (8, task.data.padded_length, task.cfg.num_mixture)
    recon = reconstruction_loss(out.params, batch.strokes5[:, 1:])
    assert logged["loss_offset"] == pytest.approx(recon.offset.item(), rel=1e-6)
    assert logged["loss_pen"] == pytest.approx(recon.pen.item(), rel=1e-6)
    expected = recon.total
    if mode == "vae":
        kl = kl_divergence(out.mu, out.presig)
        assert logged["loss_kl"] == pytest.approx(kl.item(), rel=1e-5)
        expected = expected + logged["kl_weight"] * kl
    assert logged["loss"] == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_decoding_with_the_cache_reproduces_the_teacher_forced_outputs(sketches, mode):
    model = _model(mode).eval()
    batch = make_batch(sketches[:3], np.array([0, 1, 1]), 70)
    condition = model.condition(torch.randn(3, model.config.z_size), batch.labels)
    forced = model.decoder(batch.strokes5[:, :-1], condition)
    for cache in (True, False):
        model.decoder.cache = cache
        state = model.decoder.initial_state(condition, 3, batch.strokes5)
        fixed, step = model.decoder.stepper(condition, 3)
        for t in range(batch.strokes5.shape[1] - 1):
            stepped, state = step(batch.strokes5[:, t], fixed, state)
            for a, b in zip(stepped, forced, strict=True):
                torch.testing.assert_close(a, b[:, t], rtol=1e-5, atol=1e-5)
        assert len(state) == (1 + 2 * model.config.n_layer if cache else 1)


@pytest.mark.parametrize("mode, positions", [("class", "sinusoidal"),
                                             ("unconditional", "sinusoidal"), ("vae", "learned")])
def test_cached_and_recomputed_sampling_draw_the_same_sketches(mode, positions):
    """Sketch-RNN's sampler on the decoder with its cache and on the same weights recomputing
    the whole prefix every step: for a seed, the same sketches (the same lengths and pen
    states; offsets to float rounding of the two ways to attend). The decoder's weights are
    drawn wide, N(0, 0.2^2), so that each output depends clearly on the rows before (at
    GPT-2's 0.02 an untrained model barely looks at them), and the end state is made rarer
    so that sketches run long and leave the batch at different steps."""
    cached = _model(mode, positions=positions)
    with torch.no_grad():
        for layer in cached.decoder.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(std=0.2)
        cached.decoder.output.bias[2] = -3.0
    recomputing = _model(mode, positions=positions, cache=False)
    recomputing.load_state_dict(cached.state_dict())
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    draws = [sample_strokes5(model, 6, torch.Generator().manual_seed(3), 0.7, 60, labels=labels)
             for model in (cached, recomputing)]
    lengths = [len(sample) for sample in draws[0]]
    assert len(set(lengths)) > 2 and max(lengths) > 40, lengths
    for a, b in zip(*draws, strict=True):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a[:, 2:], b[:, 2:])
        np.testing.assert_allclose(a[:, :2], b[:, :2], rtol=1e-4, atol=1e-5)


def test_small_model_overfits_a_handful_of_real_drawings(sketches, mirror):
    """Six face drawings, all of them the training split, no augmentation or dropout: 120
    steps take Sketch-RNN's reconstruction cost L_R down by more than 3 nats per row, i.e.
    raise each row's likelihood e^3 = 20-fold. Measured with seeds 0, 1, 2 (lr 3e-3): 3.14
    -> -0.40, 3.17 -> -0.28, 3.10 -> -0.61."""
    drawings = list(islice(read_ndjson(mirror / "full" / "simplified" / "face.ndjson"), 6))
    few = LabelledDrawings(drawings, np.zeros(6, dtype=np.int64), ["face"])
    task = _task(few, batch_size=6, seed=0, categories=("face",), dropout=0.0,
                 learning_rate=3e-3, random_scale_factor=0.0, augment_stroke_prob=0.0,
                 valid_fraction=0.0, test_fraction=0.0)
    before = task.evaluate("train")["loss_recon"]
    history = [task.train_step(step)["loss_recon"] for step in range(1, 121)]
    after = task.evaluate("train")["loss_recon"]
    assert after < before - 3.0, (before, after)
    assert history[-1] < history[0] - 3.0


def test_task_samples_without_side_effects_and_from_a_checkpoint_alone(labelled):
    task = _task(labelled, dropout=0.1)
    task.train_step(1)
    state = copy.deepcopy(task.state_dict())
    labels = torch.tensor([0, 1, 1, 0])
    images = task.sample(4, labels, torch.Generator().manual_seed(9))
    assert task.model.training
    assert torch.equal(task.generator.get_state(), state["generator"])
    sampler = _task(None, dropout=0.1)
    sampler.load_state_dict(state)
    drawings = sampler.sample_drawings(4, labels, torch.Generator().manual_seed(9))
    assert [d.word for d in drawings] == ["face", "cat", "cat", "face"]
    assert images.dtype == torch.uint8 and images.shape == (4, 28, 28)
    np.testing.assert_array_equal(render(drawings, size=28), images.numpy())


def _run(out, steps, **options):
    return TrainConfig(model="sketch-transformer", categories=CATEGORIES, per_class=20,
                       steps=steps, batch_size=8, out=str(out), checkpoint_every=3,
                       sample_every=3, grad_norm_every=3, device="cpu", progress=False,
                       model_options=SMALL | {"eval_every": 2} | options)


@pytest.mark.parametrize("mode", ["class", "vae"])
def test_six_steps_equal_three_resume_three_through_the_harness(tmp_path, mode):
    """With dropout (torch's global generator, checkpointed by the harness), augmentation,
    and in vae mode the encoder's noise (the task's generator), validation every 2 steps."""
    train(_run(tmp_path / "straight", 6, mode=mode))
    train(_run(tmp_path / "resumed", 3, mode=mode))
    train(_run(tmp_path / "resumed", 6, mode=mode), resume=True)
    assert_identical(final_state(tmp_path / "straight"), final_state(tmp_path / "resumed"))
    logs = [read_jsonl(tmp_path / name / "log.jsonl") for name in ("straight", "resumed")]
    assert [r["step"] for r in logs[1]] == list(range(1, 7))
    assert [r["loss"] for r in logs[1]] == [r["loss"] for r in logs[0]]
    assert [r["step"] for r in logs[1] if "loss_recon_valid" in r] == [2, 4, 6]


def test_train_then_sample_writes_drawings_and_bitmaps(tmp_path):
    options = [arg for key, value in (SMALL | {"dropout": 0.1}).items()
               for arg in ("--set", f"{key}={value}")]
    run = tmp_path / "run"
    assert cli.main(["train", "sketch-transformer", "--categories", *CATEGORIES,
                     "--per-class", "20", "--steps", "2", "--batch-size", "8", "--device", "cpu",
                     "--no-progress", *options, "--out", str(run)]) == 0
    assert (run / CHECKPOINT).exists() and (run / "log.jsonl").exists()
    out = tmp_path / "samples.npy"
    assert cli.main(["sample", str(run), "--n", "6", "--seed", "1", "--device", "cpu",
                     "-o", str(out)]) == 0
    images = np.load(out)
    assert images.shape == (6, 28 * 28) and images.dtype == np.uint8
    drawings = list(read_ndjson(tmp_path / "samples.ndjson"))
    assert [d.word for d in drawings] == ["face", "cat"] * 3  # conditional: classes in turn
    np.testing.assert_array_equal(render(drawings, size=28).reshape(6, -1), images)
    assert json.loads((tmp_path / "samples.npy.json").read_text())["labels"] == [0, 1] * 3


def test_torchrun_on_two_cpu_processes_follows_the_single_process_run(tmp_path):
    """2 gloo ranks on half of the global batch each against one process on all of it
    (vae mode: the encoder's noise is drawn for the whole batch and split; no dropout, whose
    masks come from each process's own global generator). Tolerance as Sketch-RNN's test."""
    options = [arg for key, value in (SMALL | {"mode": "vae", "dropout": 0.0}).items()
               for arg in ("--set", f"{key}={value}")]
    common = ["sketch-transformer", "--categories", *CATEGORIES, "--per-class", "20",
              "--steps", "4", "--batch-size", "8", "--device", "cpu", "--no-progress", *options]
    train_with_torchrun([*common, "--out", str(tmp_path / "two")])
    assert cli.main(["train", *common, "--out", str(tmp_path / "one")]) == 0
    one, two = (runtime.load_checkpoint(tmp_path / name / CHECKPOINT)["task"]["model"]
                for name in ("one", "two"))
    for name, weight in one.items():
        assert torch.allclose(weight, two[name], rtol=0, atol=1e-5), name
