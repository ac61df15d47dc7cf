"""Drawing from a trained Sketch-RNN: one stroke-5 row per step (:func:`sample_step`), whole
sketches decoded in a batch (:func:`sample_strokes5`), reconstructions and latent
interpolations (vae mode), and sampled sequences as simplified-format drawings.

Sampling with temperature T (:func:`sample_strokes5`)
    mixture logits / T and pen logits / T before their softmaxes; each component's sigmas
    are scaled by ``temperature_rule`` (:data:`SIGMA_SCALES`): ``"paper"`` (the default) by
    sqrt(T), i.e. covariance * T, Ha & Eck's definition; ``"magenta"`` by T, what magenta's
    ``sample()`` does (it passes sqrt(T) to ``sample_gaussian_2d``, which multiplies the
    sigmas by its square). ``T -> 0`` tends to greedy decoding under both. A sketch ends
    when it draws the end state or at ``max_len`` points; the end state is not allowed
    before the first point, so every sample has at least one point to render.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from rasterize.drawings import Drawing
from rasterize.strokes import END_ROW, START_TOKEN, stroke3_to_canvas, stroke5_to_stroke3
from sketchgen.models.sketch_rnn.batches import make_batch
from sketchgen.models.sketch_rnn.cells import generator_device
from sketchgen.models.sketch_rnn.model import MixtureParams, SketchRNN
from sketchgen.runtime import eval_mode

# temperature T -> the factor on each Gaussian's sigmas (see the module doc)
SIGMA_SCALES = {"paper": math.sqrt, "magenta": lambda temperature: temperature}
PAPER_RULE = "paper"


def _categorical(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row by inverse CDF with a uniform from ``generator`` (magenta's method;
    device-independent: the uniforms come from the generator's device)."""
    cdf = torch.softmax(logits, dim=-1).cumsum(dim=-1)
    draw = torch.rand((len(logits), 1), generator=generator,
                      device=generator_device(generator)).to(logits.device)
    return (cdf < draw).sum(dim=-1).clamp(max=logits.shape[-1] - 1)


def sample_step(params: MixtureParams, temperature: float, generator: torch.Generator,
                allow_end: bool = True, temperature_rule: str = PAPER_RULE) -> torch.Tensor:
    """Draw one stroke-5 row per sketch from the outputs of one step, ``(B, 5)``;
    ``temperature_rule`` names how T scales the sigmas (:data:`SIGMA_SCALES`)."""
    pen_logits = params.pen_logits / temperature
    if not allow_end:
        pen_logits = pen_logits.clone()
        pen_logits[:, 2] = -math.inf
    pen = _categorical(pen_logits, generator)
    component = _categorical(params.pi_logits / temperature, generator).unsqueeze(1)

    def pick(values: torch.Tensor) -> torch.Tensor:
        return values.gather(1, component).squeeze(1)

    sigma_scale = SIGMA_SCALES[temperature_rule](temperature)
    sigma_x = torch.exp(pick(params.log_sigma_x)) * sigma_scale
    sigma_y = torch.exp(pick(params.log_sigma_y)) * sigma_scale
    rho = torch.tanh(pick(params.rho_pre))
    normal = torch.randn((len(pen), 2), generator=generator,
                         device=generator_device(generator)).to(sigma_x.device)
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
    temperature_rule: str = PAPER_RULE,
) -> list[np.ndarray]:
    """``n`` sketches as stroke-5 ``[start, points..., end]`` (float32), all decoded together.

    vae mode decodes ``z`` (default: drawn from the prior N(0, I)); class mode needs
    ``labels``; finished sketches leave the batch so later steps only run the live ones.
    """
    device = next(model.parameters()).device
    decoder = model.decoder
    if model.config.mode == "vae" and z is None:
        z = torch.randn((n, model.config.z_size), generator=generator,
                        device=generator_device(generator))
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
            rows = sample_step(params, temperature, generator, t > 0, temperature_rule)
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


# -- vae mode: reconstructions and latent interpolation --------------------------------------------


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
                temperature: float = 0.2, max_len: int = 250,
                temperature_rule: str = PAPER_RULE) -> list[np.ndarray]:
    """Decode each sketch's ``mu`` (the paper's reconstruction figures use low temperatures)."""
    return sample_strokes5(model, len(sketches), generator, temperature, max_len,
                           z=encode_means(model, sketches), temperature_rule=temperature_rule)


def interpolate(model: SketchRNN, first: np.ndarray, last: np.ndarray, steps: int,
                generator: torch.Generator, temperature: float = 0.2,
                max_len: int = 250, temperature_rule: str = PAPER_RULE) -> list[np.ndarray]:
    """``steps`` sketches decoded along the slerp from ``first``'s code to ``last``'s."""
    z0, z1 = encode_means(model, [first, last])
    codes = slerp(z0, z1, torch.linspace(0.0, 1.0, steps, device=z0.device))
    return sample_strokes5(model, steps, generator, temperature, max_len, z=codes,
                           temperature_rule=temperature_rule)
