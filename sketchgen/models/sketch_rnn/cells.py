"""Sketch-RNN's recurrent layers: :class:`FusedLSTM`, :class:`StepLSTM` (layer normalisation,
recurrent dropout), their initialisation, and :func:`make_rnn`, which picks one for a config.

Cells
    ``lstm`` without recurrent dropout runs each whole sequence through ``nn.LSTM`` in one
    call (cuDNN on GPU). Layer normalisation (``layer_norm``) or recurrent dropout without
    memory loss (Semeniuta et al. 2016: dropout on the candidate ``g`` only, a fresh mask
    every step, as magenta) need a per-step cell, :class:`StepLSTM`; asking for recurrent
    dropout therefore selects it for ``lstm`` too, instead of silently doing nothing as a
    ``dropout=`` on a one-layer ``nn.LSTM`` would. Initialisation as magenta: input weights
    Glorot-uniform, recurrent weights orthogonal per gate, forget-gate bias 1 (the ``mu`` /
    ``presig`` / initial-state layers of :mod:`.model` start at N(0, 0.001^2)).

Both cells have the same interface: ``forward(x, state, masks)`` over a whole sequence,
``draw_masks`` (the dropout masks of one pass), and ``input_projection`` / ``step`` for
decoding one row at a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from sketchgen.models.sketch_rnn.config import SketchRNNConfig

LN_EPSILON = 1e-3  # magenta's layer-norm epsilon (inside the square root)
FORGET_BIAS = 1.0  # added to the forget gate so memory is kept at the start of training


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
        ``model.Noise`` continue with the same random numbers."""
        if not (self.training and self.keep_prob < 1.0):
            return None
        draws = torch.rand((steps, batch, self.hidden_size), generator=generator,
                           device=generator_device(generator))
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


def generator_device(generator: torch.Generator | None) -> torch.device:
    """Where ``generator`` draws (the CPU for None, torch's global generator)."""
    return generator.device if generator is not None else torch.device("cpu")


def make_rnn(config: SketchRNNConfig, model: str, input_size: int, hidden_size: int) -> nn.Module:
    """The cell ``config`` asks for ``model`` (``enc_model`` or ``dec_model``)."""
    kind, keep = config.cell_for(model)
    if kind == "fused":
        return FusedLSTM(input_size, hidden_size)
    return StepLSTM(input_size, hidden_size, layer_norm=model == "layer_norm", keep_prob=keep)
