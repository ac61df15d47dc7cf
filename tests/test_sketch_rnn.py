"""sketchgen.models.sketch_rnn: the mixture loss, schedules, masking, cells, augmentation, training
and sampling of Sketch-RNN, on real drawings with small models."""

from __future__ import annotations

import dataclasses
import math
import sys
from itertools import islice

import numpy as np
import pytest
import torch
from conftest import train_with_torchrun
from PIL import Image

from rasterize.ndjson_reader import read_ndjson
from rasterize.render import render
from rasterize.sketch_npz import read_sketch_npz, write_sketch_npz
from rasterize.strokes import END_ROW, START_TOKEN, drawing_to_stroke3, normalize_splits
from sketchgen import cli, runtime
from sketchgen.data.datasets import load_drawings, split_indices
from sketchgen.errors import ConfigError
from sketchgen.figures import read_jsonl, save_grid
from sketchgen.models.sketch_rnn.batches import (
    drop_points,
    make_batch,
    padded_length_for,
    random_batch,
)
from sketchgen.models.sketch_rnn.cells import FusedLSTM, StepLSTM
from sketchgen.models.sketch_rnn.config import SketchRNNConfig, kl_weight_at, learning_rate_at
from sketchgen.models.sketch_rnn.loss import (
    kl_cost,
    kl_divergence,
    loss_terms,
    reconstruction_loss,
)
from sketchgen.models.sketch_rnn.model import MixtureParams, SketchRNN
from sketchgen.models.sketch_rnn.sampling import (
    encode_means,
    interpolate,
    reconstruct,
    sample_step,
    sample_strokes5,
    slerp,
    strokes5_to_drawings,
)
from sketchgen.models.sketch_rnn.task import build_sketch_rnn_task
from sketchgen.models.task import TaskInputs
from sketchgen.runtime import load_checkpoint, save_checkpoint
from sketchgen.training.config import TrainConfig

SMALL = dict(enc_rnn_size=24, dec_rnn_size=48, z_size=8, class_embedding_size=8,
             num_mixture=5)  # small enough to train in seconds, same architecture


@pytest.fixture(scope="module")
def sketches(mirror):
    drawings = list(islice(read_ndjson(mirror / "full" / "simplified" / "face.ndjson"), 60))
    return normalize_splits({"train": [drawing_to_stroke3(d) for d in drawings]})


def _params(values: dict[str, list[float]]) -> MixtureParams:
    """A one-step, one-sketch MixtureParams from per-field lists."""
    return MixtureParams(*(torch.tensor([[values[f]]], dtype=torch.float64)
                           for f in MixtureParams._fields))


def test_mixture_nll_equals_hand_computation():
    # pi = (1/4, 3/4); component 0: mean 0, unit sigmas, rho 0;
    # component 1: mean (1, -1), sigmas (2, 1/2), rho 1/2. Target offset (0.5, -0.5).
    params = _params({
        "pen_logits": [0.0, 0.0, 0.0], "pi_logits": [0.0, math.log(3.0)],
        "mu_x": [0.0, 1.0], "mu_y": [0.0, -1.0],
        "log_sigma_x": [0.0, math.log(2.0)], "log_sigma_y": [0.0, math.log(0.5)],
        "rho_pre": [0.0, math.atanh(0.5)],
    })
    # N0 = exp(-(0.5^2 + 0.5^2) / 2) / (2 pi)
    n0 = math.exp(-0.25) / (2 * math.pi)
    # N1: normalised offsets (-0.25, 1); Z = 0.0625 + 1 + 0.25 = 1.3125; 1 - rho^2 = 0.75
    n1 = math.exp(-1.3125 / 1.5) / (2 * math.pi * 2.0 * 0.5 * math.sqrt(0.75))
    expected_nll = -math.log(0.25 * n0 + 0.75 * n1)
    target = torch.tensor([[[0.5, -0.5, 1.0, 0.0, 0.0]]], dtype=torch.float64)
    loss = reconstruction_loss(params, target)
    assert loss.offset.item() == pytest.approx(expected_nll, rel=1e-12)
    assert loss.pen.item() == pytest.approx(math.log(3.0), rel=1e-12)  # uniform pen logits


