"""GAN models: every registered GAN builds at its sizes with the right shapes and ranges, the
presets have the layers the reference write-ups describe, and bad sizes fail early."""

from __future__ import annotations

import copy
import dataclasses
import math

import orjson
import pytest
import torch
from PIL import Image
from torch import nn

from sketchgen.errors import ConfigError
from sketchgen.figures import gradient_norms, plot_gradient_norms
from sketchgen.models import registry
from sketchgen.models.gan.config import GanConfig
from sketchgen.models.gan.nets import dcgan_levels
from sketchgen.models.gan.standing import STANDING_BATCH, with_standing_statistics
from sketchgen.models.gan.task import GanTask
from sketchgen.models.task import BitmapData, TaskInputs
from sketchgen.training.config import TrainConfig

CLASSES = ("cat", "dog", "apple")
SIZES = {  # each model at the sizes it supports (presets: the references' 28 px and 64 px)
    "dcgan": (28, 64), "cgan": (28, 64), "sngan": (28, 64), "superdeep": (28,),
    "tf-dcgan": (28, 64), "brownlee-cgan": (28, 64), "smooth-cgan": (28, 64),
}
CASES = [(model, size) for model, sizes in SIZES.items() for size in sizes]


def make_task(model: str, size: int, device: str = "cpu", **options) -> GanTask:
    config = TrainConfig(model=model, categories=CLASSES, size=size, batch_size=4,
                         device="cpu", model_options=options)
    entry, model_config = registry.resolve(config)
    images = torch.randint(0, 256, (6, size, size), dtype=torch.uint8)
    data = BitmapData(images.to(device), (torch.arange(6) % len(CLASSES)).to(device), CLASSES)
    return entry.build(TaskInputs(config, model_config, CLASSES, torch.device(device), data))


def test_every_gan_in_the_registry_is_tested():
    gans = {name for name, entry in registry.MODELS.items()
            if isinstance(entry.default_config(), GanConfig)}
    assert gans == set(SIZES)


@pytest.mark.parametrize(("model", "size"), CASES)
def test_shapes_and_output_ranges(model, size):
    torch.manual_seed(0)
    task = make_task(model, size, standing_batches=1)  # 128 draws: enough for shapes
    z = 3 * torch.randn(8, task.cfg.latent_dim)  # large z: reach into the activation's tails
    labels = torch.arange(8) % len(CLASSES)
    images = task.G(z, labels)
    assert images.shape == (8, 1, size, size)
    low, high = (-1.0, 1.0) if task.cfg.output == "tanh" else (0.0, 1.0)
    assert low <= images.min() and images.max() <= high
    assert images.min() < (low + high) / 2 < images.max()  # the whole range is in use
    assert task.D(images, labels).shape == (8,)
    samples = task.sample(5, labels[:5], torch.Generator().manual_seed(0))
    assert samples.shape == (5, size, size) and samples.dtype == torch.uint8


@pytest.mark.parametrize("model", ["cgan", "sngan", "brownlee-cgan", "smooth-cgan"])
def test_conditional_generators_use_the_label(model):
    task = make_task(model, 28)
    task.G.eval()
    z = torch.randn(1, task.cfg.latent_dim).repeat(len(CLASSES), 1)
    images = task.G(z, torch.arange(len(CLASSES)))
    assert not torch.allclose(images[0], images[1])


@pytest.mark.parametrize("model", ["dcgan", "superdeep", "tf-dcgan"])
def test_unconditional_generators_ignore_the_label(model):
    task = make_task(model, 28)
    task.G.eval()
    z = torch.randn(1, task.cfg.latent_dim).repeat(2, 1)
    images = task.G(z, torch.tensor([0, 1]))
    assert torch.equal(images[0], images[1])


def layers(module: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, kind)]


