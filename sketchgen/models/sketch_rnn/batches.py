"""Sketch-RNN's batches: stroke-3 sketches padded into stroke-5 :class:`StrokeBatch` tensors,
the padded length of a data set, and magenta's augmentation of training batches.

Padded length
    Sketches are padded to one row past the longest kept sketch of the data set (magenta:
    exactly the longest, which gives the longest sketches no end row).
Augmentation (training batches only)
    Each sketch's ``dx`` and ``dy`` are scaled by independent factors uniform in
    ``1 +- random_scale_factor``; then every interior point of a stroke from its 4th point
    on (never a stroke's last point) is dropped with probability ``augment_stroke_prob``, its
    offset merged into the previous kept point -- magenta's ``augment_strokes``, vectorised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from rasterize.strokes import stroke3_to_stroke5

if TYPE_CHECKING:
    from sketchgen.models.sketch_rnn.config import SketchRNNConfig


class StrokeBatch(NamedTuple):
    strokes5: torch.Tensor  # float32 (B, 1 + N, 5): start token, points, end rows
    lengths: torch.Tensor  # int64 (B,): points per sketch
    labels: torch.Tensor  # int64 (B,)

    def to(self, device: torch.device) -> StrokeBatch:
        return StrokeBatch(*(t.to(device) for t in self))


def pad_batch(sketches: Sequence[np.ndarray], padded_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Stroke-3 sketches -> stroke-5 ``(B, 1 + padded_length, 5)`` and their lengths."""
    strokes5 = np.stack([stroke3_to_stroke5(s, padded_length) for s in sketches])
    return strokes5, np.array([len(s) for s in sketches], dtype=np.int64)


def make_batch(sketches: Sequence[np.ndarray], labels: np.ndarray,
               padded_length: int) -> StrokeBatch:
    strokes5, lengths = pad_batch(sketches, padded_length)
    return StrokeBatch(torch.from_numpy(strokes5), torch.from_numpy(lengths),
                       torch.as_tensor(np.asarray(labels), dtype=torch.int64))


def drop_points(stroke3: np.ndarray, uniform: np.ndarray, prob: float) -> np.ndarray:
    """magenta's ``augment_strokes``: drop each stroke's points from the 4th on (never the last
    one of a stroke) where ``uniform < prob``, adding each dropped offset to the point kept
    before it, so every later point keeps its absolute position."""
    lifted = stroke3[:, 2] > 0.5
    index = np.arange(len(stroke3))
    starts = np.r_[True, lifted[:-1]]
    position_in_stroke = index - np.maximum.accumulate(np.where(starts, index, 0))
    keep = ~((position_in_stroke >= 3) & ~lifted & (uniform < prob))
    if keep.all():
        return stroke3
    group = np.cumsum(keep) - 1
    out = np.empty((int(keep.sum()), 3), dtype=stroke3.dtype)
    for column in (0, 1):
        out[:, column] = np.bincount(group, weights=stroke3[:, column], minlength=len(out))
    out[:, 2] = stroke3[keep, 2]
    return out


def augment(stroke3: np.ndarray, scale_draws: np.ndarray, drop_draws: np.ndarray,
            config: SketchRNNConfig) -> np.ndarray:
    """Random x/y scaling then point dropping; the draws are U(0, 1) from the task's generator."""
    factors = 1.0 + (scale_draws - 0.5) * 2.0 * config.random_scale_factor
    scaled = stroke3.copy()
    scaled[:, :2] *= factors.astype(stroke3.dtype)
    if config.augment_stroke_prob > 0:
        scaled = drop_points(scaled, drop_draws, config.augment_stroke_prob)
    return scaled


def random_batch(sketches: Sequence[np.ndarray], labels: np.ndarray, batch_size: int,
                 padded_length: int, config: SketchRNNConfig,
                 generator: torch.Generator) -> StrokeBatch:
    """``batch_size`` distinct random training sketches (all of them if fewer), augmented;
    every random number comes from ``generator`` (its state is all a resume needs)."""
    count = min(batch_size, len(sketches))
    chosen = torch.randperm(len(sketches), generator=generator)[:count].numpy()
    picked = [sketches[i] for i in chosen]
    scale_draws = torch.rand((count, 2), generator=generator, dtype=torch.float64).numpy()
    drop_draws = torch.rand(sum(len(s) for s in picked), generator=generator,
                            dtype=torch.float64).numpy()
    bounds = np.cumsum([len(s) for s in picked])[:-1]
    per_sketch = zip(picked, scale_draws, np.split(drop_draws, bounds), strict=True)
    augmented = [augment(s, scale, drops, config) for s, scale, drops in per_sketch]
    return make_batch(augmented, labels[chosen], padded_length)


def padded_length_for(*splits: Sequence[np.ndarray]) -> int:
    """One row past the longest sketch of all splits: every sketch gets an end row."""
    return max(len(s) for split in splits for s in split) + 1