def test_kl_divergence_and_schedules_at_given_steps():
    mu = torch.tensor([[1.0, 0.0]])
    presig = torch.tensor([[0.0, math.log(4.0)]])
    # per dimension: -(1 + presig - mu^2 - exp(presig)) / 2 = 0.5 and (4 - 1 - ln 4) / 2
    expected = (0.5 + (3.0 - math.log(4.0)) / 2) / 2
    assert kl_divergence(mu, presig).item() == pytest.approx(expected, rel=1e-6)

    config = SketchRNNConfig()
    assert kl_weight_at(config, 0) == pytest.approx(0.01)
    assert kl_weight_at(config, 1) == pytest.approx(0.5 - 0.49 * 0.99995)
    # 0.99995^20000 = exp(20000 ln 0.99995) ~ exp(-1.000025) = 0.36787: w = 0.5 - 0.49 * 0.36787
    assert kl_weight_at(config, 20000) == pytest.approx(0.31974, abs=1e-5)
    assert kl_weight_at(config, 10**6) == pytest.approx(0.5)
    assert learning_rate_at(config, 0) == pytest.approx(1e-3)
    assert learning_rate_at(config, 10000) == pytest.approx(1e-5 + 0.99e-3 * 0.9999**10000)
    assert learning_rate_at(config, 10**6) == pytest.approx(1e-5)


def test_kl_tolerance_is_decided_on_the_whole_batch_kl():
    """Two data-parallel shards of one batch: the mean of their costs and of their gradients
    must be the batch's max(KL, 0.2) and its gradient, whatever each shard's KL alone."""
    for shard_kls, batch_cost, batch_grad in (([0.1, 0.4], 0.25, 1.0),   # batch above 0.2
                                              ([0.1, 0.25], 0.2, 0.0)):  # batch below 0.2
        kls = torch.tensor(shard_kls, requires_grad=True)
        batch_kl = kls.detach().mean()
        costs = torch.stack([kl_cost(kl, 0.2, batch_kl) for kl in kls])
        costs.mean().backward()
        assert costs.mean().item() == pytest.approx(batch_cost)
        assert kls.grad.tolist() == pytest.approx([batch_grad / 2] * 2)
    # one process: plain max(KL, tolerance); per-shard clamping would give 0.225 above
    assert kl_cost(torch.tensor(0.25), 0.2).item() == pytest.approx(0.25)
    assert kl_cost(torch.tensor(0.1), 0.2).item() == pytest.approx(0.2)


def test_shards_of_a_batch_reproduce_its_loss_and_gradient(sketches):
    """What each torchrun rank computes, done here in one process: the batch's noise drawn
    once and split by rows, each half through the model (the encoder reads only as far as
    its own longest sketch, so the halves use different prefixes of the masks), the KL
    tolerance decided on the whole batch. The tolerance sits between the smaller half's KL
    and the batch's, where deciding per half would drop that half's KL gradient."""
    config = SketchRNNConfig(**SMALL, enc_model="layer_norm", dec_model="layer_norm",
                             use_recurrent_dropout=True)
    model = SketchRNN(config)
    with torch.no_grad():  # spread mu so that the halves' KLs differ clearly
        torch.nn.init.normal_(model.encoder.mu.weight, std=0.5)
    train = sketches.splits["train"]
    batch = random_batch(train, np.zeros(len(train)), 8, padded_length_for(train), config,
                         torch.Generator().manual_seed(1))
    noise = model.draw_noise(batch, torch.Generator().manual_seed(2))
    assert all(t is not None for t in noise)
    halves = [(type(batch)(*(t[rows] for t in batch)), noise.map(lambda t, r=rows: t[r]))
              for rows in (slice(0, 4), slice(4, 8))]
    assert len({int(half.lengths.max()) for half, _ in halves}) == 2
    step = 10**6  # KL weight 0.5: the KL term matters

    def kl_of(part, part_noise):
        return loss_terms(model, part, step, part_noise).kl.detach()

    kl_whole, smaller = kl_of(batch, noise), min(kl_of(*half) for half in halves)
    model.config = dataclasses.replace(config, kl_tolerance=float(smaller + kl_whole) / 2)

    def loss_and_grads(part, part_noise, mean_over_ranks=None):
        model.zero_grad()
        loss = loss_terms(model, part, step, part_noise, mean_over_ranks).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    whole_loss, whole_grads = loss_and_grads(batch, noise)

    def mean_of_halves(mean_over_ranks):
        results = [loss_and_grads(*half, mean_over_ranks) for half in halves]
        grads = [(a + b) / 2 for a, b in zip(results[0][1], results[1][1], strict=True)]
        return (results[0][0] + results[1][0]).item() / 2, grads

    loss, grads = mean_of_halves(lambda kl: kl_whole)
    assert loss == pytest.approx(whole_loss.item(), rel=1e-5)
    for mean, whole in zip(grads, whole_grads, strict=True):
        torch.testing.assert_close(mean, whole, rtol=1e-4, atol=1e-6)
    _, per_half = mean_of_halves(None)  # each half deciding alone: not the batch's gradient
    assert not all(torch.allclose(mean, whole, rtol=1e-4, atol=1e-6)
                   for mean, whole in zip(per_half, whole_grads, strict=True))


