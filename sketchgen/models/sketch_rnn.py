"""Sketch-RNN (Ha & Eck 2018, "A Neural Representation of Sketch Drawings") in torch.

Follows magenta's ``sketch_rnn`` (model.py, utils.py, rnn.py) wherever it is specified; the
places where we differ are listed here, each with its reason. Sequence conventions (stroke-3,
stroke-5, the start token, end rows AFTER the last point, normalisation by the training
std) are those of :mod:`rasterize.strokes`.

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
Cells
    ``lstm`` without recurrent dropout runs each whole sequence through ``nn.LSTM`` in one
    call (cuDNN on GPU). Layer normalisation (``layer_norm``) or recurrent dropout without
    memory loss (Semeniuta et al. 2016: dropout on the candidate ``g`` only, a fresh mask
    every step, as magenta) need a per-step cell, :class:`StepLSTM`; asking for recurrent
    dropout therefore selects it for ``lstm`` too, instead of silently doing nothing as a
    ``dropout=`` on a one-layer ``nn.LSTM`` would. Initialisation as magenta: input weights
    Glorot-uniform, recurrent weights orthogonal per gate, forget-gate bias 1, the ``mu`` /
    ``presig`` / initial-state layers N(0, 0.001^2).
Loss (magenta's training cost; targets are stroke-5 rows ``1..N``, N = padded length)
    ``L_R = (sum over the n real points of the offset NLL + sum over ALL N rows of the pen
    cross-entropy) / N``, averaged over the batch. The pen term runs over the padding too,
    so the model learns to keep predicting "end"; magenta masks it only in its separate
    inference-mode evaluation, not in training nor in the validation cost it reports, and
    neither do we. ``L_KL = -mean(1 + presig - mu^2 - exp(presig)) / 2`` over batch and
    ``z`` dimensions; ``loss = L_R + w * max(L_KL, kl_tolerance)`` with
    ``w = w_max - (w_max - w_start) * r^step``. Difference: the mixture NLL is computed in
    log space (logsumexp, exact log(1 - rho^2)) instead of magenta's ``-log(p + 1e-6)``,
    which is exact where magenta's is and stays finite and informative where p underflows.
    Padded length: sketches are padded to one row past the longest kept sketch of the data
    set (magenta: exactly the longest, which gives the longest sketches no end row).
Optimisation
    Adam; ``lr = (lr0 - lr_min) * decay^step + lr_min``; gradients clipped elementwise to
    ``+-grad_clip`` (magenta's ``clip_by_value``, not a norm clip). ``step`` counts from 0
    as magenta's ``global_step`` (the harness's step 1 uses ``w_start`` and ``lr0``).
Augmentation (training batches only)
    Each sketch's ``dx`` and ``dy`` are scaled by independent factors uniform in
    ``1 +- random_scale_factor``; then every interior point of a stroke from its 4th point
    on (never a stroke's last point) is dropped with probability ``augment_stroke_prob``, its
    offset merged into the previous kept point -- magenta's ``augment_strokes``, vectorised.
Sampling with temperature T (:func:`sample_strokes5`)
    mixture logits / T and pen logits / T before their softmaxes, and each component's
    sigmas * sqrt(T) (covariance * T), the paper's definition. (magenta's notebook code
    passes ``sqrt(T)`` to a function that squares it, i.e. scales sigmas by T.)
    ``T -> 0`` tends to greedy decoding. A sketch ends when it draws the end state or at
    ``max_len`` points; the end state is not allowed before the first point, so every
    sample has at least one point to render.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rasterize.drawings import Drawing
from rasterize.strokes import (
    END_ROW,
    START_TOKEN,
    stroke3_to_canvas,
    stroke3_to_stroke5,
    stroke5_to_stroke3,
)
from sketchgen.config import MAX_STEPS, RATES, UNITS, check_fields, check_model_size, setting
from sketchgen.errors import ConfigError, FieldError
from sketchgen.runtime import check_shards, eval_mode

if TYPE_CHECKING:
    from sketchgen.config import TrainConfig

MODES = ("vae", "unconditional", "class")
CELLS = ("lstm", "layer_norm")
SEQUENCE_LENGTHS = (1, 10_000)  # points per sketch (magenta: 250; Google's raw drawings: more)
KL = "[0, 100]"  # KL weights and tolerance (magenta: 0.01 to 0.5, tolerance 0.2)
LN_EPSILON = 1e-3  # magenta's layer-norm epsilon (inside the square root)
FORGET_BIAS = 1.0  # added to the forget gate so memory is kept at the start of training
LOG_2PI = math.log(2.0 * math.pi)
# Sketches per length bucket of the fused encoder on CPU, where the work grows with batch x
# steps: skipping the steps that only read padding pays (encoder forward + backward at batch
# 100 on one core, measured: 10 per bucket 1.16 s, 20: 1.23 s, 25: 1.43 s, 100: 2.64 s). On a
# GPU a step costs about the same for any batch, so there the batch stays whole.
CPU_ENCODER_BUCKET = 10


@dataclass(frozen=True)
class SketchRNNConfig:
    """Sketch-RNN's own settings; defaults are magenta's unless a comment says otherwise.

    The batch size, seed and step count come from the run's ``TrainConfig`` (magenta trains
    with batches of 100: ``--batch-size 100``).
    """

    mode: str = setting("vae", choices=MODES)  # see the module doc
    enc_rnn_size: int = setting(256, within=UNITS)  # encoder LSTM units per direction
    dec_rnn_size: int = setting(512, within=UNITS)  # decoder LSTM units
    z_size: int = setting(128, within=UNITS)  # latent size (paper: 32, 64 or 128 recommended)
    # class mode: the category vector in z's place; = z_size
    class_embedding_size: int = setting(128, within=UNITS)
    num_mixture: int = setting(20, within=(1, 100))  # bivariate Gaussians in the offset mixture
    # magenta also has "hyper": not here
    enc_model: str = setting("lstm", choices=CELLS)
    dec_model: str = setting("lstm", choices=CELLS)
    # magenta's default is True; off here so the default cell is the fused nn.LSTM. Turning it
    # on runs the per-step StepLSTM, with or without layer norm.
    use_recurrent_dropout: bool = False
    # keep probability of the candidate-update dropout
    recurrent_dropout_keep: float = setting(0.90, within=RATES)
    # longer sketches are dropped (counts printed, kept in checkpoint)
    max_seq_len: int = setting(250, within=SEQUENCE_LENGTHS)
    # x and y scaled by independent U(1 - f, 1 + f)
    random_scale_factor: float = setting(0.15, within="[0, 1)")
    # probability of dropping an interior point
    augment_stroke_prob: float = setting(0.10, within="[0, 1)")
    learning_rate: float = setting(1e-3, within=RATES)  # Adam's starting rate
    # learning-rate decay per step, towards min_learning_rate
    decay_rate: float = setting(0.9999, within=RATES)
    min_learning_rate: float = setting(1e-5, within=RATES)  # floor of the decayed rate
    grad_clip: float = setting(1.0, within="(0, 1_000]")  # each gradient element to +-grad_clip
    kl_weight: float = setting(0.5, within=KL)  # w_max, the KL weight annealing converges to
    kl_weight_start: float = setting(0.01, within=KL)  # w_start, the KL weight at step 0
    # r in w = w_max - (w_max - w_start) * r^step
    kl_decay_rate: float = setting(0.99995, within=RATES)
    kl_tolerance: float = setting(0.2, within=KL)  # KL below this is not penalised (free bits)
    # shares of the data held out for validation and testing (seeded split; never trained on)
    valid_fraction: float = setting(0.05, within="[0, 1)")
    test_fraction: float = setting(0.05, within="[0, 1)")
    # steps between validation costs in the log; 0 = never
    eval_every: int = setting(500, within=(0, MAX_STEPS))
    sample_temperature: float = setting(1.0, within="(0, 100]")  # of `sample`, `sample_drawings`
    # cap on points per sampled sketch; a capped sketch is ended
    sample_max_len: int = setting(250, within=SEQUENCE_LENGTHS)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError for settings the model cannot run with."""
        check_fields(self)
        if self.valid_fraction + self.test_fraction >= 1:
            raise FieldError("test_fraction", "and valid_fraction must leave training data, "
                                              f"got {self.test_fraction} and {self.valid_fraction}")

    @property
    def conditional(self) -> bool:
        """Samples by class label (the registry's attribute)."""
        return self.mode == "class"

    def check(self, train_config: TrainConfig) -> None:
        """The registry's hook: this config against the run's settings."""
        self.validate()
        if self.mode == "class" and len(train_config.categories) < 1:
            raise ConfigError("sketch-rnn: mode=class needs at least one category")
        check_shards(train_config.batch_size, f"sketch-rnn: batch_size {train_config.batch_size}")
        check_model_size(lambda: [SketchRNN(self, max(1, len(train_config.categories)))],
                         f"model {train_config.model!r}")

    def cell_for(self, model: str) -> tuple[str, float]:
        """``("fused", 1.0)`` for nn.LSTM, else ``("step", keep)`` for :class:`StepLSTM`."""
        keep = self.recurrent_dropout_keep if self.use_recurrent_dropout else 1.0
        if model == "lstm" and keep == 1.0:
            return "fused", 1.0
        return "step", keep


