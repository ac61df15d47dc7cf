"""The diffusion model: the schedule and forward noising against hand-worked values, the DDIM
update (by hand, deterministic at η = 0, the ancestral sampler at η = 1 over all steps),
guidance at its defined scales, sizes, an overfit on real drawings, exact resume, and
`sketchgen train ddpm` then `sketchgen sample`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import train_with_torchrun
from test_resume import assert_identical, final_state

from sketchgen import cli, runtime
from sketchgen.data.datasets import load_bitmaps
from sketchgen.errors import ConfigError, FieldError
from sketchgen.figures import read_jsonl
from sketchgen.models import registry
from sketchgen.models.ddpm.config import DdpmConfig
from sketchgen.models.ddpm.diffusion import (
    ancestral_sample,
    cosine_alpha_bar,
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    guided,
    noised,
)
from sketchgen.models.ddpm.task import DdpmTask, to_unit
from sketchgen.models.task import BitmapData, TaskInputs
from sketchgen.training.config import TrainConfig
from sketchgen.training.harness import train

CATEGORIES = ("dog", "face")  # 250 real drawings each in the shared mirror
TINY = {"width": 8, "res_blocks": 1, "sample_steps": 5}  # a U-Net of ~16k weights
CPU = torch.device("cpu")


def settings(out="unused", **changes) -> TrainConfig:
    """A seconds-long CPU run of a tiny U-Net on a few real drawings."""
    values = dict(model="ddpm", categories=CATEGORIES, per_class=40, steps=6, batch_size=8,
                  out=str(out), checkpoint_every=5, sample_every=10, grad_norm_every=5,
                  grid_size=4, device="cpu", progress=False, model_options=TINY)
    return TrainConfig(**(values | changes))


@pytest.fixture(scope="module")
def drawings() -> BitmapData:
    loaded = load_bitmaps(CATEGORIES, 28, per_class=40)
    return BitmapData(torch.from_numpy(loaded.bitmaps),
                      torch.from_numpy(loaded.labels.astype(np.int64)), CATEGORIES)


def make_task(data: BitmapData, **options) -> DdpmTask:
    config = settings(model_options=TINY | options, categories=data.class_names)
    entry, model_config = registry.resolve(config)
    return entry.build(TaskInputs(config, model_config, data.class_names, CPU, data))


def randomised(task: DdpmTask) -> DdpmTask:
    """The task with random weights in its (EMA) net: a fresh one predicts zero noise."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in task.ema.parameters():
            parameter.normal_(0, 0.2)
    return task


# -- the process --------------------------------------------------------------------------------


def test_cosine_schedule_and_forward_noising_by_hand():
    # T = 2, s = 0.008: f(t) = cos²((t/2 + s) / (1 + s) · π/2)
    # f(0) = cos²(0.01246664) = 0.99984459, f(1) = cos²(0.79163148) = 0.49376684,
    # ᾱ_0 = f(1) / f(0) = 0.49384359; f(2) = 0, so β_1 = 1 is clipped to 0.999 and
    # ᾱ_1 = 0.001 ᾱ_0 = 0.00049384359
    alpha_bar = cosine_alpha_bar(2)
    assert alpha_bar.tolist() == pytest.approx([0.49384359, 0.00049384359], rel=1e-7)
    # x_t = √ᾱ x_0 + √(1 - ᾱ) ε: at t = 0 √ᾱ = 0.70274006, √(1 - ᾱ) = 0.71144670, so x_0 = 1,
    # ε = 0.5 give 0.70274006 + 0.35572335 = 1.05846341; at t = 1 √ᾱ = 0.02222259,
    # √(1 - ᾱ) = 0.99975305, so x_0 = -1, ε = -2 give -0.02222259 - 1.99950610 = -2.02172869
    x0, noise = torch.tensor([[1.0], [-1.0]]), torch.tensor([[0.5], [-2.0]])
    x_t = noised(x0, torch.tensor([0, 1]), noise, alpha_bar.float())
    assert x_t[:, 0].tolist() == pytest.approx([1.05846341, -2.02172869], rel=1e-6)