def test_a_batch_that_does_not_split_over_the_ranks_is_refused(labelled, monkeypatch):
    """Fewer training sketches (45) than batch_size: the batch drawn is all 45, which does
    not split over 2 ranks; refused when the task is built, not at the first step."""
    monkeypatch.setattr(runtime, "world", lambda: (0, 2))
    with pytest.raises(ConfigError, match="a batch of 45 training sketches"):
        _task(labelled, batch_size=64)
    assert _task(labelled, batch_size=8).data is not None


def test_torchrun_on_two_cpu_processes_follows_the_single_process_run(tmp_path):
    """2 gloo ranks on half of the global batch each against one process on all of it, with
    everything random in play: augmentation, VAE noise and recurrent-dropout masks
    (layer-norm cells), validation every 3 steps. Tolerance 1e-5 on every weight: one Adam
    step moves a weight by up to lr = 1e-3, so a wrong shard or a missing average shows as
    ~1e-4 or more, while float32 summation order alone stays far below 1e-5."""
    options = ["enc_rnn_size=16", "dec_rnn_size=32", "z_size=8", "num_mixture=3",
               "enc_model=layer_norm", "dec_model=layer_norm", "use_recurrent_dropout=true",
               "eval_every=3"]
    common = ["sketch-rnn", "--categories", "face", "cat", "--per-class", "25", "--steps", "6",
              "--batch-size", "8", "--checkpoint-every", "3", "--device", "cpu",
              "--no-progress", *(arg for option in options for arg in ("--set", option))]
    train_with_torchrun([*common, "--out", str(tmp_path / "two")])
    assert cli.main(["train", *common, "--out", str(tmp_path / "one")]) == 0
    one, two = (runtime.load_checkpoint(tmp_path / name / "checkpoint.pt")["task"]["model"]
                for name in ("one", "two"))
    assert one.keys() == two.keys()
    for name, weight in one.items():
        assert torch.allclose(weight, two[name], rtol=0, atol=1e-5), name
    logs = [read_jsonl(tmp_path / name / "log.jsonl") for name in ("one", "two")]
    assert [r["step"] for r in logs[1]] == list(range(1, 7))  # one writer: rank 0
    assert [r["step"] for r in logs[1] if "loss_recon_valid" in r] == [3, 6]
    for key in ("loss", "loss_kl", "loss_recon_valid"):  # KL ~1e-4 this early: abs too
        values = [[r[key] for r in log if key in r] for log in logs]
        assert values[1] == pytest.approx(values[0], rel=1e-5, abs=1e-8), key


def test_offsets_after_the_end_are_masked_but_pen_states_are_not(sketches):
    batch = make_batch(sketches.splits["train"][:4], np.zeros(4), 120)
    targets = batch.strokes5[:, 1:].double()
    generator = torch.Generator().manual_seed(0)
    raw = torch.randn((*targets.shape[:2], 3 + 6 * 3), generator=generator, dtype=torch.float64)
    params = MixtureParams.split(raw, 3)
    base = reconstruction_loss(params, targets)
    padded = targets[..., 4] == 1
    assert padded.any()

    moved = targets.clone()
    moved[padded, :2] = 100.0  # garbage offsets on the end rows change nothing
    assert torch.equal(reconstruction_loss(params, moved).offset, base.offset)
    assert torch.equal(reconstruction_loss(params, moved).pen, base.pen)

    real = targets.clone()
    real[0, 0, 0] += 1.0  # a real offset does count
    assert reconstruction_loss(params, real).offset != base.offset

    pen = targets.clone()
    pen[padded, 2:] = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)  # pen runs to N
    assert reconstruction_loss(params, pen).pen != base.pen