def test_superdeep_matches_the_reference():
    """SuperDeepGenerator(ngf=128) and SuperDeepConvDiscriminator(16) with the optimizer of
    ref 000's final train.py (Adam 5e-4, weight decay 1e-4, torch's betas)."""
    task = make_task("superdeep", 28)
    convs = layers(task.G, nn.ConvTranspose2d)
    assert [c.out_channels for c in convs] == [512, 256, 128, 1]  # 4 layers, halving, then 1
    assert len(layers(task.G, nn.Dropout)) == 3  # on all but the last layer
    assert [c.out_channels for c in layers(task.D, nn.Conv2d)] == [16, 32, 64, 128]
    assert len(layers(task.D, nn.BatchNorm2d)) == 4
    assert [(lin.in_features, lin.out_features) for lin in layers(task.D, nn.Linear)] == [
        (128, 100), (100, 1)]
    assert task.cfg.output == "sigmoid" and task.cfg.loss == "bce"
    for optimizer in (task.opt_g, task.opt_d):
        settings = optimizer.defaults
        assert (settings["lr"], settings["weight_decay"]) == (5e-4, 1e-4)
        assert settings["betas"] == (0.9, 0.999) and settings["eps"] == 1e-8


def test_generator_and_discriminator_widths_are_set_apart():
    """``width`` is G's base width and D's unless ``d_width`` is set, in both builders that
    take widths; the dcgan presets keep one width for both."""
    one = make_task("dcgan", 28, width=16)
    assert layers(one.G, nn.ConvTranspose2d)[0].out_channels == 32  # 16 * 2 at 7 px
    assert layers(one.D, nn.Conv2d)[0].out_channels == 16
    two = make_task("sngan", 28, width=16, d_width=8)  # projection: sized by D's features
    assert layers(two.G, nn.ConvTranspose2d)[0].out_channels == 32
    assert [c.out_channels for c in layers(two.D, nn.Conv2d)] == [8, 16]
    labels = torch.arange(4) % len(CLASSES)
    assert two.D(two.G(torch.randn(4, 100), labels), labels).shape == (4,)
    narrow = make_task("superdeep", 28, width=32)  # the preset's D width stays 16
    assert [c.out_channels for c in layers(narrow.G, nn.ConvTranspose2d)] == [128, 64, 32, 1]
    assert layers(narrow.D, nn.Conv2d)[0].out_channels == 16


@pytest.mark.parametrize(("model", "options", "field"), [
    ("tf-dcgan", {"d_width": 16}, "d_width"), ("brownlee-cgan", {"width": 32}, "width"),
    ("smooth-cgan", {"d_width": 64}, "d_width")])
def test_a_width_the_architecture_ignores_is_refused(model, options, field):
    message = rf"model_options\.{field} applies to dcgan and superdeep only: .*fixed channel"
    with pytest.raises(ConfigError, match=message):
        registry.resolve(TrainConfig(model=model, categories=("cat",), model_options=options))


def test_tf_dcgan_matches_the_reference():
    task = make_task("tf-dcgan", 28)
    dense, = layers(task.G, nn.Linear)
    assert (dense.in_features, dense.out_features) == (100, 7 * 7 * 256)
    convs = layers(task.G, nn.ConvTranspose2d)
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (128, (5, 5), (1, 1)), (64, (5, 5), (2, 2)), (1, (5, 5), (2, 2))]
    d_convs = layers(task.D, nn.Conv2d)
    assert [(c.out_channels, c.kernel_size, c.stride) for c in d_convs] == [
        (64, (5, 5), (2, 2)), (128, (5, 5), (2, 2))]
    assert [d.p for d in layers(task.D, nn.Dropout)] == [0.3, 0.3]
    assert task.opt_g.defaults["lr"] == task.opt_d.defaults["lr"] == 1e-3
    assert task.cfg.output == "tanh"  # images scaled to [-1, 1]


def _after_one_step(model: str, **options) -> GanTask:
    torch.manual_seed(0)
    task = make_task(model, 28, **options)
    torch.manual_seed(1)  # the same dropout masks in every run
    task.train_step(1)
    return task


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))


def test_tf_dcgan_updates_both_networks_from_one_forward_pass():
    """The TF tutorial's train_step takes both gradients from one pass, before either network
    steps: G's first update is the same whatever D's learning rate. Alternating, G steps
    against the D just updated, so D's rate changes G's update."""
    slow, fast = (_after_one_step("tf-dcgan", lr_d=rate) for rate in (1e-4, 0.5))
    assert _same_weights(slow.G, fast.G) and not _same_weights(slow.D, fast.D)
    slow, fast = (_after_one_step("tf-dcgan", lr_d=rate, update_order="alternating")
                  for rate in (1e-4, 0.5))
    assert not _same_weights(slow.G, fast.G)
    # and D's update is the same whatever G's rate, in both orders
    for order in ("simultaneous", "alternating"):
        slow, fast = (_after_one_step("tf-dcgan", lr_g=rate, update_order=order)
                      for rate in (1e-4, 0.5))
        assert _same_weights(slow.D, fast.D) and not _same_weights(slow.G, fast.G)