def test_the_schedule_runs_from_almost_clean_to_pure_noise():
    alpha_bar = cosine_alpha_bar(1000)
    assert 0.9999 < alpha_bar[0] < 1 and alpha_bar[-1] < 1e-7
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    assert bool((betas > 0).all()) and betas.max() == pytest.approx(0.999)
    assert ddim_timesteps(1000, 50)[:3] == [999, 979, 959] and ddim_timesteps(1000, 50)[-1] == 19
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))  # every step, T-1 down to 0


def test_one_ddim_step_by_hand():
    # ᾱ = 0.25, ᾱ_prev = 0.64, x_t = 0.5, ε = 0.5: x̂_0 = (0.5 - √0.75 · 0.5) / 0.5 = 0.1339746,
    # x_prev = 0.8 · 0.1339746 + 0.6 · 0.5 = 0.4071797 (σ = 0 at η = 0)
    x, eps = torch.tensor([0.5]), torch.tensor([0.5])
    assert ddim_step(x, eps, 0.25, 0.64, 0.0, None).item() == pytest.approx(0.4071797)
    # x_t = 1: x̂_0 = 1.134 is clipped to 1 and ε re-derived: (1 - 0.5) / √0.75 = 0.5773503,
    # x_prev = 0.8 + 0.6 · 0.5773503 = 1.1464102
    assert ddim_step(torch.ones(1), eps, 0.25, 0.64, 0.0, None).item() == pytest.approx(1.1464102)
    # η = 1: σ² = 0.36 / 0.75 · (1 - 0.25 / 0.64) = 0.2925, σ = 0.5408327, and ε's weight is
    # √(1 - 0.64 - σ²) = 0.2598076: x_prev = 0.1071797 + 0.1299038 + σ · z; z = 2 -> 1.3187489
    step = ddim_step(x, eps, 0.25, 0.64, 1.0, torch.tensor([2.0]))
    assert step.item() == pytest.approx(1.3187489)


