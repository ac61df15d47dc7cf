"""The Transformer's layers: causal self-attention with a key/value cache, the pre-norm block
(GPT-2's), the two kinds of position embedding, and GPT-2's initialisation.

Block (Radford et al. 2019; Xiong et al. 2020 on why the norm goes first)
    ``x = x + drop(attention(LayerNorm(x)))``, then ``x = x + drop(mlp(LayerNorm(x)))`` with
    ``mlp = Linear(d, 4d), GELU, Linear(4d, d)``. Dropout where Vaswani et al. put it, on
    each branch's output and on the embeddings. GPT-2 and nanoGPT also drop attention
    weights, which needs the (T, T) attention matrix that the fused attention kernel never
    forms: on one CPU thread at batch 100, that matrix and its masks took a third of a
    training step. Dropout draws from torch's global generator, whose state the harness
    checkpoints.
Cache
    :meth:`CausalSelfAttention.forward` writes the keys and values of new positions into
    buffers after those of the earlier ones (growing them by doubling), so that decoding one
    position attends to every earlier one without recomputing them.
Initialisation (GPT-2)
    Every linear and embedding weight N(0, 0.02^2), biases 0; the projections that end a
    residual branch N(0, (0.02 / sqrt(2 n_layer))^2), so that the residual stream's variance
    does not grow with depth.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from sketchgen.models.sketch_transformer.config import SketchTransformerConfig

MLP_RATIO = 4  # the feed-forward layer's width over d_model (Vaswani et al., GPT-2)
INIT_STD = 0.02  # GPT-2's weight scale
SINUSOID_BASE = 10_000.0  # Vaswani et al.'s longest wavelength, / 2 pi

KeysValues = tuple[torch.Tensor, torch.Tensor]  # each (B, heads, positions, head size)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which a position sees itself and the positions before."""

    def __init__(self, config: SketchTransformerConfig):
        super().__init__()
        self.heads = config.n_head
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)

    def forward(self, x: torch.Tensor, cache: KeysValues | None = None, filled: int = 0
                ) -> tuple[torch.Tensor, KeysValues]:
        """``x`` (B, T, d) -> (B, T, d) and the keys and values of its positions. With a
        ``cache`` (buffers holding the keys and values of the ``filled`` positions before
        ``x``), ``x``'s are written after them and the buffers returned: decoding, where
        ``x`` is the first positions or one more, which sees every position cached."""
        batch, steps, width = x.shape
        q, k, v = (t.view(batch, steps, self.heads, -1).transpose(1, 2)
                   for t in self.qkv(x).split(width, dim=2))
        if cache is not None:
            if filled and steps != 1:
                raise ValueError("after the first positions, a cache takes one at a time")
            cache = tuple(with_room(buffer, filled + steps) for buffer in cache)
            for buffer, new in zip(cache, (k, v), strict=True):
                buffer[:, :, filled : filled + steps] = new
            k, v = (buffer[:, :, : filled + steps] for buffer in cache)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=not filled)
        out = self.out(y.transpose(1, 2).reshape(batch, steps, width))
        return out, (k, v) if cache is None else cache


def with_room(buffer: torch.Tensor, needed: int) -> torch.Tensor:
    """``buffer`` (B, heads, capacity, head size) if it holds ``needed`` positions, else a copy
    with room for at least twice as many (decoding n positions copies O(n) in all)."""
    capacity = buffer.shape[2]
    if capacity >= needed:
        return buffer
    grown = buffer.new_zeros(*buffer.shape[:2], max(needed, 2 * capacity), buffer.shape[3])
    grown[:, :, :capacity] = buffer
    return grown


class Block(nn.Module):
    """GPT-2's pre-norm Transformer block."""

    def __init__(self, config: SketchTransformerConfig):
        super().__init__()
        width = config.d_model
        self.attention_norm = nn.LayerNorm(width)
        self.attention = CausalSelfAttention(config)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, MLP_RATIO * width), nn.GELU(),
                                 nn.Linear(MLP_RATIO * width, width))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KeysValues | None = None, filled: int = 0
                ) -> tuple[torch.Tensor, KeysValues]:
        attended, keys_values = self.attention(self.attention_norm(x), cache, filled)
        x = x + self.drop(attended)
        return x + self.drop(self.mlp(self.mlp_norm(x))), keys_values

    def residual_projections(self) -> tuple[nn.Linear, nn.Linear]:
        """The layers that end a residual branch (GPT-2 scales their initial weights)."""
        return self.attention.out, self.mlp[-1]


def sinusoids(count: int, width: int) -> torch.Tensor:
    """Vaswani et al.'s position encodings ``(count, width)``: sin and cos of position /
    base^(2i / width), interleaved."""
    position = torch.arange(count, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, width, 2, dtype=torch.float32)
                          * (-math.log(SINUSOID_BASE) / width))
    table = torch.zeros(count, width)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: width // 2])
    return table


class Positions(nn.Module):
    """The position embedding added to each token: learned (GPT-2) or sinusoidal (Vaswani
    et al.; a buffer that is not saved, since it follows from the sizes)."""

    def __init__(self, kind: str, count: int, width: int):
        super().__init__()
        self.learned = nn.Embedding(count, width) if kind == "learned" else None
        if self.learned is None:
            self.register_buffer("table", sinusoids(count, width), persistent=False)

    def forward(self, start: int, count: int) -> torch.Tensor:
        """The embeddings of positions ``start .. start + count - 1``, (count, width)."""
        if self.learned is None:
            return self.table[start : start + count]
        index = torch.arange(start, start + count, device=self.learned.weight.device)
        return self.learned(index)


def init_gpt2(module: nn.Module, blocks: list[Block]) -> None:
    """GPT-2's initialisation of ``module``'s linear and embedding layers (see the module doc)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Embedding)):
            nn.init.normal_(layer.weight, std=INIT_STD)
        if isinstance(layer, nn.Linear):
            nn.init.zeros_(layer.bias)
    for block in blocks:
        for layer in block.residual_projections():
            nn.init.normal_(layer.weight, std=INIT_STD / math.sqrt(2 * len(blocks)))