def test_simultaneous_updates_need_a_joint_discriminator_update():
    with pytest.raises(ConfigError, match=r"model_options\.update_order 'simultaneous' needs "
                                          r"d_update 'joint'.*'separate'"):
        registry.resolve(TrainConfig(model="brownlee-cgan", categories=("cat",),
                                     model_options={"update_order": "simultaneous"}))


def test_brownlee_label_maps_are_an_extra_channel():
    task = make_task("brownlee-cgan", 28)
    g_map, d_map = task.G.stem.label_map, task.D.label_map
    assert g_map.embed.embedding_dim == d_map.embed.embedding_dim == 50
    assert g_map.dense.out_features == 7 * 7 and d_map.dense.out_features == 28 * 28
    assert layers(task.G, nn.ConvTranspose2d)[0].in_channels == 128 + 1
    assert layers(task.D, nn.Conv2d)[0].in_channels == 1 + 1


def test_smooth_cgan_soft_labels_and_rates():
    task = make_task("smooth-cgan", 28)
    real = task._targets(4000, task.cfg.real_target)
    fake = task._targets(4000, task.cfg.fake_target)
    assert 0.7 <= real.min() < 0.72 and 1.18 < real.max() <= 1.2
    assert 0.0 <= fake.min() < 0.02 and 0.28 < fake.max() <= 0.3
    assert {m.negative_slope for m in layers(task.G, nn.LeakyReLU)} == {0.02}
    assert layers(task.D, nn.BatchNorm2d) and layers(task.G, nn.BatchNorm2d)
    assert task.opt_g.defaults["lr"] != task.opt_d.defaults["lr"]


def test_sngan_spectral_norm_bounds_each_discriminator_layer():
    task = make_task("sngan", 28)
    weighted = layers(task.D, nn.Conv2d) + layers(task.D, nn.Linear)
    assert weighted and all(nn.utils.parametrize.is_parametrized(m) for m in weighted)
    assert not layers(task.D, nn.BatchNorm2d)
    for _ in range(30):  # power iteration converges as D runs in training mode
        task.D(torch.randn(4, 1, 28, 28), torch.arange(4) % 3)
    linear = layers(task.D, nn.Linear)[0]
    with torch.no_grad():
        assert torch.linalg.matrix_norm(linear.weight, ord=2).item() == pytest.approx(1.0, abs=0.05)


def test_losses_at_known_logits():
    hinge, bce = make_task("sngan", 28), make_task("dcgan", 28)
    zero = torch.zeros(3)
    assert hinge._d_loss(zero, real=True).item() == pytest.approx(1.0)
    assert hinge._d_loss(torch.full((3,), 2.0), real=False).item() == pytest.approx(3.0)
    assert hinge._g_loss(torch.full((3,), 2.0)).item() == pytest.approx(-2.0)
    assert bce._d_loss(zero, real=True).item() == pytest.approx(math.log(2))
    assert bce._g_loss(zero).item() == pytest.approx(math.log(2))


@pytest.mark.parametrize(("model", "size"), [
    ("dcgan", 30), ("dcgan", 100), ("dcgan", 8), ("superdeep", 64), ("tf-dcgan", 30),
    ("brownlee-cgan", 4), ("sngan", 27)])
def test_impossible_sizes_fail_before_any_work(model, size):
    with pytest.raises(ConfigError, match=f"cannot make {size} px images"):
        registry.resolve(TrainConfig(model=model, categories=("cat",), size=size))


@pytest.mark.parametrize(("size", "levels"), [(28, (7, 2)), (64, (4, 4)), (48, (6, 3)),
                                              (16, (4, 2)), (30, None), (8, None)])
def test_dcgan_levels(size, levels):
    assert dcgan_levels(size) == levels


