"""Standing batch-norm statistics for sampling a GAN's generator (Brock et al. 2019).

``with_standing_statistics`` gives a sampling copy of G whose batch norms hold the population
statistics of G's current weights; a SyncBatchNorm in that copy becomes a local batch norm,
since only the main rank samples.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

BatchNorm = nn.modules.batchnorm._BatchNorm  # every batch norm, SyncBatchNorm included
STANDING_BATCH = 128  # inputs per batch of the estimate (see GanConfig.standing_batches)


class _LocalBatchNorm(BatchNorm):
    """A batch norm of any input rank that never synchronises: what a SyncBatchNorm becomes
    in the sampling copy, since only the main rank samples and a collective there would wait
    for ranks that never join."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        pass  # SyncBatchNorm served 1d and 2d inputs alike; so does this


def _without_sync(module: nn.Module) -> None:
    """Replace every SyncBatchNorm inside ``module`` by an equal local batch norm."""
    for name, child in module.named_children():
        if isinstance(child, nn.SyncBatchNorm):
            local = _LocalBatchNorm(child.num_features, child.eps, child.momentum,
                                    child.affine, child.track_running_stats)
            local.load_state_dict(child.state_dict())
            setattr(module, name, local.to(child.running_mean.device))
        else:
            _without_sync(child)


@torch.no_grad()
def with_standing_statistics(generator: nn.Module, draw: Callable[[int], tuple],
                             batches: int) -> nn.Module:
    """A copy of ``generator`` in eval mode whose batch norms hold the population statistics
    of its *current* weights ("standing statistics", Brock et al. 2019), estimated over
    ``batches`` batches of ``draw(STANDING_BATCH)`` inputs; ``generator`` itself if it has
    no batch norm or ``batches`` is 0. Why: the running averages kept in training lag
    behind a G that is still changing fast (Keras's momentum 0.99 keeps 37% of the initial
    statistics after 100 steps), and samples drawn with them can be all background, while
    sampling in training mode would make every image depend on the others in its batch."""
    if batches == 0 or not any(isinstance(m, BatchNorm) for m in generator.modules()):
        return generator
    standing = copy.deepcopy(generator).eval()
    _without_sync(standing)
    for norm in (m for m in standing.modules() if isinstance(m, BatchNorm)):
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches below
        norm.train()  # only the norms: dropout stays off, as when sampling
    for _ in range(batches):
        standing(*draw(STANDING_BATCH))
    return standing.eval()