SKETCH_RNN = SketchRNNConfig()


# -- schedules ---------------------------------------------------------------------------------


def kl_weight_at(config: SketchRNNConfig, step: int) -> float:
    """``w_max - (w_max - w_start) * r^step``; step counts from 0."""
    return config.kl_weight - (config.kl_weight - config.kl_weight_start) * (
        config.kl_decay_rate**step
    )


def learning_rate_at(config: SketchRNNConfig, step: int) -> float:
    """``(lr0 - lr_min) * decay^step + lr_min``; step counts from 0."""
    return (config.learning_rate - config.min_learning_rate) * (
        config.decay_rate**step
    ) + config.min_learning_rate


# -- the mixture density output and the losses -------------------------------------------------


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

    @property
    def total(self) -> torch.Tensor:
        return self.offset + self.pen


def reconstruction_loss(params: MixtureParams, targets: torch.Tensor) -> ReconstructionLoss:
    """magenta's ``r_cost`` split in its two terms; ``targets`` are stroke-5 rows 1..N."""
    not_ended = 1.0 - targets[..., 4]
    offset = (offset_nll(params, targets) * not_ended).mean()
    pen = F.cross_entropy(params.pen_logits.reshape(-1, 3),
                          targets[..., 2:].argmax(dim=-1).reshape(-1))
    return ReconstructionLoss(offset, pen)


