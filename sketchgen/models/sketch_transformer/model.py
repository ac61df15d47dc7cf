"""The Sketch Transformer's networks: :class:`TransformerDecoder`, a causal Transformer over
stroke-5 rows with Sketch-RNN's output head, and :class:`SketchTransformer`, the decoder with
its first token (a class embedding, a VAE code through Sketch-RNN's encoder, or none).

Sequence
    ``[first token, S0, row 1, ..., row N-1]`` -> the mixture parameters of rows ``1..N``:
    the output at ``S0`` predicts row 1, as Sketch-RNN's decoder reading ``S0`` does. Each
    row is embedded by ``Linear(5, d_model)``, each position adds its embedding
    (``blocks.Positions``); after the blocks a final LayerNorm (GPT-2) and Sketch-RNN's
    head, ``Linear(d_model, 3 + 6M)`` split by ``sketch_rnn.model.MixtureParams``.
First token (modes as Sketch-RNN's)
    ``class``: a learned embedding per category; ``vae``: ``Linear(z)``, z from Sketch-RNN's
    bidirectional LSTM encoder (``sketch_rnn.model.Encoder``) and reparametrised as there;
    ``unconditional``: none, ``S0`` comes first.
Decoding
    The decoder has Sketch-RNN's decoding interface (``initial_state``, ``stepper``), so
    Sketch-RNN's sampler (``sketch_rnn.sampling.sample_strokes5``: temperature, batching,
    finished sketches leaving the batch) draws from it unchanged. With ``cache`` (the default)
    a step runs only the new position against the cached keys and values of the earlier
    ones; without it a step runs the whole prefix again -- the reference that the cache must
    reproduce, and the baseline of ``benchmarks/bench_sketch_transformer.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from sketchgen.models.sketch_rnn.cells import generator_device
from sketchgen.models.sketch_rnn.model import (
    NO_NOISE,
    Encoder,
    Forward,
    MixtureParams,
    Noise,
)
from sketchgen.models.sketch_transformer.blocks import Block, KeysValues, Positions, init_gpt2

if TYPE_CHECKING:
    from sketchgen.models.sketch_rnn.batches import StrokeBatch
    from sketchgen.models.sketch_transformer.config import SketchTransformerConfig

State = tuple[torch.Tensor, ...]
Step = Callable[[torch.Tensor, torch.Tensor, State], tuple[MixtureParams, State]]


class TransformerDecoder(nn.Module):
    """A causal Transformer emitting a mixture of bivariate Gaussians and pen logits per row."""

    def __init__(self, config: SketchTransformerConfig, cache: bool = True):
        super().__init__()
        width, self.num_mixture, self.cache = config.d_model, config.num_mixture, cache
        self.row_embedding = nn.Linear(5, width)
        self.positions = Positions(config.positions, config.context, width)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = nn.LayerNorm(width)
        self.output = nn.Linear(width, 3 + 6 * config.num_mixture)
        init_gpt2(self, list(self.blocks))

    def forward(self, inputs: torch.Tensor, first: torch.Tensor | None) -> MixtureParams:
        """``inputs`` (B, T, 5) after the ``first`` token (B, d_model) or none -> the
        MixtureParams of (B, T, ...): at each row, the next row's distribution."""
        hidden, _ = self.run(self.embed(inputs, first, 0))
        return self.head(hidden[:, 0 if first is None else 1 :])

    def embed(self, rows: torch.Tensor, first: torch.Tensor | None, start: int) -> torch.Tensor:
        """Rows (B, T, 5), after the ``first`` token if given, at positions from ``start``."""
        x = self.row_embedding(rows)
        if first is not None:
            x = torch.cat([first.unsqueeze(1), x], dim=1)
        return self.drop(x + self.positions(start, x.shape[1]))

    def run(self, x: torch.Tensor, caches: list[KeysValues] | None = None, filled: int = 0
            ) -> tuple[torch.Tensor, list[KeysValues]]:
        """The blocks over ``x``, after ``filled`` positions whose keys and values are in
        ``caches`` (one pair of buffers per block; None: ``x`` is all there is)."""
        keys_values = []
        for index, block in enumerate(self.blocks):
            x, pair = block(x, None if caches is None else caches[index], filled)
            keys_values.append(pair)
        return x, keys_values

    def head(self, hidden: torch.Tensor) -> MixtureParams:
        return MixtureParams.split(self.output(self.norm(hidden)), self.num_mixture)

    # -- Sketch-RNN's decoding interface ------------------------------------------------------

    def initial_state(self, condition: torch.Tensor | None, batch: int, like: torch.Tensor
                      ) -> State:
        """Nothing decoded yet: no rows seen and, with the cache, empty key and value
        buffers per block. The first token is ``stepper``'s ``fixed``."""
        seen = like.new_zeros(batch, 0, 5)
        if not self.cache:
            return (seen,)
        heads = self.blocks[0].attention.heads
        empty = like.new_zeros(batch, heads, 0, self.output.in_features // heads)
        return (seen,) + (empty,) * (2 * len(self.blocks))

    def stepper(self, condition: torch.Tensor | None, batch: int) -> tuple[torch.Tensor, Step]:
        """``(fixed, step)`` as Sketch-RNN's decoder gives them: ``fixed`` is the first token
        (B, d_model), or (B, 0) when there is none; ``step(rows, fixed, state) ->
        (MixtureParams of (B, ...), state)`` decodes the row after ``rows`` (B, 5). The
        state: the rows seen so far (B, t, 5), then with the cache each block's key and value
        buffers."""
        fixed = self.output.weight.new_zeros(batch, 0) if condition is None else condition

        def cached(rows: torch.Tensor, fixed: torch.Tensor, state: State):
            seen, buffers = state[0], state[1:]
            first = fixed if fixed.shape[1] else None
            filled = 0 if seen.shape[1] == 0 else seen.shape[1] + (first is not None)
            x = self.embed(rows.unsqueeze(1), None if filled else first, filled)
            caches = list(zip(buffers[0::2], buffers[1::2], strict=True))
            hidden, caches = self.run(x, caches, filled)
            seen = torch.cat([seen, rows.unsqueeze(1)], dim=1)
            return self.head(hidden[:, -1]), (seen, *(b for pair in caches for b in pair))

        def recomputed(rows: torch.Tensor, fixed: torch.Tensor, state: State):
            seen = torch.cat([state[0], rows.unsqueeze(1)], dim=1)
            hidden, _ = self.run(self.embed(seen, fixed if fixed.shape[1] else None, 0))
            return self.head(hidden[:, -1]), (seen,)

        return fixed, cached if self.cache else recomputed


class SketchTransformer(nn.Module):
    """Optional first token (class embedding, or Sketch-RNN's encoder in vae mode) and the
    Transformer decoder; the call and ``draw_noise`` are Sketch-RNN's, so that
    ``sketch_rnn.loss.loss_terms`` scores it and ``sketch_rnn.sampling`` samples it."""

    def __init__(self, config: SketchTransformerConfig, num_classes: int = 0, cache: bool = True):
        super().__init__()
        config.validate()
        self.config = config
        self.encoder = self.latent = self.class_embedding = None
        if config.mode == "vae":
            self.encoder = Encoder(config.sketch_rnn())  # initialised as Sketch-RNN's
            self.latent = nn.Linear(config.z_size, config.d_model)
        elif config.mode == "class":
            if num_classes < 1:
                raise ValueError("class mode needs num_classes >= 1")
            self.class_embedding = nn.Embedding(num_classes, config.d_model)
        self.decoder = TransformerDecoder(config, cache)
        for first in (self.latent, self.class_embedding):
            if first is not None:
                init_gpt2(first, [])

    def condition(self, z: torch.Tensor | None, labels: torch.Tensor | None):
        """The first token: from z (vae), the class embedding (class), or None."""
        if self.latent is not None:
            return self.latent(z)
        if self.class_embedding is not None:
            return self.class_embedding(labels)
        return None

    def draw_noise(self, batch: StrokeBatch, generator: torch.Generator | None) -> Noise:
        """What a pass over ``batch`` needs from ``generator``: the reparametrisation's eps
        in vae mode (Sketch-RNN's encoder here is the fused LSTM: no dropout masks)."""
        if self.encoder is None:
            return NO_NOISE
        eps = torch.randn((len(batch.lengths), self.config.z_size), generator=generator,
                          device=generator_device(generator))
        return Noise(None, None, eps, None)

    def forward(self, strokes5: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
                noise: Noise = NO_NOISE) -> Forward:
        """Teacher-forced pass over padded stroke-5 ``(B, 1 + N, 5)``: params for rows 1..N.
        vae mode without ``noise`` uses ``z = mu``."""
        mu = presig = z = None
        if self.encoder is not None:
            mu, presig = self.encoder(strokes5[:, 1:], lengths)
            z = mu if noise.eps is None else mu + torch.exp(presig / 2.0) * noise.eps.to(mu.device)
        params = self.decoder(strokes5[:, :-1], self.condition(z, labels))
        return Forward(params, mu, presig)
