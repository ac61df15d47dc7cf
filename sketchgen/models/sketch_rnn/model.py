"""Sketch-RNN's networks: :class:`Encoder`, :class:`Decoder` and :class:`SketchRNN`, the
decoder's output split into mixture parameters (:class:`MixtureParams`), and the random
numbers of one teacher-forced pass (:class:`Noise`).

Model
    A bidirectional LSTM encoder (256 per direction) reads the points of a sketch (stroke-5
    rows ``1..n``, nothing after the end) and gives ``mu`` and ``presig`` (= log sigma^2) of
    ``z`` (128); ``z = mu + exp(presig / 2) * eps``. The decoder LSTM (512) starts from
    ``tanh(Linear(z))`` split into ``(h, c)``, reads ``[stroke-5 row, z]`` at every step and
    emits ``3 + 6M`` numbers: pen logits, then M (=20) mixture logits, ``mu_x``, ``mu_y``,
    ``log sigma_x``, ``log sigma_y`` and ``rho`` before its tanh.
    Modes: ``vae`` (above), ``unconditional`` (decoder only: zero initial state, no ``z``) and
    ``class`` (decoder only, a learned category embedding takes ``z``'s place both in the
    initial state and in every input) -- the one to compare with the conditional GAN.
    The recurrent layers are :mod:`.cells`; the ``mu`` / ``presig`` / initial-state layers
    start at N(0, 0.001^2) as magenta's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from sketchgen.models.sketch_rnn.cells import FusedLSTM, generator_device, make_rnn

if TYPE_CHECKING:
    from sketchgen.models.sketch_rnn.batches import StrokeBatch
    from sketchgen.models.sketch_rnn.config import SketchRNNConfig

# Sketches per length bucket of the fused encoder on CPU, where the work grows with batch x
# steps: skipping the steps that only read padding pays (encoder forward + backward at batch
# 100 on one core, measured: 10 per bucket 1.16 s, 20: 1.23 s, 25: 1.43 s, 100: 2.64 s). On a
# GPU a step costs about the same for any batch, so there the batch stays whole.
CPU_ENCODER_BUCKET = 10


class MixtureParams(NamedTuple):
    """The decoder's raw outputs at every step, split (all ``(..., M)`` except the pen)."""

    pen_logits: torch.Tensor  # (..., 3): p_down, p_up, p_end
    pi_logits: torch.Tensor
    mu_x: torch.Tensor
    mu_y: torch.Tensor
    log_sigma_x: torch.Tensor
    log_sigma_y: torch.Tensor
    rho_pre: torch.Tensor  # rho = tanh(rho_pre)

    @classmethod
    def split(cls, output: torch.Tensor, num_mixture: int) -> MixtureParams:
        return cls(output[..., :3], *output[..., 3:].split(num_mixture, dim=-1))


def _small_linear(in_features: int, out_features: int) -> nn.Linear:
    """magenta's ``super_linear(init_w="gaussian", weight_start=0.001)``: starts near zero, so
    z starts near the prior and the initial state near tanh(0)."""
    layer = nn.Linear(in_features, out_features)
    nn.init.normal_(layer.weight, std=0.001)
    nn.init.zeros_(layer.bias)
    return layer


def _zero_state(batch: int, hidden: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    zeros = like.new_zeros(batch, hidden)
    return zeros, zeros


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence within its own length (the padding stays at the end)."""
    steps = x.shape[1]
    t = torch.arange(steps, device=x.device).unsqueeze(0)
    last = lengths.unsqueeze(1) - 1
    index = torch.where(t <= last, last - t, t)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


def last_outputs(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``outputs[b, lengths[b] - 1]``: the state after each sequence's last real step."""
    index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, outputs.shape[-1])
    return outputs.gather(1, index).squeeze(1)


