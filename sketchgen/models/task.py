"""The task protocol: what a model family implements for the training harness.

A *task* owns everything model-specific: its modules, optimizers, schedulers, EMA copies,
loss, and its own ``torch.Generator`` from which it draws batch indices, noise and
augmentation. A task is built by the factory of its registry entry
(``sketchgen.models.registry``) from a :class:`TaskInputs`; the harness
(``sketchgen.training``) drives it and does all file I/O. Models sit below training, so they
know a run's settings only by the shape :class:`RunSettings` describes. Two helpers every
task may share: :func:`grad_norms_of` (``Task.grad_norms``) and :func:`update_ema` (an
EMA copy of a network's weights for sampling).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from rasterize.drawings import Drawing


class RunSettings(Protocol):
    """What a model reads of a run's settings (``sketchgen.training.config.TrainConfig``, where
    each is explained): its registry entry and overrides, the classes, and the step's sizes
    and switches."""

    model: str
    model_options: dict[str, Any]
    categories: tuple[str, ...]
    size: int
    batch_size: int
    seed: int
    amp: bool
    compile: bool


@dataclass(frozen=True)
class BitmapData:
    """A labelled bitmap dataset held on the training device (``kind == "bitmap"``).

    The harness builds it once from ``sketchgen.data.datasets.load_bitmaps``; a task draws a batch
    with ``index = torch.randint(len(labels), (B,), generator=self.generator)`` (on the CPU,
    then moved to the device) and ``images[index]``, so there is no per-item Python work in
    the hot loop.
    """

    images: torch.Tensor  # uint8 (N, size, size) on the device; white (255) strokes on black
    labels: torch.Tensor  # int64 (N,) on the device; index into class_names
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class TaskInputs:
    """What a registry factory gets to build a task."""

    config: RunSettings  # the run's settings: size, batch_size, seed, amp, compile, ...
    model: Any  # the registry entry's config dataclass, overrides applied and checked
    class_names: tuple[str, ...]  # label i means class_names[i]; fixed for the run's lifetime
    device: torch.device
    # BitmapData for "bitmap" models; for "strokes" models the LabelledDrawings returned by
    # sketchgen.data.datasets.load_drawings(config.categories, per_class=..., mirror=...).
    # None when the task is rebuilt from a checkpoint only to sample: anything derived from
    # the data that sampling needs (e.g. a normalisation scale) must be in state_dict().
    data: Any | None


@runtime_checkable
class Task(Protocol):
    """One model being trained. Built by ``factory(inputs: TaskInputs)``.

    The task seeds its own ``torch.Generator`` from ``inputs.config.seed`` and uses it for
    batch indices, noise and augmentation. On CUDA it may use ``runtime.autocast(config,
    device)`` and ``runtime.maybe_compile(module, config, device)``; both are no-ops elsewhere.

    Data parallel (torchrun): a task that sets ``supports_distributed = True`` draws each
    *global* batch from its generator (identical on every rank), trains on
    ``runtime.shard(batch)`` and calls ``runtime.average_gradients(params)`` between backward
    and optimizer step; the harness averages the returned metrics over ranks. The harness
    refuses torchrun for tasks without the attribute.

    Optional: ``figures() -> dict[str, tuple[np.ndarray, int]]``, called once at the end of a
    run for figures beyond the harness's grids and curves (Sketch-RNN: reconstructions and a
    latent interpolation): PNG file name -> (uint8 images (n, size, size), grid columns).
    The harness writes each as a grid (``sketchgen.figures.save_grid``); the task writes
    no files and prints nothing.
    Optional: ``summary() -> str``, one line on the data as the task prepared it (Sketch-RNN:
    split sizes, sketches dropped, scale factor), which the harness prints when training
    starts.
    """

    conditional: bool  # True if sample() honours labels (class-conditional model)

    def train_step(self, step: int) -> dict[str, float]:
        """Take optimizer step number ``step`` (1-based) and return plain floats for the log.

        Keys are free-form (e.g. ``loss_d``, ``loss_g``, ``d_real`` = mean D(x),
        ``d_fake`` = mean D(G(z))); every value must be finite, otherwise the harness stops
        the run as diverged. Keys starting with ``loss`` are shown on the progress bar and
        drawn in the loss-curve figure. ``loss_d`` is read as a discriminator's loss: the
        harness warns once if it stays near zero (``sketchgen.training.harness.COLLAPSE_LOSS``).
        """
        ...

    def networks(self) -> dict[str, torch.nn.Module]:
        """The trained networks by short name (``{"G": ..., "D": ...}``): their parameters
        are counted in a comparison's rows, and their gradients' norms logged."""
        ...

    def grad_norms(self) -> dict[str, float]:
        """L2 norm of each parameter's gradient left by the last ``train_step``.

        Keyed ``"<module>.<parameter name>"`` (e.g. ``"G.net.0.weight"``), so the log shows
        per layer whether, say, the discriminator is overpowering the generator
        (:func:`grad_norms_of` computes it).
        """
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed for an exact resume and for sampling: module weights, optimizer
        and scheduler states, EMA weights, the generator state (``generator.get_state()``),
        data-derived constants. Only tensors, numbers, strings, None and lists/dicts/tuples
        of them, so that ``torch.load(..., weights_only=True)`` can read it."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (also on a task built with ``data=None``)."""
        ...

    def sample(self, n: int, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``n`` images as uint8 (n, size, size) on the CPU, white strokes on black, in the
        rasterizer's layout (``rasterize.render.render``).

        ``labels`` is int64 (n,) on the CPU (ignored by unconditional tasks). ``generator`` is
        a CPU generator: draw all randomness from it on the CPU and move it to the device, so
        the same seed gives the same samples on every device. Must not change training state:
        no global RNG use, no change of the task's generator, modules back in train mode.
        """
        ...


@runtime_checkable
class StrokeTask(Task, Protocol):
    """A ``kind == "strokes"`` task additionally samples drawings as strokes.

    ``sketchgen sample`` writes them as simplified-format ndjson next to the bitmaps;
    ``sample(n, labels, generator)`` must equal ``rasterize.render.render(
    sample_drawings(n, labels, generator), size)`` for a generator in the same state.
    """

    def sample_drawings(
        self, n: int, labels: torch.Tensor, generator: torch.Generator
    ) -> list[Drawing]:
        ...


def grad_norms_of(modules: dict[str, torch.nn.Module]) -> dict[str, float]:
    """What ``Task.grad_norms`` returns for a task's ``modules`` (prefix -> module): the L2 norm
    of each parameter's gradient, keyed ``"<prefix>.<parameter name>"``, parameters without a
    gradient left out; read from the device in one copy."""
    import torch

    named = [(f"{prefix}.{name}", p.grad) for prefix, module in modules.items()
             for name, p in module.named_parameters() if p.grad is not None]
    if not named:
        return {}
    norms = torch.stack([grad.norm() for _, grad in named]).tolist()
    return {name: norm for (name, _), norm in zip(named, norms, strict=True)}


def update_ema(average: torch.nn.Module, module: torch.nn.Module, decay: float, step: int
               ) -> None:
    """Move the weights of ``average`` towards ``module``'s after optimizer step ``step`` by
    an exponential moving average of ``decay``, warmed up as TF's ExponentialMovingAverage
    with num_updates: early on the average follows the module closely instead of staying
    near the random initial weights. Buffers (batch-norm statistics) are copied, not averaged.
    """
    import torch

    decay = min(decay, (1.0 + step) / (10.0 + step))
    with torch.no_grad():
        for average_param, param in zip(average.parameters(), module.parameters(), strict=True):
            average_param.lerp_(param, 1.0 - decay)
        for average_buffer, buffer in zip(average.buffers(), module.buffers(), strict=True):
            average_buffer.copy_(buffer)