def test_ddim_at_eta_zero_depends_on_the_seed_alone(drawings):
    task = randomised(make_task(drawings))
    labels = torch.tensor([0, 1, 0, 1])
    generator = torch.Generator().manual_seed(3)
    first = task.sample(4, labels, generator)
    # only x_T was drawn: the generator moved by exactly one (4, 1, 28, 28) normal draw
    expected = torch.Generator().manual_seed(3)
    torch.randn(4, 1, 28, 28, generator=expected)
    assert torch.equal(generator.get_state(), expected.get_state())
    assert torch.equal(first, task.sample(4, labels, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, task.sample(4, labels, torch.Generator().manual_seed(4)))
    assert first.shape == (4, 28, 28) and first.dtype == torch.uint8
    assert first.min() == 0 and first.max() == 255  # x̂_0 is clipped to the image range


def test_ddim_at_eta_one_over_all_steps_is_the_ancestral_sampler(drawings):
    task = randomised(make_task(drawings, timesteps=20, sample_steps=20))
    labels = torch.tensor([0, 1, 1])
    with torch.no_grad():
        ddim = ddim_sample(task.ema, labels, (1, 28, 28), task.alpha_bar, 20, 1.0,
                           task.null_label, 2.0, torch.Generator().manual_seed(5), CPU)
        ancestral = ancestral_sample(task.ema, labels, (1, 28, 28), task.alpha_bar,
                                     task.null_label, 2.0, torch.Generator().manual_seed(5), CPU)
    torch.testing.assert_close(ddim, ancestral, rtol=0, atol=1e-5)
    assert ancestral.std() > 0.1  # images, not a constant


# -- guidance and conditioning ------------------------------------------------------------------


def test_guidance_scales_one_and_zero_are_the_conditional_and_unconditional_nets(drawings):
    task = randomised(make_task(drawings))
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([500, 20])
    labels, null = torch.tensor([0, 1]), torch.full((2,), task.null_label)
    with torch.no_grad():
        conditional, unconditional = task.ema(x, t, labels), task.ema(x, t, null)
        assert not torch.allclose(conditional, unconditional)  # the label is used
        assert torch.equal(guided(task.ema, x, t, labels, task.null_label, 1.0), conditional)
        assert torch.equal(guided(task.ema, x, t, labels, task.null_label, 0.0), unconditional)
        torch.testing.assert_close(guided(task.ema, x, t, labels, task.null_label, 3.0),
                                   unconditional + 3 * (conditional - unconditional))
    # scale 0 samples ignore the labels; scale 1 samples follow them
    unguided = make_task(drawings, guidance_scale=0.0)
    unguided.ema.load_state_dict(task.ema.state_dict())
    cats, dogs = (unguided.sample(2, torch.full((2,), k), torch.Generator().manual_seed(0))
                  for k in (0, 1))
    assert torch.equal(cats, dogs)
    assert not torch.equal(*(task.sample(2, torch.full((2,), k), torch.Generator().manual_seed(0))
                             for k in (0, 1)))


def test_one_category_or_conditional_false_is_unconditional(drawings):
    one = BitmapData(drawings.images[:10], torch.zeros(10, dtype=torch.int64), ("dog",))
    for task in (make_task(one), make_task(drawings, conditional=False)):
        assert task.net.label_embedding is None and task.null_label is None
        x, t = torch.randn(1, 1, 28, 28).repeat(2, 1, 1, 1), torch.tensor([7, 7])
        with torch.no_grad():
            out = randomised(task).ema(x, t, torch.tensor([0, 1]))
        assert torch.equal(out[0], out[1])
    assert make_task(drawings).net.label_embedding.num_embeddings == 3  # 2 classes + "none"


def test_label_dropout_replaces_labels_by_the_null_label(drawings):
    task = make_task(drawings, label_dropout=0.5)
    *_, labels = task._batch(4000)
    assert task.null_label == 2
    assert (labels == 2).float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert set(labels.tolist()) == {0, 1, 2}


@pytest.mark.parametrize(("size", "options"), [(30, {}), (28, {"channel_mults": [1, 2, 2, 2]}),
                                               (27, {"channel_mults": [1, 2]})])
def test_sizes_the_unet_cannot_halve_fail_before_any_work(size, options):
    with pytest.raises(ConfigError, match=f"^size: model 'ddpm' cannot make {size} px"):
        registry.resolve(settings(size=size, model_options=options))


@pytest.mark.parametrize("size", [28, 32, 64])
def test_every_size_the_unet_halves_to_makes_images(drawings, size):
    config = settings(size=size)
    entry, model_config = registry.resolve(config)
    images = torch.randint(0, 256, (4, size, size), dtype=torch.uint8)
    task = entry.build(TaskInputs(config, model_config, CATEGORIES, CPU,
                                  BitmapData(images, torch.tensor([0, 1, 0, 1]), CATEGORIES)))
    assert math.isfinite(task.train_step(1)["loss"])
    samples = task.sample(2, torch.tensor([0, 1]), torch.Generator().manual_seed(0))
    assert samples.shape == (2, size, size) and samples.dtype == torch.uint8


def test_bad_options_name_their_field():
    with pytest.raises(FieldError, match="^sample_steps must be at most timesteps"):
        DdpmConfig(timesteps=20)
    with pytest.raises(FieldError, match="^channel_mults must list at least one level"):
        DdpmConfig(channel_mults=())
    with pytest.raises(ConfigError, match="model_options.eta must be a number in"):
        registry.resolve(settings(model_options={"eta": 2}))


# -- training -----------------------------------------------------------------------------------


def test_overfits_a_handful_of_real_drawings(drawings):
    """Eight real drawings, 80 steps: the loss at fixed steps t and noise (four of each per
    drawing) falls from 1 (an untrained net predicts zero noise) by 4x or more (measured:
    5.1x; a wrong noising, target or update leaves it near 1)."""
    few = BitmapData(drawings.images[:8], drawings.labels[:8], CATEGORIES)
    torch.manual_seed(0)
    task = make_task(few, lr=3e-3, label_dropout=0.0, ema_decay=0.0)
    probe = torch.Generator().manual_seed(1)
    x0 = to_unit(few.images).repeat(4, 1, 1, 1)
    t = torch.randint(task.cfg.timesteps, (len(x0),), generator=probe)
    noise = torch.randn(x0.shape, generator=probe)

    def loss() -> float:
        with torch.no_grad():
            predicted = task.net(noised(x0, t, noise, task.train_alpha_bar), t,
                                 few.labels.repeat(4))
        return torch.nn.functional.mse_loss(predicted, noise).item()

    before = loss()
    for step in range(1, 81):
        task.train_step(step)
    assert before == pytest.approx(1.0, abs=0.1)
    assert loss() < before / 4


def test_sampling_changes_no_training_state(drawings):
    task = make_task(drawings, ema_decay=0.0, dropout=0.5)  # samples the net itself
    task.train_step(1)
    state, rng = task.state_dict(), torch.get_rng_state()
    task.sample(2, torch.tensor([0, 1]), torch.Generator().manual_seed(0))
    assert task.net.training and torch.equal(torch.get_rng_state(), rng)  # dropout was off
    assert_identical(task.state_dict(), state)


def test_twenty_steps_equal_ten_resume_ten(tmp_path):
    train(settings(tmp_path / "straight", steps=20))
    train(settings(tmp_path / "resumed", steps=10))
    train(settings(tmp_path / "resumed", steps=20), resume=True)
    assert_identical(final_state(tmp_path / "straight"), final_state(tmp_path / "resumed"))
    steps = [r["step"] for r in read_jsonl(tmp_path / "resumed" / "log.jsonl")]
    assert steps == list(range(1, 21))


def test_train_then_sample_through_the_cli(tmp_path):
    run = tmp_path / "run"
    assert cli.main(["train", "ddpm", "--categories", *CATEGORIES, "--per-class", "40",
                     "--steps", "3", "--batch-size", "8", "--grid-size", "4",
                     "--set", "width=8", "--set", "res_blocks=1", "--set", "sample_steps=4",
                     "--device", "cpu", "--no-progress", "--out", str(run)]) == 0
    assert (run / "checkpoint.pt").is_file() and (run / "learning.gif").is_file()
    for name in ("a.npy", "b.npy"):
        assert cli.main(["sample", str(run), "--n", "6", "--seed", "2",
                         "-o", str(tmp_path / name)]) == 0
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (6, 28 * 28) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert json.loads((tmp_path / "a.npy.json").read_text())["labels"] == [0, 1] * 3
    assert cli.main(["sample", str(run), "--n", "2", "--category", "face",
                     "-o", str(tmp_path / "face.npy")]) == 0
    assert runtime.load_checkpoint(run / "checkpoint.pt")["model"] == "ddpm"



def test_torchrun_on_two_cpu_processes_follows_the_single_process_run(tmp_path):
    """2 gloo ranks, each on half of the global batch with gradients averaged before the clip,
    against one process on the whole batch: every weight within 1e-5 after 4 steps (an Adam
    step moves one by up to lr = 2e-4, so a missing average or a wrong shard shows)."""
    common = ["ddpm", "--categories", *CATEGORIES, "--per-class", "40", "--steps", "4",
              "--batch-size", "8", "--grid-size", "2", "--set", "width=8",
              "--set", "res_blocks=1", "--set", "sample_steps=2", "--device", "cpu",
              "--no-progress"]
    train_with_torchrun([*common, "--out", str(tmp_path / "two")])
    assert cli.main(["train", *common, "--out", str(tmp_path / "one")]) == 0
    one, two = (runtime.load_checkpoint(tmp_path / name / "checkpoint.pt")["task"]
                for name in ("one", "two"))
    for net in ("net", "ema"):
        for name, weight in one[net].items():
            assert torch.allclose(weight, two[net][name], rtol=0, atol=1e-5), (net, name)
    assert torch.equal(one["generator"], two["generator"])  # the same global draws