class Encoder(nn.Module):
    """Bidirectional LSTM over a sketch's points -> ``mu``, ``presig`` of ``z``.

    The backward direction reads each sketch reversed within its own length, so both
    directions end on real points whatever the padding (what ``sequence_length`` does in
    magenta's ``bidirectional_dynamic_rnn``). With the fused cell on CPU the batch is read
    in buckets of similar length, each only as far as its longest sketch: the same result
    without the steps that only read padding (see ``CPU_ENCODER_BUCKET``).
    """

    def __init__(self, config: SketchRNNConfig):
        super().__init__()
        size = config.enc_rnn_size
        self.forward_rnn = make_rnn(config, config.enc_model, 5, size)
        self.backward_rnn = make_rnn(config, config.enc_model, 5, size)
        self.mu = _small_linear(2 * size, config.z_size)
        self.presig = _small_linear(2 * size, config.z_size)
        self.size = size

    def forward(self, points: torch.Tensor, lengths: torch.Tensor,
                masks: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)):
        """``points`` (B, T, 5): stroke-5 rows 1..T (T >= max length), ``masks``: the
        forward and backward cells' dropout masks (``cells.StepLSTM.draw_masks``, covering at
        least ``max(lengths)`` steps) -> (mu, presig)."""
        fused = isinstance(self.forward_rnn, FusedLSTM)  # a per-step cell pays per step
        if not fused or points.device.type != "cpu":
            last = self._last_states(points, lengths, masks)
        else:  # the fused cell has no dropout masks
            order = torch.argsort(lengths, stable=True)
            buckets = [self._last_states(points[index], lengths[index])
                       for index in order.split(CPU_ENCODER_BUCKET)]
            last = torch.cat(buckets).index_select(0, torch.argsort(order))
        return self.mu(last), self.presig(last)

    def _last_states(self, points: torch.Tensor, lengths: torch.Tensor,
                     masks: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
                     ) -> torch.Tensor:
        """``[h_forward, h_backward]`` after each sketch's last point, (B, 2 * size)."""
        points = points[:, : int(lengths.max())]
        state = _zero_state(len(points), self.size, points)
        out_fw, _ = self.forward_rnn(points, state, masks[0])
        out_bw, _ = self.backward_rnn(reverse_padded(points, lengths), state, masks[1])
        return torch.cat([last_outputs(out_fw, lengths), last_outputs(out_bw, lengths)], dim=1)


class Decoder(nn.Module):
    """Autoregressive LSTM emitting a mixture of bivariate Gaussians and pen logits per step."""

    def __init__(self, config: SketchRNNConfig, condition_size: int):
        super().__init__()
        size = config.dec_rnn_size
        self.size, self.num_mixture = size, config.num_mixture
        self.rnn = make_rnn(config, config.dec_model, 5 + condition_size, size)
        self.initial = _small_linear(condition_size, 2 * size) if condition_size else None
        self.output = nn.Linear(size, 3 + 6 * config.num_mixture)
        nn.init.xavier_uniform_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def initial_state(self, condition: torch.Tensor | None, batch: int, like: torch.Tensor):
        if self.initial is None:
            return _zero_state(batch, self.size, like)
        h, c = torch.tanh(self.initial(condition)).chunk(2, dim=1)
        return h.contiguous(), c.contiguous()

    def stepper(self, condition: torch.Tensor | None, batch: int):
        """``(fixed, step)`` for decoding one row at a time: ``fixed`` (B, 4H) is the input
        gates' constant part (condition and bias, computed once instead of every step) and
        ``step(rows, fixed, state) -> (MixtureParams of (B, ...), state)``; rows are (B, 5)."""
        weight, bias = self.rnn.input_projection()
        weight_rows = weight[:, :5].t().contiguous()
        if condition is not None:
            fixed = F.linear(condition, weight[:, 5:], bias)
        elif bias is not None:
            fixed = bias.expand(batch, -1)
        else:
            fixed = weight.new_zeros(batch, weight.shape[0])

        def step(rows: torch.Tensor, fixed: torch.Tensor, state):
            state = self.rnn.step(torch.addmm(fixed, rows, weight_rows), state)
            return MixtureParams.split(self.output(state[0]), self.num_mixture), state

        return fixed, step

    def forward(self, inputs: torch.Tensor, condition: torch.Tensor | None, state,
                masks: torch.Tensor | None = None):
        """``inputs`` (B, T, 5) -> (MixtureParams of (B, T, ...), final state)."""
        if condition is not None:
            tiled = condition.unsqueeze(1).expand(-1, inputs.shape[1], -1)
            inputs = torch.cat([inputs, tiled], dim=2)
        out, state = self.rnn(inputs, state, masks)
        return MixtureParams.split(self.output(out), self.num_mixture), state