class _TinyG(nn.Module):
    """Linear -> Dropout -> BatchNorm: standing statistics must see the eval-mode inputs."""

    def __init__(self):
        super().__init__()
        self.linear, self.dropout, self.norm = nn.Linear(2, 3), nn.Dropout(0.5), nn.BatchNorm1d(3)

    def forward(self, z, labels):
        return self.norm(self.dropout(self.linear(z)))


def test_standing_statistics_are_the_population_statistics_of_the_current_weights():
    torch.manual_seed(0)
    tiny = _TinyG().train()
    inputs = torch.Generator().manual_seed(1)
    batches = [torch.randn(STANDING_BATCH, 2, generator=inputs) for _ in range(5)]
    feeding = iter(batches)
    standing = with_standing_statistics(tiny, lambda n: (next(feeding), None), 5)
    with torch.no_grad():
        features = [tiny.linear(z) for z in batches]  # what the norm sees without dropout
    # momentum=None: the plain average over batches of each batch's mean and unbiased variance
    expected_mean = torch.stack([f.mean(0) for f in features]).mean(0)
    expected_var = torch.stack([f.var(0) for f in features]).mean(0)
    torch.testing.assert_close(standing.norm.running_mean, expected_mean)
    torch.testing.assert_close(standing.norm.running_var, expected_var)
    assert not standing.training and standing.norm.momentum is None
    # the original is untouched: initial statistics, still in training mode
    assert tiny.training and torch.equal(tiny.norm.running_mean, torch.zeros(3))
    no_norm = nn.Linear(2, 3)
    assert with_standing_statistics(no_norm, None, 5) is no_norm  # nothing to estimate
    assert with_standing_statistics(tiny, None, 0) is tiny  # running averages asked for


def test_sampling_uses_standing_statistics_and_changes_no_training_state():
    torch.manual_seed(0)
    task = make_task("smooth-cgan", 28)  # Keras batch norm: running averages lag the most
    task.train_step(1)
    buffers = {name: b.clone() for name, b in task.G.named_buffers()}
    labels = torch.arange(6) % len(CLASSES)
    first = task.sample(6, labels, torch.Generator().manual_seed(3))
    assert torch.equal(first, task.sample(6, labels, torch.Generator().manual_seed(3)))
    z = torch.randn(6, task.cfg.latent_dim)
    with torch.no_grad():  # eval mode: no image depends on the others in its batch
        whole = task._standing_sampler()(z, labels)
        halves = torch.cat([task._standing_sampler()(z[i : i + 3], labels[i : i + 3])
                            for i in (0, 3)])
    torch.testing.assert_close(whole, halves)
    assert all(torch.equal(b, buffers[name]) for name, b in task.G.named_buffers())
    norm = next(m for m in task._standing_sampler().modules() if isinstance(m, nn.BatchNorm2d))
    assert norm.num_batches_tracked == task.cfg.standing_batches
    task.train_step(2)
    assert task._sampler is None  # new weights, new statistics
    task._standing_sampler()
    task.load_state_dict(make_task("smooth-cgan", 28).state_dict())
    assert task._sampler is None  # loaded weights too


def test_batches_come_from_a_cpu_generator_whatever_the_device():
    """The task's draws come from a CPU generator and are moved to the device, so the saved
    generator state is a CPU state wherever the run trained: a CUDA generator's state (16
    bytes) cannot be loaded into a CPU one, which broke sampling a GPU-trained run on the CPU
    and resuming it elsewhere. The meta device stands in for CUDA (no values, a device)."""
    torch.manual_seed(0)
    cpu, meta = make_task("smooth-cgan", 28), make_task("smooth-cgan", 28, device="meta")
    for task in (cpu, meta):  # every kind of draw: real batch, noise and labels, soft targets
        drawn = [*task._real_batch(4), *task._noise(4), task._targets(4, task.cfg.real_target)]
        assert all(t.device == task.device for t in drawn)
    assert meta.generator.device.type == "cpu"
    assert torch.equal(meta.state_dict()["generator"], cpu.state_dict()["generator"])
    assert not torch.equal(cpu.state_dict()["generator"], make_task("smooth-cgan", 28)
                           .state_dict()["generator"])  # the draws above moved the stream


