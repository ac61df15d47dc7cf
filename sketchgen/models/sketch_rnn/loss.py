"""magenta's training cost: the mixture density of the offsets, the pen cross-entropy, the KL
term with its tolerance and annealed weight, and :func:`loss_terms`, the cost of one batch.

Loss (targets are stroke-5 rows ``1..N``, N = padded length)
    ``L_R = (sum over the n real points of the offset NLL + sum over ALL N rows of the pen
    cross-entropy) / N``, averaged over the batch. The pen term runs over the padding too,
    so the model learns to keep predicting "end"; magenta masks it only in its separate
    inference-mode evaluation, not in training nor in the validation cost it reports, and
    neither do we (the masked term, over the n real points, still / N, is computed beside
    it: ``pen_masked``, for evaluations in magenta's inference mode).
    ``L_KL = -mean(1 + presig - mu^2 - exp(presig)) / 2`` over batch and ``z`` dimensions;
    ``loss = L_R + w * max(L_KL, kl_tolerance)`` with
    ``w = w_max - (w_max - w_start) * r^step`` (``config.kl_weight_at``). Difference: the
    mixture NLL is computed in log space (logsumexp, exact log(1 - rho^2)) instead of
    magenta's ``-log(p + 1e-6)``, which is exact where magenta's is and stays finite and
    informative where p underflows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F

from sketchgen.models.sketch_rnn.config import kl_weight_at
from sketchgen.models.sketch_rnn.model import MixtureParams, Noise, SketchRNN

if TYPE_CHECKING:
    from sketchgen.models.sketch_rnn.batches import StrokeBatch

LOG_2PI = math.log(2.0 * math.pi)


def log_one_minus_tanh2(a: torch.Tensor) -> torch.Tensor:
    """``log(1 - tanh(a)^2) = 2 log sech(a)``, exact for any ``a`` (no 1 - rho^2 underflow)."""
    a = a.abs()
    return 2.0 * (math.log(2.0) - a - F.softplus(-2.0 * a))


def bivariate_normal_log_pdf(
    x: torch.Tensor, y: torch.Tensor, params: MixtureParams
) -> torch.Tensor:
    """log N((x, y); mu, Sigma) per component (Graves 2013, eq. 24-25), ``(..., M)``."""
    log_1m_rho2 = log_one_minus_tanh2(params.rho_pre)
    rho = torch.tanh(params.rho_pre)
    nx = (x.unsqueeze(-1) - params.mu_x) * torch.exp(-params.log_sigma_x)
    ny = (y.unsqueeze(-1) - params.mu_y) * torch.exp(-params.log_sigma_y)
    z = nx * nx + ny * ny - 2.0 * rho * nx * ny
    return (-0.5 * z * torch.exp(-log_1m_rho2) - LOG_2PI - params.log_sigma_x
            - params.log_sigma_y - 0.5 * log_1m_rho2)


def offset_nll(params: MixtureParams, targets: torch.Tensor) -> torch.Tensor:
    """``-log sum_k pi_k N_k(dx, dy)`` at every step, ``(...)``."""
    log_pi = F.log_softmax(params.pi_logits, dim=-1)
    log_pdf = bivariate_normal_log_pdf(targets[..., 0], targets[..., 1], params)
    return -torch.logsumexp(log_pi + log_pdf, dim=-1)


class ReconstructionLoss(NamedTuple):
    offset: torch.Tensor  # masked mixture NLL of the offsets, / (batch * N)
    pen: torch.Tensor  # pen-state cross-entropy over all N rows, / (batch * N)
    pen_masked: torch.Tensor  # the same over the real points only (magenta's inference mode)

    @property
    def total(self) -> torch.Tensor:
        return self.offset + self.pen

    @property
    def masked_total(self) -> torch.Tensor:
        """L_R as magenta's inference mode evaluates it: nothing scored after the end."""
        return self.offset + self.pen_masked


def reconstruction_loss(params: MixtureParams, targets: torch.Tensor) -> ReconstructionLoss:
    """magenta's ``r_cost`` split in its two terms; ``targets`` are stroke-5 rows 1..N."""
    not_ended = 1.0 - targets[..., 4]
    offset = (offset_nll(params, targets) * not_ended).mean()
    pen = F.cross_entropy(params.pen_logits.reshape(-1, 3),
                          targets[..., 2:].argmax(dim=-1).reshape(-1), reduction="none")
    return ReconstructionLoss(offset, pen.mean(), (pen * not_ended.reshape(-1)).mean())


def kl_divergence(mu: torch.Tensor, presig: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(presig)) || N(0, I)) averaged over batch AND latent dimensions (magenta)."""
    return -0.5 * torch.mean(1.0 + presig - mu.square() - presig.exp())


class LossTerms(NamedTuple):
    loss: torch.Tensor  # what is minimised: L_R + w * max(L_KL, tolerance)
    offset: torch.Tensor
    pen: torch.Tensor
    kl: torch.Tensor  # L_KL before the tolerance (0 outside vae mode)
    kl_weight: float
    pen_masked: torch.Tensor  # the pen term over the real points only (not minimised)


def kl_cost(kl: torch.Tensor, tolerance: float, batch_kl: torch.Tensor | None = None
            ) -> torch.Tensor:
    """``max(L_KL, tolerance)`` with its gradient. ``batch_kl``: when ``kl`` is one shard's
    of a data-parallel batch, the whole batch's (the mean over ranks). The tolerance is
    decided on it, as one process would decide; then the mean of the shards' costs is the
    batch's cost and the mean of their gradients the batch's gradient."""
    decider = kl if batch_kl is None else batch_kl
    return torch.where(decider > tolerance, kl, torch.full_like(kl, tolerance))


def loss_terms(model: SketchRNN, batch: StrokeBatch, step: int,
               noise: Noise | torch.Generator | None = None,
               mean_over_ranks: Callable[[torch.Tensor], torch.Tensor] | None = None
               ) -> LossTerms:
    """magenta's cost for one batch at optimizer step ``step`` (from 0). ``noise``: drawn
    for this batch (:meth:`SketchRNN.draw_noise`), or a generator to draw it from.
    ``mean_over_ranks`` (data parallel, ``batch`` is this rank's shard): the mean of a
    scalar over ranks, for :func:`kl_cost`."""
    config = model.config
    if not isinstance(noise, Noise):
        noise = model.draw_noise(batch, noise)
    out = model(batch.strokes5, batch.lengths, batch.labels, noise)
    recon = reconstruction_loss(out.params, batch.strokes5[:, 1:])
    weight = kl_weight_at(config, step)
    if out.mu is None:
        kl = recon.total.new_zeros(())
        loss = recon.total
    else:
        kl = kl_divergence(out.mu, out.presig)
        batch_kl = None if mean_over_ranks is None else mean_over_ranks(kl.detach())
        loss = recon.total + weight * kl_cost(kl, config.kl_tolerance, batch_kl)
    return LossTerms(loss, recon.offset, recon.pen, kl, weight, recon.pen_masked)