def test_evaluation_mode_masks_the_pen_term_after_the_end():
    """magenta's evaluation mode: the pen cross-entropy of the real points only, still / N.
    2 points and 2 end rows; uniform pen logits cost ln 3 a row: ln 3 unmasked, 2 ln 3 / 4."""
    params = MixtureParams.split(torch.zeros(1, 4, 3 + 6), 1)
    targets = torch.tensor([[[0.5, 0.0, 1, 0, 0], [0.0, 0.5, 0, 1, 0],
                             [0, 0, 0, 0, 1], [0, 0, 0, 0, 1]]])
    loss = reconstruction_loss(params, targets)
    assert loss.pen.item() == pytest.approx(math.log(3.0))
    assert loss.pen_masked.item() == pytest.approx(math.log(3.0) / 2)
    assert loss.masked_total.item() == pytest.approx(loss.offset.item() + math.log(3.0) / 2)


def test_encoder_ignores_padding_and_decoder_is_causal(sketches):
    config = SketchRNNConfig(**SMALL)
    model = SketchRNN(config).eval()
    batch = make_batch(sketches.splits["train"][:3], np.zeros(3), 100)
    noisy = batch.strokes5.clone()
    for i, n in enumerate(batch.lengths.tolist()):
        noisy[i, n + 1 :] = torch.randn(noisy[i, n + 1 :].shape)
    mu, presig = model.encoder(batch.strokes5[:, 1:], batch.lengths)
    mu2, presig2 = model.encoder(noisy[:, 1:], batch.lengths)
    torch.testing.assert_close(mu, mu2, rtol=0, atol=0)
    torch.testing.assert_close(presig, presig2, rtol=0, atol=0)
    # reading a sketch alone or inside a batch (read in length buckets) gives the same code
    many = sketches.splits["train"][:35]
    big = make_batch(many, np.zeros(35), padded_length_for(many))
    mu_many, _ = model.encoder(big.strokes5[:, 1:], big.lengths)
    for i in (0, 7, 21, 34):
        alone = make_batch(many[i : i + 1], np.zeros(1), len(many[i]) + 1)
        mu_alone, _ = model.encoder(alone.strokes5[:, 1:], alone.lengths)
        torch.testing.assert_close(mu_alone[0], mu_many[i], rtol=1e-5, atol=1e-6)


def test_step_cell_without_extras_equals_fused_lstm():
    torch.manual_seed(0)
    fused = FusedLSTM(7, 16)
    step = StepLSTM(7, 16, layer_norm=False, keep_prob=1.0)
    lstm = fused.lstm
    with torch.no_grad():
        step.weight_ih.copy_(lstm.weight_ih_l0)
        step.weight_hh.copy_(lstm.weight_hh_l0)
        # StepLSTM adds the constant forget bias itself
        bias = lstm.bias_ih_l0 + lstm.bias_hh_l0
        bias[16:32] -= 1.0
        step.bias.copy_(bias)
    x = torch.randn(3, 11, 7)
    state = (torch.randn(3, 16), torch.randn(3, 16))
    out_f, (h_f, c_f) = fused(x, state)
    out_s, (h_s, c_s) = step(x, state)
    torch.testing.assert_close(out_s, out_f)
    torch.testing.assert_close(c_s, c_f)


@pytest.mark.parametrize("mode, cell", [("vae", "lstm"), ("class", "layer_norm"),
                                         ("unconditional", "lstm")])
def test_sampling_steps_equal_the_teacher_forced_decoder(sketches, mode, cell):
    config = SketchRNNConfig(**SMALL, mode=mode, dec_model=cell, use_recurrent_dropout=True)
    torch.manual_seed(0)
    model = SketchRNN(config, num_classes=2).eval()
    batch = make_batch(sketches.splits["train"][:3], np.array([0, 1, 1]), 90)
    condition = model.condition(torch.randn(3, config.z_size), batch.labels)
    state = model.decoder.initial_state(condition, 3, batch.strokes5)
    params, _ = model.decoder(batch.strokes5[:, :-1], condition, state)
    fixed, step = model.decoder.stepper(condition, 3)
    for t in range(batch.strokes5.shape[1] - 1):
        stepped, state = step(batch.strokes5[:, t], fixed, state)
        for a, b in zip(stepped, params, strict=True):
            torch.testing.assert_close(a, b[:, t], rtol=1e-4, atol=1e-5)


def _magenta_augment_loop(stroke3, uniform, prob):
    """magenta's augment_strokes, step by step, with given uniforms (the reference)."""
    result, prev, count = [], [0, 0, 1], 0
    for i, row in enumerate(stroke3):
        candidate = [row[0], row[1], row[2]]
        count = 0 if (candidate[2] == 1 or prev[2] == 1) else count + 1
        if candidate[2] == 0 and prev[2] == 0 and count > 2 and uniform[i] < prob:
            result[-1][0] += candidate[0]
            result[-1][1] += candidate[1]
        else:
            prev = candidate
            result.append(candidate)
    return np.array(result)