def test_standing_statistics_of_a_synchronised_generator_need_no_other_rank():
    """Under torchrun on CUDA G's batch norms are SyncBatchNorms, but only rank 0 samples: the
    copy must normalise locally (a SyncBatchNorm in training mode under a process group
    would wait for the other ranks) and give the same statistics."""
    torch.manual_seed(0)
    plain = make_task("smooth-cgan", 28).G
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(plain))

    def draws():
        generator = torch.Generator().manual_seed(4)
        return lambda n: (torch.randn(n, 100, generator=generator), torch.zeros(n, dtype=int))

    expected = with_standing_statistics(plain, draws(), 2)
    standing = with_standing_statistics(synced, draws(), 2)
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in standing.modules())
    assert any(isinstance(m, nn.SyncBatchNorm) for m in synced.modules())  # left as it was
    z, labels = draws()(4)
    with torch.no_grad():
        torch.testing.assert_close(standing(z, labels), expected(z, labels))


def _log(path, records, torn: bool = False):
    lines = b"".join(orjson.dumps(record) + b"\n" for record in records)
    path.write_bytes(lines + (b'{"step": 9' if torn else b""))  # a killed writer's last line
    return path


def test_gradient_norms_of_runs_are_summed_up_at_the_steps_they_share(tmp_path):
    """The harness logs ``grad_norms`` every grad_norm_every steps (other lines have none);
    several runs (seeds) give a geometric mean and a band at their common steps."""
    first = _log(tmp_path / "a.jsonl", [
        {"step": 10, "grad_norms": {"G.x": 1.0, "D.y": 5.0}}, {"step": 15, "loss_d": 0.7},
        {"step": 20, "grad_norms": {"G.x": 100.0}}, {"step": 30, "grad_norms": {"G.x": 4.0}}])
    second = _log(tmp_path / "b.jsonl", [
        {"step": 10, "grad_norms": {"G.x": 4.0}}, {"step": 20, "grad_norms": {"G.x": 1.0}}],
        torn=True)
    steps, mean, low, high = gradient_norms([first, second], "G.x")
    assert steps.tolist() == [10, 20]
    assert mean.tolist() == pytest.approx([2.0, 10.0])
    assert low.tolist() == [1.0, 1.0] and high.tolist() == [4.0, 100.0]
    with pytest.raises(ValueError, match=r"b\.jsonl: no gradient norms of 'D\.y'; the log has "
                                         r"G\.x$"):
        gradient_norms([first, second], "D.y")
    figure = plot_gradient_norms({"soft": [first, second], "hard": [first]}, ["G.x"] * 3,
                                 tmp_path / "norms.png", columns=2)
    assert Image.open(figure).size == (924, 528)  # 2 columns x 2 rows of 4.2 x 2.4 in at 110 dpi


def test_label_smoothing_reproduction_compares_only_the_targets():
    """reproductions/label-smoothing: its two arms are smooth-cgan at one budget, the preset's
    soft labels (ref 003's) against hard ones, and log gradient norms often enough to draw;
    the third entry is ref 003's starting point at the same budget."""
    from pathlib import Path

    from sketchgen.comparison.config import load_config
    from sketchgen.comparison.plan import plan_runs
    from sketchgen.models.gan.config import SMOOTH_CGAN

    path = Path(__file__).resolve().parents[1] / "reproductions" / "label-smoothing"
    soft, hard, before = plan_runs(load_config(path / "config.toml"))
    assert soft.spec.model == hard.spec.model == "smooth-cgan"
    assert before.spec.model == "brownlee-cgan" and not before.spec.options
    budget = ("steps", "batch_size", "grad_norm_every", "per_class", "seed", "categories")
    assert all(getattr(soft.train, key) == getattr(other.train, key)
               for key in budget for other in (hard, before))
    assert soft.train.steps // soft.train.grad_norm_every >= 20  # points per curve
    (_, soft_model), (_, hard_model) = (registry.resolve(p.train) for p in (soft, hard))
    assert (soft_model.real_target, soft_model.fake_target) == ((0.7, 1.2), (0.0, 0.3))
    assert (hard_model.real_target, hard_model.fake_target) == ((1.0, 1.0), (0.0, 0.0))
    assert dataclasses.replace(hard_model, real_target=(0.7, 1.2),
                               fake_target=(0.0, 0.3)) == soft_model == SMOOTH_CGAN
