"""The diffusion process: the cosine noise schedule, forward noising, classifier-free guidance
and the two samplers, DDIM over a few steps and DDPM's ancestral sampler over all of them.

Steps are indexed 0 .. T-1 here; step t is the paper's t + 1, so ``alpha_bar[t]`` is
Ho et al.'s ᾱ_{t+1} and "before step 0" is the clean image (ᾱ = 1).

- Schedule (Nichol & Dhariwal 2021, eq. 17): ᾱ(t) = f(t) / f(0), f(t) = cos²((t/T + s) /
  (1 + s) · π/2) with s = 0.008, each β_t = 1 - ᾱ_t / ᾱ_{t-1} clipped to at most 0.999.
- Forward noising (Ho et al. 2020, eq. 4): x_t = √ᾱ_t x_0 + √(1 - ᾱ_t) ε.
- Guidance (Ho & Salimans 2022): ε̃ = ε(x, ∅) + s (ε(x, y) - ε(x, ∅)); s = 1 is the
  conditional model, s = 0 the unconditional one, s > 1 guided.
- DDIM (Song et al. 2021, eq. 12): x_prev = √ᾱ_prev x̂_0 + √(1 - ᾱ_prev - σ²) ε̃ + σ z,
  σ = η √((1 - ᾱ_prev) / (1 - ᾱ_t)) √(1 - ᾱ_t / ᾱ_prev); η = 0 is deterministic, and η = 1
  over all T steps is the ancestral sampler.
- Ancestral (Ho et al., Algorithm 2, with the posterior mean of eq. 7): x_{t-1} = μ̃(x_t, x̂_0)
  + √β̃_t z, β̃_t = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t).

Both samplers clip the predicted clean image x̂_0 to [-1, 1] and re-derive ε̃ from it, as
the authors' code does (``clip_denoised``, guided-diffusion's ``_predict_eps_from_xstart``).
DDIM visits ``steps`` evenly spaced steps ending ... T-1 (the "trailing" spacing of Lin et al.
2024), so its first step starts from pure noise as the ancestral sampler's does.

Sampling draws its noise from a given CPU generator, on the CPU, and moves it to the device:
the same generator state gives the same samples on every device. Pure torch: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

COSINE_OFFSET = 0.008  # s: keeps β_0 from being vanishingly small (Nichol & Dhariwal)
MAX_BETA = 0.999  # their clipping of β_t, so the last steps stay finite near t = T

# ε(x_t, t, labels) for a batch; labels index the classes, or the null label
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def cosine_alpha_bar(timesteps: int) -> torch.Tensor:
    """ᾱ_t for t = 0 .. T-1 (float64), from the clipped β_t of the cosine schedule."""
    def f(t: torch.Tensor) -> torch.Tensor:
        return torch.cos((t / timesteps + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2

    steps = torch.arange(timesteps + 1, dtype=torch.float64)
    alpha_bar = f(steps) / f(torch.zeros((), dtype=torch.float64))
    betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=MAX_BETA)
    return torch.cumprod(1 - betas, dim=0)


def noised(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor
           ) -> torch.Tensor:
    """x_t = √ᾱ_t x_0 + √(1 - ᾱ_t) ε for a batch (``t`` (B,) step indices)."""
    a = alpha_bar[t].to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def guided(denoiser: Denoiser, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
           null_label: int | None, scale: float) -> torch.Tensor:
    """ε̃ with guidance ``scale``; one pass of the net when it is 0 or 1 (or the net is
    unconditional: ``null_label`` None), else one pass of a doubled batch."""
    if null_label is None or scale == 1:
        return denoiser(x, t, labels)
    unconditional = torch.full_like(labels, null_label)
    if scale == 0:
        return denoiser(x, t, unconditional)
    both = denoiser(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, unconditional]))
    conditional, plain = both.chunk(2)
    return plain + scale * (conditional - plain)


def predicted_x0(x: torch.Tensor, eps: torch.Tensor, alpha_bar: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x̂_0 clipped to [-1, 1], ε re-derived from the clipped x̂_0) at a step of ᾱ."""
    x0 = ((x - math.sqrt(1 - alpha_bar) * eps) / math.sqrt(alpha_bar)).clamp(-1, 1)
    return x0, (x - math.sqrt(alpha_bar) * x0) / math.sqrt(1 - alpha_bar)


def ddim_step(x: torch.Tensor, eps: torch.Tensor, alpha_bar: float, alpha_bar_prev: float,
              eta: float, noise: torch.Tensor | None) -> torch.Tensor:
    """One DDIM update from a step of ᾱ to one of ᾱ_prev (1 for the clean image); ``noise``
    may be None when σ is 0 (η = 0, or the last step)."""
    x0, eps = predicted_x0(x, eps, alpha_bar)
    sigma = eta * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)
                            * (1 - alpha_bar / alpha_bar_prev))
    x_prev = math.sqrt(alpha_bar_prev) * x0 + math.sqrt(1 - alpha_bar_prev - sigma**2) * eps
    return x_prev if sigma == 0 else x_prev + sigma * noise


def ddim_timesteps(timesteps: int, steps: int) -> list[int]:
    """The ``steps`` step indices DDIM visits, from T-1 down, evenly spaced ("trailing")."""
    return [round(timesteps - i * timesteps / steps) - 1 for i in range(steps)]


def _draw(shape: tuple[int, ...], generator: torch.Generator, device: torch.device
          ) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(device)


def ddim_sample(denoiser: Denoiser, labels: torch.Tensor, shape: tuple[int, ...],
                alpha_bar: torch.Tensor, steps: int, eta: float, null_label: int | None,
                scale: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Images x_0 (n, *shape) by DDIM from x_T ~ N(0, I); a step's noise is drawn only when
    its σ is not 0, so at η = 0 the result depends on x_T alone."""
    x = _draw((len(labels), *shape), generator, device)
    visited = ddim_timesteps(len(alpha_bar), steps)
    for index, t in enumerate(visited):
        a, a_prev = alpha_bar[t].item(), (alpha_bar[visited[index + 1]].item()
                                          if index + 1 < len(visited) else 1.0)
        eps = guided(denoiser, x, torch.full_like(labels, t), labels, null_label, scale)
        noisy = eta > 0 and a_prev < 1
        x = ddim_step(x, eps, a, a_prev, eta, _draw(x.shape, generator, device) if noisy else None)
    return x


def ancestral_sample(denoiser: Denoiser, labels: torch.Tensor, shape: tuple[int, ...],
                     alpha_bar: torch.Tensor, null_label: int | None, scale: float,
                     generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Images x_0 (n, *shape) by DDPM's ancestral sampler over all T steps (noise drawn at
    every step but the last, in the order ``ddim_sample`` draws it at η = 1)."""
    x = _draw((len(labels), *shape), generator, device)
    for t in reversed(range(len(alpha_bar))):
        a = alpha_bar[t].item()
        a_prev = alpha_bar[t - 1].item() if t else 1.0
        beta = 1 - a / a_prev
        eps = guided(denoiser, x, torch.full_like(labels, t), labels, null_label, scale)
        x0, _ = predicted_x0(x, eps, a)
        mean = (math.sqrt(a_prev) * beta / (1 - a) * x0
                + math.sqrt(1 - beta) * (1 - a_prev) / (1 - a) * x)
        x = mean
        if t:
            x = x + math.sqrt(beta * (1 - a_prev) / (1 - a)) * _draw(x.shape, generator, device)
    return x