def test_point_dropping_matches_magenta_semantics(sketches):
    rng = np.random.default_rng(0)
    dropped = 0
    for sketch in sketches.splits["train"]:
        sketch = sketch.astype(np.float64)
        uniform = rng.random(len(sketch))
        ours = drop_points(sketch, uniform, 0.3)
        np.testing.assert_allclose(ours, _magenta_augment_loop(sketch, uniform, 0.3))
        np.testing.assert_allclose(ours[:, :2].sum(0), sketch[:, :2].sum(0))  # same end point
        dropped += len(sketch) - len(ours)
    assert dropped > 0


def _train(config, sketches, labels, steps, seed=0):
    torch.manual_seed(seed)
    model = SketchRNN(config, num_classes=int(labels.max()) + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    length = padded_length_for(sketches)
    history = []
    for step in range(steps):
        batch = random_batch(sketches, labels, len(sketches), length, config, generator)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(config, step)
        optimizer.zero_grad()
        terms = loss_terms(model, batch, step, generator)
        terms.loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), config.grad_clip)
        optimizer.step()
        history.append((terms.offset + terms.pen).item())
    return model, history


def _eval_reconstruction(model, sketches, labels):
    batch = make_batch(sketches, labels, padded_length_for(sketches))
    with torch.no_grad():
        model.eval()
        terms = loss_terms(model, batch, 0, torch.Generator().manual_seed(123))
        model.train()
    return float(terms.offset + terms.pen)


def test_small_model_overfits_a_handful_of_real_drawings(sketches):
    few = sketches.splits["train"][:6]
    labels = np.zeros(len(few), dtype=np.int64)
    config = SketchRNNConfig(**SMALL, learning_rate=1e-2, random_scale_factor=0.0,
                             augment_stroke_prob=0.0)
    model, history = _train(config, few, labels, steps=120, seed=0)
    torch.manual_seed(0)
    before = _eval_reconstruction(SketchRNN(config), few, labels)  # the same initial weights
    after = _eval_reconstruction(model, few, labels)
    # measured with seeds 0, 1, 2: 3.18 -> 0.02, 3.28 -> -0.34, 3.18 -> -0.33 (L_R, nats/row)
    assert after < before - 2.5, (before, after)
    assert history[-1] < history[0] - 2.5


