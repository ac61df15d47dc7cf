"""GanTask: one G/D pair trained by the recipe in its :class:`GanConfig`, for the training
harness (protocol: ``sketchgen.models.task.Task``), and ``build_gan_task``, the registry's
factory for every GAN entry.

The class reads top to bottom as a step does: construction, ``train_step`` with its three
orders of updates (a joint D update then G, both from one forward pass, or separate D
updates then G), the draws, losses and optimizer steps they use, then the rest of the
protocol (gradient norms, state, sampling).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from sketchgen import runtime
from sketchgen.models.gan.config import GanConfig
from sketchgen.models.gan.nets import build_networks
from sketchgen.models.gan.standing import with_standing_statistics
from sketchgen.models.task import RunSettings, TaskInputs, grad_norms_of, update_ema


def _to_unit(images: torch.Tensor, output: str) -> torch.Tensor:
    """uint8 [0, 255] -> float in G's output range."""
    images = images.float()
    return images / 127.5 - 1.0 if output == "tanh" else images / 255.0


def _to_uint8(images: torch.Tensor, output: str) -> torch.Tensor:
    """G's output range -> uint8 [0, 255], rounded."""
    scaled = (images + 1.0) * 127.5 if output == "tanh" else images * 255.0
    return scaled.round().clamp(0, 255).to(torch.uint8)