def kl_divergence(mu: torch.Tensor, presig: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(presig)) || N(0, I)) averaged over batch AND latent dimensions (magenta)."""
    return -0.5 * torch.mean(1.0 + presig - mu.square() - presig.exp())


# -- recurrent layers --------------------------------------------------------------------------


def _init_lstm_weights(weight_ih: torch.Tensor, weight_hh: torch.Tensor) -> None:
    """Glorot-uniform input weights and an orthogonal recurrent matrix per gate (magenta)."""
    nn.init.xavier_uniform_(weight_ih)
    for gate in weight_hh.chunk(4, dim=0):
        nn.init.orthogonal_(gate)


class FusedLSTM(nn.Module):
    """A plain LSTM: one ``nn.LSTM`` call per sequence (cuDNN on GPU, oneDNN on CPU)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        with torch.no_grad():
            _init_lstm_weights(self.lstm.weight_ih_l0, self.lstm.weight_hh_l0)
            self.lstm.bias_ih_l0.zero_()
            self.lstm.bias_hh_l0.zero_()
            self.lstm.bias_ih_l0[hidden_size : 2 * hidden_size] = FORGET_BIAS  # torch: i,f,g,o

    def draw_masks(self, steps: int, batch: int, generator: torch.Generator | None) -> None:
        """No recurrent dropout: nothing to draw."""
        return None

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
                masks: None = None):
        """``x`` (B, T, I), ``state`` (h, c) each (B, H) -> outputs (B, T, H), (h, c)."""
        h, c = state
        out, (h, c) = self.lstm(x, (h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()))
        return out, (h[0], c[0])

    def input_projection(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(W_ih, bias)``: :meth:`step` takes ``x @ W_ih.T + bias`` as its input."""
        return self.lstm.weight_ih_l0, self.lstm.bias_ih_l0 + self.lstm.bias_hh_l0

    def step(self, gates_x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """One step from precomputed input gates (sampling): the same function as forward."""
        h, c = state
        i, f, g, o = torch.addmm(gates_x, h, self.lstm.weight_hh_l0.t()).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class StepLSTM(nn.Module):
    """magenta's LSTM cells run one step at a time: optional layer normalisation (of each gate
    pre-activation and of the cell before its tanh) and optional recurrent dropout of the
    candidate ``g`` (a fresh mask every step, training only; see :meth:`draw_masks`)."""

    def __init__(self, input_size: int, hidden_size: int, layer_norm: bool, keep_prob: float):
        super().__init__()
        self.hidden_size, self.layer_norm, self.keep_prob = hidden_size, layer_norm, keep_prob
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        _init_lstm_weights(self.weight_ih.data, self.weight_hh.data)
        if layer_norm:  # magenta: no bias before layer norm; its beta plays that role
            self.gates_gamma = nn.Parameter(torch.ones(4, hidden_size))
            self.gates_beta = nn.Parameter(torch.zeros(4, hidden_size))
            self.cell_gamma = nn.Parameter(torch.ones(hidden_size))
            self.cell_beta = nn.Parameter(torch.zeros(hidden_size))
        else:
            self.bias = nn.Parameter(torch.zeros(4 * hidden_size))

    def draw_masks(self, steps: int, batch: int,
                   generator: torch.Generator | None) -> torch.Tensor | None:
        """Dropout masks (batch, steps, hidden) for a training pass, already divided by the
        keep probability; None in eval mode or without dropout. Drawn step-major, the order
        the cell used when it drew its own masks, so runs and checkpoints from before
        :class:`Noise` continue with the same random numbers."""
        if not (self.training and self.keep_prob < 1.0):
            return None
        draws = torch.rand((steps, batch, self.hidden_size), generator=generator,
                           device=_generator_device(generator))
        return ((draws < self.keep_prob).float() / self.keep_prob).transpose(0, 1)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
                masks: torch.Tensor | None = None):
        """``x`` (B, T, I), ``state`` (h, c) each (B, H), ``masks`` (B, >= T, H) from
        :meth:`draw_masks` or None -> outputs (B, T, H), (h, c)."""
        steps = x.shape[1]
        weight, bias = self.input_projection()
        gates_x = F.linear(x, weight, bias)  # the input part of every step in one product
        if masks is not None:
            masks = masks.to(device=x.device, dtype=x.dtype)
        outputs = []
        for t in range(steps):
            state = self.step(gates_x[:, t], state, None if masks is None else masks[:, t])
            outputs.append(state[0])
        return torch.stack(outputs, dim=1), state

    def input_projection(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.weight_ih, None if self.layer_norm else self.bias

    def step(self, gates_x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
             mask: torch.Tensor | None = None):
        h, c = state
        batch, hidden = h.shape
        gates = torch.addmm(gates_x, h, self.weight_hh.t())
        if self.layer_norm:
            gates = F.layer_norm(gates.view(batch, 4, hidden), (hidden,), eps=LN_EPSILON)
            gates = (gates * self.gates_gamma + self.gates_beta).view(batch, 4 * hidden)
        i, f, g, o = gates.chunk(4, dim=1)
        g = torch.tanh(g) if mask is None else torch.tanh(g) * mask
        c = c * torch.sigmoid(f + FORGET_BIAS) + torch.sigmoid(i) * g
        if self.layer_norm:
            shown = F.layer_norm(c, (hidden,), self.cell_gamma, self.cell_beta, LN_EPSILON)
        else:
            shown = c
        return torch.tanh(shown) * torch.sigmoid(o), c


def _generator_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def make_rnn(config: SketchRNNConfig, model: str, input_size: int, hidden_size: int) -> nn.Module:
    kind, keep = config.cell_for(model)
    if kind == "fused":
        return FusedLSTM(input_size, hidden_size)
    return StepLSTM(input_size, hidden_size, layer_norm=model == "layer_norm", keep_prob=keep)


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


# -- the model -----------------------------------------------------------------------------------


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
        forward and backward cells' dropout masks (:meth:`StepLSTM.draw_masks`, covering at
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
                              device=_generator_device(generator))
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


class LossTerms(NamedTuple):
    loss: torch.Tensor  # what is minimised: L_R + w * max(L_KL, tolerance)
    offset: torch.Tensor
    pen: torch.Tensor
    kl: torch.Tensor  # L_KL before the tolerance (0 outside vae mode)
    kl_weight: float


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
    return LossTerms(loss, recon.offset, recon.pen, kl, weight)


# -- data: splits, normalisation, batches ------------------------------------------------------


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


# -- sampling ------------------------------------------------------------------------------------


def _categorical(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row by inverse CDF with a uniform from ``generator`` (magenta's method;
    device-independent: the uniforms come from the generator's device)."""
    cdf = torch.softmax(logits, dim=-1).cumsum(dim=-1)
    draw = torch.rand((len(logits), 1), generator=generator,
                      device=_generator_device(generator)).to(logits.device)
    return (cdf < draw).sum(dim=-1).clamp(max=logits.shape[-1] - 1)