@pytest.mark.parametrize("mode", ["vae", "unconditional", "class"])
def test_samples_are_finite_end_and_rasterize(mode):
    config = SketchRNNConfig(**SMALL, mode=mode)
    torch.manual_seed(0)
    model = SketchRNN(config, num_classes=3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    samples = sample_strokes5(model, 8, torch.Generator().manual_seed(0), temperature=0.8,
                              max_len=40, labels=labels)
    assert len(samples) == 8
    for sample in samples:
        assert np.isfinite(sample).all() and sample.dtype == np.float32
        np.testing.assert_array_equal(sample[0], START_TOKEN)
        np.testing.assert_array_equal(sample[-1], END_ROW)
        assert 3 <= len(sample) <= 42  # at least one point; at most the cap, then the end row
        pens = sample[1:-1, 2:]
        np.testing.assert_array_equal(pens.sum(axis=1), 1)
        assert not pens[:, 2].any()  # the end state appears only in the last row
    drawings = strokes5_to_drawings(samples, words=["face"] * 8)
    images = render(drawings, size=28)
    assert images.shape == (8, 28, 28) and images.dtype == np.uint8
    assert (images.reshape(8, -1).max(axis=1) > 0).all()
    for drawing in drawings:
        points = drawing.points()
        assert points.min() >= 0 and points.max() <= 255
        np.testing.assert_array_equal(points, np.round(points))


def _one_gaussian(n: int) -> MixtureParams:
    """n rows of one component: mean (1, -2), sigmas (2, 1/2), rho 0.6; uniform pen logits."""
    def full(value):
        return torch.full((n, 1), value)
    return MixtureParams(torch.zeros(n, 3), full(0.0), full(1.0),
                         full(-2.0), full(math.log(2.0)), full(math.log(0.5)),
                         full(math.atanh(0.6)))


@pytest.mark.parametrize("rule, sigmas", [("paper", (1.0, 0.25)),     # sigma * sqrt(0.25)
                                          ("magenta", (0.5, 0.125))])  # sigma * 0.25
def test_temperature_scales_the_sigmas_by_its_rule(rule, sigmas):
    """T = 0.25 on sigmas (2, 1/2): the paper's rule (covariance x T) samples offsets with
    standard deviations (1, 1/4), magenta's code (sigma x T) with (1/2, 1/8); the mean and
    the correlation stay; the logits are divided by T under both rules."""
    n = 40_000
    rows = sample_step(_one_gaussian(n), 0.25, torch.Generator().manual_seed(0),
                       allow_end=False, temperature_rule=rule)
    offsets = rows[:, :2].numpy()
    np.testing.assert_allclose(offsets.std(axis=0), sigmas, rtol=0.02)
    np.testing.assert_allclose(offsets.mean(axis=0), [1.0, -2.0], atol=0.02)
    assert np.corrcoef(offsets.T)[0, 1] == pytest.approx(0.6, abs=0.02)
    # the same draws under both rules: offsets from the mean differ by exactly sqrt(T) / T = 2
    paper, magenta = (sample_step(_one_gaussian(5), 0.25, torch.Generator().manual_seed(1),
                                  allow_end=False, temperature_rule=r)[:, :2]
                      - torch.tensor([1.0, -2.0])
                      for r in ("paper", "magenta"))
    torch.testing.assert_close(paper, 2.0 * magenta)
    assert SketchRNNConfig().temperature_rule == "paper"  # the default is unchanged
    with pytest.raises(ConfigError, match="temperature_rule must be one of"):
        SketchRNNConfig(temperature_rule="sqrt")


def test_same_seed_same_numbers_on_cpu(sketches):
    few = sketches.splits["train"][:8]
    labels = np.zeros(len(few), dtype=np.int64)
    config = SketchRNNConfig(**SMALL, enc_model="layer_norm", dec_model="layer_norm",
                             use_recurrent_dropout=True)
    runs = [_train(config, few, labels, steps=3, seed=7) for _ in range(2)]
    assert runs[0][1] == runs[1][1]
    for a, b in zip(runs[0][0].parameters(), runs[1][0].parameters(), strict=True):
        assert torch.equal(a, b)
    draws = [sample_strokes5(runs[0][0], 4, torch.Generator().manual_seed(3), max_len=30)
             for _ in range(2)]
    for a, b in zip(*draws, strict=True):
        np.testing.assert_array_equal(a, b)
    other = _train(config, few, labels, steps=3, seed=8)[1]
    assert other != runs[0][1]


def test_reconstruction_and_interpolation_decode_codes(sketches):
    config = SketchRNNConfig(**SMALL)
    torch.manual_seed(0)
    model = SketchRNN(config)
    pair = sketches.splits["train"][:2]
    recon = reconstruct(model, pair, torch.Generator().manual_seed(0), max_len=30)
    path = interpolate(model, pair[0], pair[1], 5, torch.Generator().manual_seed(0), max_len=30)
    assert len(recon) == 2 and len(path) == 5
    assert all(np.array_equal(s[-1], END_ROW) for s in recon + path)
    codes = encode_means(model, pair)
    ends = slerp(codes[0], codes[1], torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(ends[[0, 2]], codes)
    torch.testing.assert_close(ends[1].norm(), codes.norm(dim=1).mean(), rtol=0.5, atol=0)
    # a reconstruction decodes mu: the same draws from z = mu give the same sketches
    again = sample_strokes5(model, 2, torch.Generator().manual_seed(0), 0.2, 30, z=codes)
    for a, b in zip(recon, again, strict=True):
        np.testing.assert_array_equal(a, b)


# -- the harness task ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled(mirror):
    return load_drawings(["face", "cat"], per_class=25, mirror=mirror)


def _task(labelled, data=True, batch_size=8, **options):
    config = TrainConfig(model="sketch-rnn", categories=("face", "cat"), batch_size=batch_size,
                         seed=5, size=28)
    model = SketchRNNConfig(**(SMALL | options))
    torch.manual_seed(0)  # the harness seeds the global RNG before building a task
    return build_sketch_rnn_task(TaskInputs(config, model, tuple(labelled.class_names),
                                            torch.device("cpu"), labelled if data else None))


def test_task_splits_by_seed_and_normalises_by_train_std(labelled):
    task = _task(labelled)
    data = task.data
    train, valid, test = split_indices(50, 5, (0.9, 0.05, 0.05))
    assert [len(data.sketches[s]) for s in ("train", "valid", "test")] == [45, 3, 2]
    assert [len(train), len(valid), len(test)] == [45, 3, 2]  # none over max_seq_len
    np.testing.assert_array_equal(data.labels["test"], labelled.labels[test])
    raw_train = [drawing_to_stroke3(labelled.drawings[i]) for i in train]
    assert data.scale_factor == pytest.approx(
        np.std(np.concatenate([s[:, :2].ravel() for s in raw_train])))
    np.testing.assert_allclose(data.sketches["valid"][0][:, :2],
                               drawing_to_stroke3(labelled.drawings[valid[0]])[:, :2]
                               / data.scale_factor, rtol=1e-6)
    # one row per point after the first (a lone first point adds one): one end row more
    assert data.padded_length == max(len(drawing_to_stroke3(d)) for d in labelled.drawings) + 1


def test_google_npz_splits_are_kept_and_the_mirror_file_is_split_by_seed(mirror, tmp_path):
    """A file in Google's layout trains, validates and tests on its own splits (in file
    order), not on a re-split of their union; the mirror's one-split file is split by seed."""
    sketches = read_sketch_npz(mirror / "sketchrnn" / "face.npz")["sketches"]
    google = tmp_path / "face.npz"
    write_sketch_npz(google, {"train": sketches[:40], "valid": sketches[40:46],
                              "test": sketches[46:50]})
    loaded = load_drawings([google])
    assert {k: v.tolist() for k, v in loaded.splits.items()} == {
        "train": list(range(40)), "valid": list(range(40, 46)), "test": list(range(46, 50))}
    task = _task(loaded)
    scale = task.data.scale_factor
    for split, rows in (("train", slice(0, 40)), ("valid", slice(40, 46)), ("test", slice(46, 50))):
        assert len(task.data.sketches[split]) == rows.stop - rows.start
        for ours, theirs in zip(task.data.sketches[split], sketches[rows], strict=True):
            np.testing.assert_allclose(ours[:, :2] * scale, theirs[:, :2], rtol=1e-5)
    assert "the files' splits" in task.summary()

    mirror_file = load_drawings([mirror / "sketchrnn" / "face.npz"], per_class=50)
    assert mirror_file.splits is None  # Google's test split alone: not a train/valid/test
    assert [len(_task(mirror_file).data.sketches[s]) for s in ("train", "valid", "test")] == [
        45, 3, 2]


def test_task_resumes_exactly_and_samples_without_side_effects(labelled, tmp_path):
    options = dict(enc_model="layer_norm", dec_model="layer_norm", use_recurrent_dropout=True,
                   mode="class")
    straight = _task(labelled, **options)
    for step in (1, 2, 3, 4):
        straight.train_step(step)

    first = _task(labelled, **options)
    for step in (1, 2):
        first.train_step(step)
    save_checkpoint(first.state_dict(), tmp_path / "task.pt")
    labels = torch.tensor([0, 1, 1, 0])
    before = first.sample(4, labels, torch.Generator().manual_seed(9))  # must change nothing
    resumed = _task(labelled, **options)
    resumed.load_state_dict(load_checkpoint(tmp_path / "task.pt"))
    for step in (3, 4):
        metrics = resumed.train_step(step)
    assert set(metrics) >= {"loss", "loss_recon", "loss_offset", "loss_pen", "kl_weight", "lr"}
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)

    # sampling: a task rebuilt without data samples the same images, equal to its drawings
    sampler = _task(labelled, data=False, **options)
    sampler.load_state_dict(load_checkpoint(tmp_path / "task.pt"))
    again = sampler.sample(4, labels, torch.Generator().manual_seed(9))
    assert before.dtype == torch.uint8 and before.shape == (4, 28, 28)
    assert torch.equal(before, again)
    drawings = sampler.sample_drawings(4, labels, torch.Generator().manual_seed(9))
    assert [d.word for d in drawings] == ["face", "cat", "cat", "face"]
    np.testing.assert_array_equal(render(drawings, size=28), before.numpy())
    assert sampler.model.training


def test_task_figures_and_validation_cost(labelled):
    task = _task(labelled)
    originals, decoded = task.reconstruction_drawings(2, torch.Generator().manual_seed(0))
    assert len(originals) == len(decoded) == 2
    assert len(task.interpolation_drawings(4, torch.Generator().manual_seed(0))) == 4
    costs = task.evaluate("valid")
    assert costs == task.evaluate("valid")  # its own noise: same weights, same numbers
    assert set(costs) == {"loss_recon", "loss_recon_masked", "loss_kl"}
    assert all(np.isfinite(list(costs.values())))
    assert costs["loss_recon_masked"] < costs["loss_recon"]  # fewer pen terms, each >= 0


def test_test_costs_are_logged_at_each_new_best_validation(labelled):
    """magenta's protocol: the test split is evaluated when (and only when) the validation
    objective improves, so a log's last test costs are those of its best-validation step."""
    task = _task(labelled, eval_every=2)
    assert not any(key.endswith(("_valid", "_test")) for key in task.train_step(1))
    first = task.train_step(2)  # the first validation is the best so far
    valid = {key.removesuffix("_valid"): v for key, v in first.items() if key.endswith("_valid")}
    assert set(valid) == {"loss_recon", "loss_recon_masked", "loss_kl"}
    assert task.best_valid == task.validation_cost(valid) == pytest.approx(
        valid["loss_recon"] + 0.5 * max(valid["loss_kl"], 0.2))  # magenta's w_KL, tolerance
    test = {key.removesuffix("_test"): v for key, v in first.items() if key.endswith("_test")}
    assert test == task.evaluate("test")  # the weights of step 2
    task.train_step(3)
    second = task.train_step(4)
    cost = task.validation_cost({"loss_recon": second["loss_recon_valid"],
                                 "loss_kl": second["loss_kl_valid"]})
    assert ("loss_recon_test" in second) == (cost < task.validation_cost(valid))
    task.best_valid = -math.inf  # nothing can beat it: no test costs
    task.train_step(5)
    assert "loss_recon_test" not in task.train_step(6)
    resumed = _task(labelled, eval_every=2)
    resumed.load_state_dict(task.state_dict())
    assert resumed.best_valid == -math.inf


def test_task_figures_are_reconstruction_and_interpolation_grids(labelled, tmp_path):
    task = _task(labelled)
    figures = task.figures(count=2)  # the test split holds 2 sketches
    for name, (images, columns) in figures.items():  # as the harness writes them
        save_grid(images, tmp_path / name, columns)
    grids = {name: np.asarray(Image.open(tmp_path / f"{name}.png"))
             for name in ("reconstructions", "interpolation")}
    # 2 columns; reconstructions: originals over decodings (2 rows), interpolation: 1 row
    assert grids["reconstructions"].shape[0] > grids["interpolation"].shape[0]
    assert all(grid.max() > 0 for grid in grids.values())  # ink was drawn
    unconditional = _task(labelled, mode="unconditional")
    assert unconditional.figures() == {}  # no encoder: nothing to reconstruct


def test_task_prints_nothing_and_summarises_its_data(labelled, capfd):
    task = _task(labelled)
    task.train_step(1)
    task.figures(count=2)
    assert capfd.readouterr() == ("", "")  # the harness does all output
    assert task.summary().startswith("45 train / 3 valid / 2 test sketches; dropped 0 / 0 / 0 "
                                     "over max_seq_len; scale factor ")


@pytest.mark.parametrize("name", ["mirror", "google"])
def test_table1_configs_give_a_valid_run_per_row(name, tmp_path, monkeypatch):
    """reproductions/sketch-rnn: each row of both sweeps is a run the registry accepts, with
    the row's mode and w_KL over the shared settings (the Google one is never run here)."""
    import importlib.util
    from pathlib import Path

    from sketchgen.config import from_mapping, from_toml
    from sketchgen.models.registry import resolve

    folder = Path(__file__).resolve().parents[1] / "reproductions" / "sketch-rnn"
    spec = importlib.util.spec_from_file_location("table1", folder / "run.py")
    table1 = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "table1", table1)  # dataclasses look their module up
    spec.loader.exec_module(table1)
    table = from_toml(folder / f"{name}.toml", lambda t: from_mapping(table1.Table1, t))
    rows = table.rows()
    assert [mode for _, mode, _ in rows] == ["unconditional", "vae", "vae", "vae"] * len(
        table.datasets)
    for row in rows[:4]:  # the other classes' rows differ only in their data
        _, model = resolve(table.config(*row, tmp_path))
        assert (model.mode, model.kl_weight if row[1] == "vae" else row[2]) == row[1:]
        assert model.max_seq_len == 250 and model.kl_weight_start == 0.01  # magenta's
    with pytest.raises(ConfigError, match="cannot set kl_weight: the rows do"):
        from_mapping(table1.Table1, {"label": "x", "datasets": ["pig"], "kl_weights": [0.5],
                                     "train": {"model_options": {"kl_weight": 0.5}}})
