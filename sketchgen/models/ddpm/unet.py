"""The noise-prediction network: a small U-Net in the layout of Ho et al. (2020), appendix B.

Levels of residual blocks (group norm, SiLU, 3x3 convolutions, the time embedding added
between the two convolutions) at halving resolutions, self-attention at the lowest one, a
middle of residual block, attention, residual block, and an upward path that joins each
level's skip connections. The time step enters as a sinusoidal embedding through a two-layer
MLP; a class label, for class-conditional models, as a learned embedding added to it, with
one extra row ``num_classes`` that stands for "no label" (classifier-free guidance).

Pure torch modules: nothing here reads or writes a file or knows about training; building
draws only the initial weights, from torch's global generator (the harness seeds it).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

MAX_GROUPS = 32  # group norm: Ho et al.'s 32 groups (of 4 channels at their width 128)
MIN_GROUP = 4  # channels per group at least, so a narrow net does not normalise each alone


def norm(channels: int) -> nn.GroupNorm:
    """Group norm with as many groups as divide ``channels``, up to MAX_GROUPS of at least
    MIN_GROUP channels each (one group, i.e. layer norm, for very narrow nets)."""
    groups = max((g for g in range(1, MAX_GROUPS + 1)
                  if channels % g == 0 and channels // g >= MIN_GROUP), default=1)
    return nn.GroupNorm(groups, channels)


def zeroed(module: nn.Module) -> nn.Module:
    """``module`` with zero weights and bias: a residual branch that starts as the identity
    (Nichol & Dhariwal's initialisation), and a net that starts predicting zero noise."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The Transformer's sinusoidal embedding of integer steps ``t`` (B,) -> (B, dim): sines
    then cosines at frequencies 10000^(-i / (dim/2)), i < dim/2 (guided-diffusion's
    ``timestep_embedding``; Ho et al. divide by dim/2 - 1)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * frequencies[None]
    embedding = torch.cat([angles.sin(), angles.cos()], dim=1)
    return F.pad(embedding, (0, dim % 2))  # an odd dim gets one zero column


class ResidualBlock(nn.Module):
    """GN, SiLU, conv; + the projected embedding; GN, SiLU, dropout, conv; + the input (a 1x1
    convolution when the channel count changes)."""

    def __init__(self, channels: int, out_channels: int, embed_dim: int, dropout: float) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(norm(channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.embed = nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, out_channels))
        self.out_layers = nn.Sequential(norm(out_channels), nn.SiLU(), nn.Dropout(dropout),
                                        zeroed(nn.Conv2d(out_channels, out_channels, 3, padding=1)))
        self.skip = (nn.Identity() if channels == out_channels
                     else nn.Conv2d(channels, out_channels, 1))

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x) + self.embed(embedding)[:, :, None, None]
        return self.skip(x) + self.out_layers(h)


class SelfAttention(nn.Module):
    """One-head self-attention over the pixels of a feature map, as a residual (Ho et al.)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = zeroed(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        batch, channels, height, width = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(batch, 3, channels, height * width).unbind(1)
        attended = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                  v.transpose(1, 2))
        return x + self.out(attended.transpose(1, 2).reshape(batch, channels, height, width))


class Downsample(nn.Module):
    """A stride-2 3x3 convolution: 28 -> 14 -> 7 px."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour doubling, then a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """ε(x_t, t, label): the noise in a noised one-channel image, same shape as the image.

    ``channel_mults[i] * width`` channels at level i, the image halved between levels;
    ``res_blocks`` residual blocks per level going down (one more going up, which also takes
    the skip of the level's downsampling); attention after each block of the lowest level and
    in the middle. ``num_classes`` 0: unconditional (labels ignored, :attr:`null_label`
    None); else labels index ``num_classes + 1`` embeddings, the last, :attr:`null_label`,
    meaning "no label".
    """

    def __init__(self, width: int, channel_mults: tuple[int, ...], res_blocks: int,
                 dropout: float, num_classes: int = 0) -> None:
        super().__init__()
        self.width = width
        self.null_label = num_classes if num_classes else None
        embed_dim = 4 * width  # Ho et al.: the time MLP widens 4x
        self.time_mlp = nn.Sequential(nn.Linear(width, embed_dim), nn.SiLU(),
                                      nn.Linear(embed_dim, embed_dim))
        self.label_embedding = nn.Embedding(num_classes + 1, embed_dim) if num_classes else None
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        lowest = len(channel_mults) - 1
        self.down = nn.ModuleList()
        skips, channels = [width], width
        for level, mult in enumerate(channel_mults):
            for _ in range(res_blocks):
                self.down.append(self._block(channels, mult * width, embed_dim, dropout,
                                             level == lowest))
                channels = mult * width
                skips.append(channels)
            if level != lowest:
                self.down.append(Downsample(channels))
                skips.append(channels)
        self.middle = nn.ModuleList([ResidualBlock(channels, channels, embed_dim, dropout),
                                     SelfAttention(channels),
                                     ResidualBlock(channels, channels, embed_dim, dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(res_blocks + 1):
                self.up.append(self._block(channels + skips.pop(), mult * width, embed_dim,
                                           dropout, level == lowest))
                channels = mult * width
            if level:
                self.up.append(Upsample(channels))
        self.head = nn.Sequential(norm(channels), nn.SiLU(),
                                  zeroed(nn.Conv2d(channels, 1, 3, padding=1)))

    @staticmethod
    def _block(channels: int, out_channels: int, embed_dim: int, dropout: float,
               attention: bool) -> nn.Module:
        block = ResidualBlock(channels, out_channels, embed_dim, dropout)
        return _Sequence(block, SelfAttention(out_channels)) if attention else block

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embedding = self.time_mlp(timestep_embedding(t, self.width))
        if self.label_embedding is not None:
            embedding = embedding + self.label_embedding(labels)
        h = self.stem(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, embedding)
            skips.append(h)
        for layer in self.middle:
            h = layer(h, embedding)
        for layer in self.up:
            if not isinstance(layer, Upsample):
                h = torch.cat([h, skips.pop()], dim=1)
            h = layer(h, embedding)
        return self.head(h)


class _Sequence(nn.Module):
    """A residual block followed by attention, both taking the embedding."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, embedding)
        return x