def sample_step(params: MixtureParams, temperature: float, generator: torch.Generator,
                allow_end: bool = True) -> torch.Tensor:
    """Draw one stroke-5 row per sketch from the outputs of one step, ``(B, 5)``."""
    pen_logits = params.pen_logits / temperature
    if not allow_end:
        pen_logits = pen_logits.clone()
        pen_logits[:, 2] = -math.inf
    pen = _categorical(pen_logits, generator)
    component = _categorical(params.pi_logits / temperature, generator).unsqueeze(1)

    def pick(values: torch.Tensor) -> torch.Tensor:
        return values.gather(1, component).squeeze(1)

    sigma_scale = math.sqrt(temperature)
    sigma_x = torch.exp(pick(params.log_sigma_x)) * sigma_scale
    sigma_y = torch.exp(pick(params.log_sigma_y)) * sigma_scale
    rho = torch.tanh(pick(params.rho_pre))
    normal = torch.randn((len(pen), 2), generator=generator,
                         device=_generator_device(generator)).to(sigma_x.device)
    dx = pick(params.mu_x) + sigma_x * normal[:, 0]
    dy = pick(params.mu_y) + sigma_y * (rho * normal[:, 0]
                                        + torch.sqrt(1.0 - rho * rho) * normal[:, 1])
    row = torch.cat([dx.unsqueeze(1), dy.unsqueeze(1), F.one_hot(pen, 3).to(dx.dtype)], dim=1)
    ended = pen == 2
    row[ended] = torch.as_tensor(END_ROW, device=row.device)  # end rows carry no offset
    return row


