"""DdpmTask: a denoising diffusion model trained for the training harness (protocol:
``sketchgen.models.task.Task``), and ``build_ddpm_task``, the registry's factory.

A step: a batch of real bitmaps scaled to [-1, 1], a random step t and noise ε for each,
labels dropped to "no label" at ``label_dropout``; the loss is the mean squared error of the
predicted noise (Ho et al.'s L_simple); one Adam step on the clipped gradient, then the EMA.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch.nn import functional as F

from sketchgen import runtime
from sketchgen.models.ddpm.config import DdpmConfig
from sketchgen.models.ddpm.diffusion import ancestral_sample, cosine_alpha_bar, ddim_sample, noised
from sketchgen.models.task import RunSettings, TaskInputs, grad_norms_of, update_ema


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (n, size, size) [0, 255] -> float (n, 1, size, size) in [-1, 1]."""
    return images.float()[:, None] / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float (n, 1, size, size) in [-1, 1] -> uint8 (n, size, size), rounded."""
    return ((images[:, 0] + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


class DdpmTask:
    """Trains one noise-prediction U-Net (see ``sketchgen.models.task.Task``).

    Randomness: batch indices, steps t, noise and label dropout come from the task's own CPU
    ``torch.Generator``, drawn on the CPU and moved to the device (as the GAN task does), so a
    checkpoint resumes and samples on any device; dropout uses torch's global generator,
    whose state the harness checkpoints.

    Sampling: from the EMA of the weights (the net itself when ``ema_decay`` is 0), in eval
    mode, by the configured sampler; all noise from the caller's CPU generator.

    Data parallel under torchrun: every rank draws the global batch from its identically
    seeded generator and trains on its shard; gradients are averaged before clipping, so
    every rank clips and steps alike. Group norm normalises each image alone, so the shards
    add up to the single-process step (dropout, off by default, draws its masks per rank).
    """

    supports_distributed = True

    def __init__(self, inputs: TaskInputs) -> None:
        self.config: RunSettings = inputs.config
        self.cfg: DdpmConfig = inputs.model
        self.device = inputs.device
        self.data = inputs.data
        self.num_classes = len(inputs.class_names)
        self.conditional = self.cfg.conditional
        self.net = self.cfg.unet(self.num_classes).to(self.device)
        self.null_label = self.net.null_label  # None: an unconditional net
        self.ema = copy.deepcopy(self.net).eval() if self.cfg.ema_decay > 0 else None
        self.run_net = runtime.maybe_compile(self.net, self.config, self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.cfg.lr)
        self.scaler = runtime.grad_scaler(self.config, self.device)
        self.alpha_bar = cosine_alpha_bar(self.cfg.timesteps)  # float64 on the CPU
        self.train_alpha_bar = self.alpha_bar.float().to(self.device)
        self.generator = torch.Generator().manual_seed(  # on the CPU: see the class docstring
            runtime.derived_seed(self.config.seed, "task"))

    def train_step(self, step: int) -> dict[str, float]:
        x0, t, noise, labels = self._batch(self.config.batch_size)
        with runtime.autocast(self.config, self.device):
            predicted = self.run_net(noised(x0, t, noise, self.train_alpha_bar), t, labels)
        loss = F.mse_loss(predicted.float(), noise)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        runtime.average_gradients(self.net.parameters())
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.opt)  # skipped by a float16 scaler when the gradients overflow
        self.scaler.update()
        if self.ema is not None:
            update_ema(self.ema, self.net, self.cfg.ema_decay, step)
        return {"loss": loss.item()}

    def _batch(self, n: int) -> tuple[torch.Tensor, ...]:
        """This rank's shard of a global batch of n: (x_0, t, ε, labels) on the device."""
        index = torch.randint(len(self.data.labels), (n,), generator=self.generator)
        t = torch.randint(self.cfg.timesteps, (n,), generator=self.generator)
        noise = torch.randn(n, 1, self.config.size, self.config.size, generator=self.generator)
        dropped = torch.rand(n, generator=self.generator) < self.cfg.label_dropout
        index, t, noise, dropped = (runtime.shard(v).to(self.device)
                                    for v in (index, t, noise, dropped))
        labels = self.data.labels[index]
        if self.null_label is not None:
            labels = labels.masked_fill(dropped, self.null_label)
        return to_unit(self.data.images[index]), t, noise, labels

    # the rest of the Task protocol

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"net": self.net}

    def grad_norms(self) -> dict[str, float]:
        return grad_norms_of(self.networks())

    def state_dict(self) -> dict[str, Any]:
        state = {"net": self.net.state_dict(), "opt": self.opt.state_dict(),
                 "scaler": self.scaler.state_dict(), "generator": self.generator.get_state()}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"].cpu())
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        net = self.ema if self.ema is not None else self.net
        shape = (1, self.config.size, self.config.size)
        labels = labels.to(self.device)
        with runtime.eval_mode(net):
            if self.cfg.sampler == "ddim":
                images = ddim_sample(net, labels, shape, self.alpha_bar, self.cfg.sample_steps,
                                     self.cfg.eta, self.null_label, self.cfg.guidance_scale,
                                     generator, self.device)
            else:
                images = ancestral_sample(net, labels, shape, self.alpha_bar, self.null_label,
                                          self.cfg.guidance_scale, generator, self.device)
        return to_uint8(images).cpu()


def build_ddpm_task(inputs: TaskInputs) -> DdpmTask:
    """The registry factory of ``ddpm``."""
    return DdpmTask(inputs)
