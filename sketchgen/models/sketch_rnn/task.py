"""Sketch-RNN as a task of the shared training harness (``sketchgen.models.task.StrokeTask``):
:class:`SketchData` (the splits as the model sees them), :class:`SketchRNNTask` and the
registry's factory :func:`build_sketch_rnn_task`.

Data: the harness hands over ``sketchgen.data.datasets.load_drawings`` output. Each drawing becomes
stroke-3 (``rasterize.strokes``); ``sketchgen.data.datasets.split_indices`` splits them by the run's
seed into train / valid / test, unless they come from Google's ``.npz`` files, whose own
splits are kept (``LabelledDrawings.splits``, as magenta trains, validates and tests on
them); ``rasterize.strokes.normalize_splits`` drops sketches over
``max_seq_len`` (the counts are in :meth:`SketchRNNTask.summary` and kept in the checkpoint) and
divides every split by the training std. Everything random in training -- batch choice,
augmentation, the VAE's noise, recurrent-dropout masks -- comes from the task's own CPU
``torch.Generator`` (drawn on the CPU, moved to the device), so a resumed run continues bit for
bit on CPU.

Log keys per step: ``loss`` (what is minimised), ``loss_recon`` = ``loss_offset`` +
``loss_pen`` (L_R), ``loss_kl`` (L_KL before the tolerance; vae mode), ``kl_weight``, ``lr``;
every ``eval_every`` steps also ``loss_recon_valid`` and ``loss_kl_valid``, magenta's
validation cost: no augmentation, no dropout, the same unmasked pen term, and
``loss_recon_masked_valid``, L_R as magenta's inference mode scores it (the pen term over the
real points only). At each of those steps where the validation objective
(:meth:`SketchRNNTask.validation_cost`) is the best so far, the same costs of the test split
follow (``loss_recon_test``, ...): magenta's protocol, which evaluates the test set at every
new best-validation checkpoint, so the last ``*_test`` values of a log are the run's test
figures at its best-validation step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from rasterize.drawings import Drawing
from rasterize.render import render
from rasterize.strokes import drawing_to_stroke3, normalize_splits
from sketchgen import runtime
from sketchgen.data.datasets import split_indices
from sketchgen.models.sketch_rnn.batches import (
    StrokeBatch,
    make_batch,
    padded_length_for,
    random_batch,
)
from sketchgen.models.sketch_rnn.config import SketchRNNConfig, learning_rate_at
from sketchgen.models.sketch_rnn.loss import loss_terms
from sketchgen.models.sketch_rnn.model import SketchRNN
from sketchgen.models.sketch_rnn.sampling import (
    interpolate,
    reconstruct,
    sample_strokes5,
    simplified_drawing,
    strokes5_to_drawings,
)
from sketchgen.models.task import TaskInputs, grad_norms_of

SPLITS = ("train", "valid", "test")


class SketchData:
    """Normalised stroke-3 sketches and labels per split, and the constants derived from them.

    ``splits``: the files' own split (``LabelledDrawings.splits``, Google's ``.npz`` layout),
    kept when it has sketches in all three; otherwise the drawings are split by ``seed``.
    """

    def __init__(self, drawings: Sequence[Drawing], labels: np.ndarray, seed: int,
                 config: SketchRNNConfig, splits: Mapping[str, np.ndarray] | None = None):
        parts, self.split_by = _parts(len(drawings), seed, config, splits)
        stroke3 = {name: [drawing_to_stroke3(drawings[i]) for i in index]
                   for name, index in parts.items()}
        normalised = normalize_splits(stroke3, config.max_seq_len)
        if not normalised.splits["train"]:
            raise ValueError(f"no training sketch has <= max_seq_len={config.max_seq_len} points")
        self.sketches = normalised.splits
        labels = np.asarray(labels, dtype=np.int64)
        self.labels = {name: labels[parts[name][normalised.kept[name]]] for name in SPLITS}
        self.scale_factor = normalised.scale_factor
        self.dropped = normalised.dropped
        self.padded_length = padded_length_for(*self.sketches.values())

    def summary(self) -> str:
        counts = " / ".join(f"{len(self.sketches[s])} {s}" for s in SPLITS)
        dropped = " / ".join(str(self.dropped[s]) for s in SPLITS)
        return (f"{counts} sketches; dropped {dropped} over max_seq_len; scale factor "
                f"{self.scale_factor:.4g}; padded length {self.padded_length}; {self.split_by}")

    def batches(self, split: str, size: int) -> list[StrokeBatch]:
        """The whole split in order, un-augmented, in batches of ``size``."""
        sketches, labels = self.sketches[split], self.labels[split]
        return [make_batch(sketches[i : i + size], labels[i : i + size], self.padded_length)
                for i in range(0, len(sketches), size)]


def _parts(count: int, seed: int, config: SketchRNNConfig,
           splits: Mapping[str, np.ndarray] | None) -> tuple[dict[str, np.ndarray], str]:
    """Drawing indices per split, and how they were split."""
    if splits is not None and all(len(splits.get(name, ())) for name in SPLITS):
        return {name: np.asarray(splits[name]) for name in SPLITS}, "the files' splits"
    fractions = (1.0 - config.valid_fraction - config.test_fraction,
                 config.valid_fraction, config.test_fraction)
    return dict(zip(SPLITS, split_indices(count, seed, fractions), strict=True)), "split by seed"


class SketchRNNTask:
    """Trains one Sketch-RNN (see ``sketchgen.models.task.Task`` and ``StrokeTask``).

    Data parallel (torchrun): ``batch_size`` is the global batch. Each rank draws it, with
    its augmentation and noise, from the identically seeded generator, trains on its shard
    and averages gradients before clipping them; the KL tolerance is decided on the global
    batch's KL (``kl_cost``). Validation costs are computed whole on every rank (identical
    there), so the log matches a single-process run.
    """

    supports_distributed = True
    network = SketchRNN  # what is trained (the Sketch Transformer's task puts its own here)

    def __init__(self, inputs: TaskInputs) -> None:
        self.config = inputs.config
        self.cfg: SketchRNNConfig = inputs.model
        self.device = inputs.device
        self.class_names = tuple(inputs.class_names)
        self.conditional = self.cfg.conditional
        self.model = self.network(self.cfg, num_classes=len(self.class_names)).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.learning_rate)
        self.generator = torch.Generator().manual_seed(
            runtime.derived_seed(self.config.seed, "task"))
        self.data: SketchData | None = None
        self.scale_factor: float | None = None
        self.best_valid = math.inf  # the best validation_cost so far (magenta's protocol)
        if inputs.data is not None:
            self.data = SketchData(inputs.data.drawings, inputs.data.labels, self.config.seed,
                                   self.cfg, inputs.data.splits)
            self.scale_factor = self.data.scale_factor
            self._check_batch_splits()

    def summary(self) -> str:
        """One line on the data as the task prepared it (the split sizes, the sketches
        dropped over ``max_seq_len``, the scale factor, the padded length)."""
        if self.data is None:
            return "built without data: it can only sample"
        return self.data.summary()

    def _check_batch_splits(self) -> None:
        """Under torchrun the batch drawn -- all training sketches if there are fewer than
        ``batch_size`` -- must split into equal shards (fail before the first step)."""
        drawn = min(self.config.batch_size, len(self.data.sketches["train"]))
        runtime.check_shards(drawn, f"{self.config.model}: a batch of {drawn} training sketches")

    # -- training -------------------------------------------------------------------------

    def train_step(self, step: int) -> dict[str, float]:
        if self.data is None:
            raise RuntimeError("this task was built without data: it can only sample")
        schedule_step = step - 1  # magenta's global_step counts from 0
        lr = learning_rate_at(self.cfg, schedule_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        # every rank draws the global batch and its noise, then keeps its rows (runtime.shard)
        batch = random_batch(self.data.sketches["train"], self.data.labels["train"],
                             self.config.batch_size, self.data.padded_length, self.cfg,
                             self.generator)
        noise = self.model.draw_noise(batch, self.generator).map(runtime.shard)
        batch = StrokeBatch(*(runtime.shard(t) for t in batch)).to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        terms = loss_terms(self.model, batch, schedule_step, noise, runtime.mean_over_ranks)
        terms.loss.backward()
        runtime.average_gradients(self.model.parameters())
        torch.nn.utils.clip_grad_value_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        values = torch.stack([terms.loss, terms.offset + terms.pen, terms.offset, terms.pen,
                              terms.kl]).tolist()
        metrics = dict(zip(("loss", "loss_recon", "loss_offset", "loss_pen", "loss_kl"), values,
                           strict=True))
        if self.cfg.mode != "vae":
            del metrics["loss_kl"]
        metrics |= {"kl_weight": terms.kl_weight, "lr": lr}
        if self.cfg.eval_every and step % self.cfg.eval_every == 0 and self.data.sketches["valid"]:
            valid = self.evaluate("valid")
            metrics |= {f"{k}_valid": v for k, v in valid.items()}
            metrics |= self._test_if_best(valid)
        return metrics

    def validation_cost(self, costs: dict[str, float]) -> float:
        """What picks the best checkpoint: the objective at the converged KL weight,
        ``L_R + kl_weight * max(L_KL, kl_tolerance)`` (``L_R`` outside vae mode). (magenta's
        evaluation model keeps its KL weight at ``kl_weight_start``, an artefact of building
        a second graph; we weigh the KL as training ends up weighing it.)"""
        if "loss_kl" not in costs:
            return costs["loss_recon"]
        return costs["loss_recon"] + self.cfg.kl_weight * max(costs["loss_kl"],
                                                              self.cfg.kl_tolerance)

    def _test_if_best(self, valid: dict[str, float]) -> dict[str, float]:
        """The test split's costs when ``valid`` is the best validation so far, else none."""
        cost = self.validation_cost(valid)
        if not cost < self.best_valid:
            return {}
        self.best_valid = cost
        if not self.data.sketches["test"]:
            return {}
        return {f"{k}_test": v for k, v in self.evaluate("test").items()}

    @torch.no_grad()
    def evaluate(self, split: str = "valid") -> dict[str, float]:
        """magenta's evaluation costs on a whole split: ``loss_recon`` (its validation cost's
        L_R), ``loss_recon_masked`` (L_R of its inference mode: the pen term over the real
        points only) and (vae) ``loss_kl``, L_KL before the tolerance.

        The VAE's noise comes from a generator seeded for this purpose, so evaluating changes
        no training state and gives the same numbers for the same weights."""
        noise = torch.Generator().manual_seed(runtime.derived_seed(self.config.seed, "eval"))
        totals, count = np.zeros(3), 0
        with runtime.eval_mode(self.model):
            for batch in self.data.batches(split, self.config.batch_size):
                terms = loss_terms(self.model, batch.to(self.device), 0, noise)
                values = torch.stack([terms.offset + terms.pen, terms.offset + terms.pen_masked,
                                      terms.kl])
                totals += len(batch.lengths) * np.array(values.tolist())
                count += len(batch.lengths)
        result = dict(zip(("loss_recon", "loss_recon_masked", "loss_kl"), totals / count,
                          strict=True))
        if self.cfg.mode != "vae":
            del result["loss_kl"]
        return {key: float(value) for key, value in result.items()}

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def grad_norms(self) -> dict[str, float]:
        return grad_norms_of(self.networks())

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(), "scale_factor": self.scale_factor,
            "best_valid": self.best_valid,
        }
        if self.data is not None:
            state["dropped"] = dict(self.data.dropped)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"].cpu())
        self.scale_factor = state["scale_factor"]
        # a checkpoint from before the best validation was kept has seen none yet
        self.best_valid = float(state.get("best_valid", math.inf))

    # -- sampling ---------------------------------------------------------------------------

    def _words(self, labels: torch.Tensor) -> list[str | None]:
        if self.conditional:
            return [self.class_names[i] for i in labels.tolist()]
        only = self.class_names[0] if len(self.class_names) == 1 else None
        return [only] * len(labels)

    def sample_drawings(self, n: int, labels: torch.Tensor,
                        generator: torch.Generator) -> list[Drawing]:
        samples = sample_strokes5(self.model, n, generator, self.cfg.sample_temperature,
                                  self.cfg.sample_max_len,
                                  labels=labels if self.conditional else None,
                                  temperature_rule=self.cfg.temperature_rule)
        return strokes5_to_drawings(samples, words=self._words(labels))

    def sample(self, n: int, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        drawings = self.sample_drawings(n, labels, generator)
        return torch.from_numpy(render(drawings, size=self.config.size))

    # -- figures (vae mode, held-out test sketches) -------------------------------------------

    def reconstruction_drawings(self, count: int, generator: torch.Generator,
                                temperature: float = 0.2) -> tuple[list[Drawing], list[Drawing]]:
        """The first ``count`` test sketches and their reconstructions from ``mu``."""
        originals = self._test_sketches(count)
        decoded = reconstruct(self.model, originals, generator, temperature,
                              self.cfg.sample_max_len, self.cfg.temperature_rule)
        return [simplified_drawing(s) for s in originals], strokes5_to_drawings(decoded)

    def interpolation_drawings(self, steps: int, generator: torch.Generator,
                               temperature: float = 0.2) -> list[Drawing]:
        """Decodings along the latent slerp between the first two test sketches."""
        first, last = self._test_sketches(2)
        return strokes5_to_drawings(interpolate(self.model, first, last, steps, generator,
                                                temperature, self.cfg.sample_max_len,
                                                self.cfg.temperature_rule))

    def figures(self, count: int = 8) -> dict[str, tuple[np.ndarray, int]]:
        """``reconstructions.png`` (held-out sketches over their reconstructions) and
        ``interpolation.png`` (a latent slerp) as uint8 images and grid columns, for the end
        of a VAE run; empty in other modes or with fewer than two test sketches."""
        if self.cfg.mode != "vae" or self.data is None or len(self.data.sketches["test"]) < 2:
            return {}
        count = min(count, len(self.data.sketches["test"]))
        generator = torch.Generator().manual_seed(self.config.seed)  # same run, same figures
        originals, decoded = self.reconstruction_drawings(count, generator)
        size = self.config.size
        reconstructions = render(originals + decoded, size=size)
        path = render(self.interpolation_drawings(count, generator), size=size)
        return {"reconstructions.png": (reconstructions, count),
                "interpolation.png": (path, count)}

    def _test_sketches(self, count: int) -> list[np.ndarray]:
        if self.data is None or len(self.data.sketches["test"]) < count:
            raise ValueError(f"need {count} held-out test sketches (build the task with data)")
        return self.data.sketches["test"][:count]


def build_sketch_rnn_task(inputs: TaskInputs) -> SketchRNNTask:
    """The registry factory of the ``sketch-rnn`` entry."""
    return SketchRNNTask(inputs)