class Noise(NamedTuple):
    """The random numbers of one teacher-forced pass (:meth:`SketchRNN.draw_noise`), every
    tensor with the batch as its first dimension so that ``Noise(*(shard(t) ...))`` gives a
    data-parallel rank exactly its rows of what one process draws; None where unused."""

    encoder_forward: torch.Tensor | None  # dropout masks (B, encoder steps, enc_rnn_size)
    encoder_backward: torch.Tensor | None
    eps: torch.Tensor | None  # N(0, I) of the reparametrisation, (B, z_size); vae mode
    decoder: torch.Tensor | None  # dropout masks (B, padded length, dec_rnn_size)

    def map(self, function) -> Noise:
        """``function`` applied to every tensor that is there."""
        return Noise(*(None if t is None else function(t) for t in self))


NO_NOISE = Noise(None, None, None, None)


class Forward(NamedTuple):
    params: MixtureParams
    mu: torch.Tensor | None  # vae mode only
    presig: torch.Tensor | None


class SketchRNN(nn.Module):
    """Encoder (vae mode), optional class embedding, and decoder."""

    def __init__(self, config: SketchRNNConfig, num_classes: int = 0):
        super().__init__()
        config.validate()
        self.config = config
        self.encoder = Encoder(config) if config.mode == "vae" else None
        if config.mode == "class":
            if num_classes < 1:
                raise ValueError("class mode needs num_classes >= 1")
            self.class_embedding = nn.Embedding(num_classes, config.class_embedding_size)
        else:
            self.class_embedding = None
        condition_size = {"vae": config.z_size, "class": config.class_embedding_size,
                          "unconditional": 0}[config.mode]
        self.decoder = Decoder(config, condition_size)

    def condition(self, z: torch.Tensor | None, labels: torch.Tensor | None):
        """What the decoder is conditioned on: z, the class embedding, or nothing."""
        if self.config.mode == "vae":
            return z
        if self.config.mode == "class":
            return self.class_embedding(labels)
        return None

    def draw_noise(self, batch: StrokeBatch, generator: torch.Generator | None) -> Noise:
        """What a pass over ``batch`` needs from ``generator``, drawn for the whole batch in
        a fixed order: the encoder's forward and backward masks (as many steps as its
        longest sketch), ``eps``, the decoder's masks (all padded rows). Masks only in
        training mode with recurrent dropout."""
        size, rows = len(batch.lengths), batch.strokes5.shape[1] - 1
        forward_masks = backward_masks = eps = None
        if self.encoder is not None:
            steps = int(batch.lengths.max())
            forward_masks = self.encoder.forward_rnn.draw_masks(steps, size, generator)
            backward_masks = self.encoder.backward_rnn.draw_masks(steps, size, generator)
            eps = torch.randn((size, self.config.z_size), generator=generator,
                              device=generator_device(generator))
        decoder_masks = self.decoder.rnn.draw_masks(rows, size, generator)
        return Noise(forward_masks, backward_masks, eps, decoder_masks)

    def forward(self, strokes5: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
                noise: Noise = NO_NOISE) -> Forward:
        """Teacher-forced pass over padded stroke-5 ``(B, 1 + N, 5)``: params for rows 1..N.
        ``noise`` from :meth:`draw_noise`; vae mode without it uses ``z = mu``."""
        mu = presig = z = None
        if self.encoder is not None:
            masks = (noise.encoder_forward, noise.encoder_backward)
            mu, presig = self.encoder(strokes5[:, 1:], lengths, masks)
            z = mu
            if noise.eps is not None:
                z = mu + torch.exp(presig / 2.0) * noise.eps.to(mu.device)
        condition = self.condition(z, labels)
        state = self.decoder.initial_state(condition, len(strokes5), strokes5)
        params, _ = self.decoder(strokes5[:, :-1], condition, state, noise.decoder)
        return Forward(params, mu, presig)