@torch.no_grad()
def sample_strokes5(
    model: SketchRNN,
    n: int,
    generator: torch.Generator,
    temperature: float = 1.0,
    max_len: int = 250,
    z: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> list[np.ndarray]:
    """``n`` sketches as stroke-5 ``[start, points..., end]`` (float32), all decoded together.

    vae mode decodes ``z`` (default: drawn from the prior N(0, I)); class mode needs
    ``labels``; finished sketches leave the batch so later steps only run the live ones.
    """
    device = next(model.parameters()).device
    decoder = model.decoder
    if model.config.mode == "vae" and z is None:
        z = torch.randn((n, model.config.z_size), generator=generator,
                        device=_generator_device(generator))
    if model.config.mode == "class" and labels is None:
        raise ValueError("a class-conditional model needs labels to sample")
    z = None if z is None else z.to(device)
    labels = None if labels is None else labels.to(device)
    out = np.tile(END_ROW, (n, max_len + 2, 1))
    out[:, 0] = START_TOKEN
    lengths = np.full(n, max_len)
    with eval_mode(model):
        condition = model.condition(z, labels)
        state = decoder.initial_state(condition, n, torch.empty(0, device=device))
        fixed, step = decoder.stepper(condition, n)
        previous = torch.as_tensor(START_TOKEN, device=device).expand(n, 5)
        alive = torch.arange(n, device=device)
        for t in range(max_len):
            params, state = step(previous, fixed, state)
            rows = sample_step(params, temperature, generator, allow_end=t > 0)
            rows_np = rows.cpu().numpy()
            alive_np = alive.cpu().numpy()
            out[alive_np, t + 1] = rows_np
            ended = rows_np[:, 4] == 1
            if ended.any():
                lengths[alive_np[ended]] = t
                live = torch.from_numpy(np.flatnonzero(~ended)).to(device)
                if len(live) == 0:
                    break
                alive, rows, fixed = alive[live], rows[live], fixed[live]
                state = tuple(s[live] for s in state)
            previous = rows
    return [out[i, : lengths[i] + 2].astype(np.float32) for i in range(n)]


def simplified_drawing(stroke3: np.ndarray, word: str | None = None) -> Drawing:
    """A stroke-3 sketch (any units) as a drawing in Google's simplified format: aligned to the
    top-left, scaled so the larger side is 255, rounded to integers -- what
    ``rasterize.render.render`` and ``rasterize.drawings.write_ndjson`` expect."""
    canvas = stroke3_to_canvas(stroke3)
    return Drawing(tuple(np.round(s) for s in canvas.strokes), None, word=word)


def strokes5_to_drawings(samples: Sequence[np.ndarray],
                         words: Sequence[str | None] | None = None) -> list[Drawing]:
    """Sampled stroke-5 sequences as simplified-format drawings (:func:`simplified_drawing`)."""
    words = [None] * len(samples) if words is None else words
    return [simplified_drawing(stroke5_to_stroke3(sample), word)
            for sample, word in zip(samples, words, strict=True)]


# -- figures: reconstructions and latent interpolation --------------------------------------------


@torch.no_grad()
def encode_means(model: SketchRNN, sketches: Sequence[np.ndarray]) -> torch.Tensor:
    """``mu`` of z for normalised stroke-3 sketches (vae mode): the reconstruction code."""
    if model.encoder is None:
        raise ValueError("only a vae-mode model has an encoder")
    device = next(model.parameters()).device
    batch = make_batch(sketches, np.zeros(len(sketches)), max(len(s) for s in sketches) + 1)
    with eval_mode(model):
        mu, _ = model.encoder(batch.strokes5[:, 1:].to(device), batch.lengths.to(device))
    return mu


def slerp(z0: torch.Tensor, z1: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (the paper's latent-space figures), one row per fraction."""
    cos = torch.dot(z0 / z0.norm(), z1 / z1.norm()).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-6:  # (anti)parallel codes: the arc degenerates to a line
        return torch.lerp(z0, z1, fractions.unsqueeze(1))
    t = fractions.unsqueeze(1)
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def reconstruct(model: SketchRNN, sketches: Sequence[np.ndarray], generator: torch.Generator,
                temperature: float = 0.2, max_len: int = 250) -> list[np.ndarray]:
    """Decode each sketch's ``mu`` (the paper's reconstruction figures use low temperatures)."""
    return sample_strokes5(model, len(sketches), generator, temperature, max_len,
                           z=encode_means(model, sketches))


def interpolate(model: SketchRNN, first: np.ndarray, last: np.ndarray, steps: int,
                generator: torch.Generator, temperature: float = 0.2,
                max_len: int = 250) -> list[np.ndarray]:
    """``steps`` sketches decoded along the slerp from ``first``'s code to ``last``'s."""
    z0, z1 = encode_means(model, [first, last])
    codes = slerp(z0, z1, torch.linspace(0.0, 1.0, steps, device=z0.device))
    return sample_strokes5(model, steps, generator, temperature, max_len, z=codes)


__all__ = [
    "SKETCH_RNN",
    "Decoder",
    "Encoder",
    "FusedLSTM",
    "LossTerms",
    "MixtureParams",
    "ReconstructionLoss",
    "SketchRNN",
    "SketchRNNConfig",
    "StepLSTM",
    "StrokeBatch",
    "augment",
    "bivariate_normal_log_pdf",
    "drop_points",
    "encode_means",
    "interpolate",
    "kl_divergence",
    "kl_weight_at",
    "learning_rate_at",
    "loss_terms",
    "make_batch",
    "offset_nll",
    "pad_batch",
    "padded_length_for",
    "random_batch",
    "reconstruct",
    "reconstruction_loss",
    "sample_strokes5",
    "simplified_drawing",
    "slerp",
    "strokes5_to_drawings",
]