def _parameters(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [param for group in optimizer.param_groups for param in group["params"]]


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """No weight gradients for ``module`` inside (G's update backpropagates *through* D):
    saves D's weight-gradient work and keeps D's gradients those of D's own loss for the log."""
    params = [p for p in module.parameters() if p.requires_grad]
    for param in params:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param in params:
            param.requires_grad_(True)


class GanTask:
    """Trains one G/D pair by the recipe in its GanConfig (see ``sketchgen.models.task.Task``).

    Sampling: from the EMA of G if configured, else G, in eval mode with standing batch-norm
    statistics (``standing.with_standing_statistics``), estimated once per weights from a generator
    seeded by the run's seed (same weights, same samples).

    Randomness: batches, noise and targets come from the task's own CPU ``torch.Generator``
    (drawn on the CPU, moved to the device, as in Sketch-RNN's task), so a checkpoint's
    generator state is the same kind of state whatever device trained it: a run trained on
    CUDA samples on the CPU and resumes on another device.

    Data parallel under torchrun: every rank draws the global batch, noise and targets from
    its identically seeded generator and trains on its shard; gradients are averaged before
    each optimizer step (``sketchgen.runtime``). Batch norm becomes SyncBatchNorm on CUDA; on
    CPU (gloo) it normalises per shard, since torch's SyncBatchNorm is GPU-only.
    """

    supports_distributed = True

    def __init__(self, inputs: TaskInputs) -> None:
        self.config: RunSettings = inputs.config
        self.cfg: GanConfig = inputs.model
        self.device = inputs.device
        self.data = inputs.data
        self.num_classes = len(inputs.class_names)
        self.conditional = self.cfg.conditional
        self.G, self.D = build_networks(self.cfg, self.config.size, self.num_classes)
        if runtime.world()[1] > 1 and self.device.type == "cuda":
            self.G = nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
            self.D = nn.SyncBatchNorm.convert_sync_batchnorm(self.D)
        self.G.to(self.device)
        self.D.to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval() if self.cfg.ema_decay > 0 else None
        self._sampler: nn.Module | None = None  # with standing statistics; reset by training
        self.run_G = runtime.maybe_compile(self.G, self.config, self.device)
        self.run_D = runtime.maybe_compile(self.D, self.config, self.device)
        adam = dict(betas=self.cfg.betas, eps=self.cfg.adam_eps,
                    weight_decay=self.cfg.weight_decay)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=self.cfg.lr_g, **adam)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=self.cfg.lr_d, **adam)
        self.scaler_g = runtime.grad_scaler(self.config, self.device)
        self.scaler_d = runtime.grad_scaler(self.config, self.device)
        self.generator = torch.Generator().manual_seed(  # on the CPU: see the class docstring
            runtime.derived_seed(self.config.seed, "task"))

    # one training step: D, then G, then G's moving average

    def train_step(self, step: int) -> dict[str, float]:
        self._sampler = None
        if self.cfg.update_order == "simultaneous":
            return self._simultaneous_step(step)
        if self.cfg.d_update == "joint":
            return self._joint_step(step)
        return self._separate_step(step)

    def _joint_step(self, step: int) -> dict[str, float]:
        """One D update on a real and a fake batch, then one G update on the same fake batch
        against the updated D (the PyTorch DCGAN recipe; superdeep's loop also reuses the
        batch): one G forward per step instead of two."""
        batch = self.config.batch_size
        real, real_labels = self._real_batch(batch)
        z, fake_labels = self._noise(batch)
        with runtime.autocast(self.config, self.device):
            fake = self.run_G(z, fake_labels)
            real_logits = self.run_D(real, real_labels)
            fake_logits = self.run_D(fake.detach(), fake_labels)
            loss_d = self._d_loss(real_logits, True) + self._d_loss(fake_logits, False)
        self._step(loss_d, self.opt_d, self.scaler_d)
        with runtime.autocast(self.config, self.device), _frozen(self.D):
            loss_g = self._g_loss(self.run_D(fake, fake_labels))
        self._step(loss_g, self.opt_g, self.scaler_g)
        return self._finish_step(step, loss_d, loss_g, real_logits, fake_logits)

    def _simultaneous_step(self, step: int) -> dict[str, float]:
        """The TF DCGAN tutorial's step: G(z), one D pass on the real and on the fake batch,
        both losses from that pass, then both optimizers step; so G's gradient comes from the
        D that judged the batch, not from the D that was just updated on it."""
        batch = self.config.batch_size
        real, real_labels = self._real_batch(batch)
        z, fake_labels = self._noise(batch)
        with runtime.autocast(self.config, self.device):
            fake = self.run_G(z, fake_labels)
            real_logits = self.run_D(real, real_labels)
            fake_logits = self.run_D(fake, fake_labels)
            loss_d = self._d_loss(real_logits, True) + self._d_loss(fake_logits, False)
            loss_g = self._g_loss(fake_logits)
        self._backward(loss_d, self.opt_d, self.scaler_d, retain_graph=True)  # G's loss next
        self._backward(loss_g, self.opt_g, self.scaler_g)
        self._apply(self.opt_d, self.scaler_d)
        self._apply(self.opt_g, self.scaler_g)
        return self._finish_step(step, loss_d, loss_g, real_logits, fake_logits)

    def _separate_step(self, step: int) -> dict[str, float]:
        """Brownlee's loop (also ref 003): D updated on a real half batch, then on a fake half
        batch; then G on a full batch of fresh noise and random labels."""
        half = self.config.batch_size // 2
        autocast = runtime.autocast(self.config, self.device)
        real, real_labels = self._real_batch(half)
        with autocast:
            real_logits = self.run_D(real, real_labels)
            loss_real = self._d_loss(real_logits, True)
        self._step(loss_real, self.opt_d, self.scaler_d)
        z, fake_labels = self._noise(half)
        with autocast:
            with torch.no_grad():
                fake = self.run_G(z, fake_labels)
            fake_logits = self.run_D(fake, fake_labels)
            loss_fake = self._d_loss(fake_logits, False)
        self._step(loss_fake, self.opt_d, self.scaler_d)
        z, labels = self._noise(self.config.batch_size)
        with autocast, _frozen(self.D):
            loss_g = self._g_loss(self.run_D(self.run_G(z, labels), labels))
        self._step(loss_g, self.opt_g, self.scaler_g)
        return self._finish_step(step, loss_real + loss_fake, loss_g, real_logits, fake_logits)

    def _finish_step(self, step: int, loss_d: torch.Tensor, loss_g: torch.Tensor,
                     real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, float]:
        if self.G_ema is not None:
            update_ema(self.G_ema, self.G, self.cfg.ema_decay, step)
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(),
                "d_real": self._d_score(real_logits), "d_fake": self._d_score(fake_logits)}

    # what a step draws, all on the CPU from the task's generator: n is the global
    # count, the result this rank's shard (all of it on one process) on the device

    def _real_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = runtime.shard(torch.randint(len(self.data.labels), (n,),
                                            generator=self.generator)).to(self.device)
        return _to_unit(self.data.images[index], self.cfg.output)[:, None], self.data.labels[index]

    def _noise(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(n, self.cfg.latent_dim, generator=self.generator)
        labels = torch.randint(self.num_classes, (n,), generator=self.generator)
        return runtime.shard(z).to(self.device), runtime.shard(labels).to(self.device)

    def _targets(self, shard_size: int, bounds: tuple[float, float]) -> torch.Tensor:
        low, high = bounds
        if low == high:
            return torch.full((shard_size,), low, device=self.device)
        count = shard_size * runtime.world()[1]
        uniform = torch.rand(count, generator=self.generator)
        return low + (high - low) * runtime.shard(uniform).to(self.device)

    # losses and optimizer steps

    def _d_loss(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        if self.cfg.loss == "hinge":
            return F.relu(1.0 - logits).mean() if real else F.relu(1.0 + logits).mean()
        targets = self._targets(len(logits), self.cfg.real_target if real else self.cfg.fake_target)
        return F.binary_cross_entropy_with_logits(logits.float(), targets)

    def _g_loss(self, logits: torch.Tensor) -> torch.Tensor:
        if self.cfg.loss == "hinge":
            return -logits.float().mean()
        return F.binary_cross_entropy_with_logits(logits.float(), torch.ones_like(logits.float()))

    def _d_score(self, logits: torch.Tensor) -> float:
        """Mean D output: a probability for BCE models, the raw critic value for hinge."""
        scores = logits.detach().float()
        return (torch.sigmoid(scores) if self.cfg.loss == "bce" else scores).mean().item()

    def _step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
              scaler: torch.amp.GradScaler) -> None:
        self._backward(loss, optimizer, scaler)
        self._apply(optimizer, scaler)

    @staticmethod
    def _backward(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                  scaler: torch.amp.GradScaler, retain_graph: bool = False) -> None:
        """Gradients of ``loss`` for ``optimizer``'s parameters only (``inputs``): a loss
        whose graph runs through the other network leaves that network's gradients alone."""
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward(inputs=_parameters(optimizer), retain_graph=retain_graph)

    @staticmethod
    def _apply(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        runtime.average_gradients(_parameters(optimizer))
        scaler.step(optimizer)
        scaler.update()

    # the rest of the Task protocol

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"G": self.G, "D": self.D}

    def grad_norms(self) -> dict[str, float]:
        return grad_norms_of(self.networks())

    def state_dict(self) -> dict[str, Any]:
        state = {
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
            "generator": self.generator.get_state(),
        }
        if self.G_ema is not None:
            state["G_ema"] = self.G_ema.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.scaler_g.load_state_dict(state["scaler_g"])
        self.scaler_d.load_state_dict(state["scaler_d"])
        self.generator.set_state(state["generator"].cpu())
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state["G_ema"])
        self._sampler = None

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.cfg.latent_dim, generator=generator).to(self.device)
        sampler = self._standing_sampler()
        with runtime.eval_mode(sampler):
            images = sampler(z, labels.to(self.device))
        return _to_uint8(images.float(), self.cfg.output)[:, 0].cpu()

    def _standing_sampler(self) -> nn.Module:
        if self._sampler is None:
            draws = torch.Generator().manual_seed(
                runtime.derived_seed(self.config.seed, "standing statistics"))

            def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
                z = torch.randn(n, self.cfg.latent_dim, generator=draws)
                labels = torch.randint(self.num_classes, (n,), generator=draws)
                return z.to(self.device), labels.to(self.device)

            sampler = self.G_ema if self.G_ema is not None else self.G
            self._sampler = with_standing_statistics(sampler, draw, self.cfg.standing_batches)
        return self._sampler


def build_gan_task(inputs: TaskInputs) -> GanTask:
    """The registry factory for every GAN entry."""
    return GanTask(inputs)
