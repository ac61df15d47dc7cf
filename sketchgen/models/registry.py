"""One registry of named models: name -> kind, lazily imported task factory and config.

Importing this module imports no torch: each entry names the module that defines the model,
and that module (which imports torch) is imported only when the model is used.

A model module provides, for each entry:

- a *config*: a frozen dataclass instance holding the model's own defaults (presets of one
  family are entries sharing a factory with different configs). Its fields declare their
  allowed values (``sketchgen.config.setting``), which its ``__post_init__`` checks
  (``sketchgen.config.check_fields``). It must have a method ``check(settings) -> None``
  (``settings``: a ``sketchgen.models.task.RunSettings``, the run's settings) raising
  ``sketchgen.errors.ConfigError`` for settings the model cannot do in this run (e.g.
  an image size the architecture does not support), so that bad configs fail before any
  work, and an attribute ``conditional`` (bool): whether the model samples by class label
  (then one run covers every category).
- a *factory*: ``factory(inputs: sketchgen.models.task.TaskInputs) -> Task`` (protocol in
  ``sketchgen.models.task``).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Literal

from sketchgen.config import listed
from sketchgen.errors import ConfigError, FieldError
from sketchgen.models.task import RunSettings, Task, TaskInputs

Kind = Literal["bitmap", "strokes"]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model. ``config`` and ``factory`` are ``"module:attribute"`` references."""

    name: str
    kind: Kind  # "bitmap": trains on rasterized images; "strokes": on stroke sequences
    config: str  # the default config instance, e.g. "sketchgen.models.gan.config:DCGAN"
    factory: str  # the task factory, e.g. "sketchgen.models.gan.task:build_gan_task"
    summary: str  # one line for `sketchgen train --help`

    def default_config(self) -> Any:
        return _resolve(self.config)

    def model_config(self, overrides: dict[str, Any] | None = None,
                     where: str = "model_options") -> Any:
        """The default config with ``overrides`` applied; an unknown field or a bad value is
        a ConfigError naming it inside ``where``, the table the overrides come from."""
        config = self.default_config()
        overrides = overrides or {}
        known = {f.name for f in dataclasses.fields(config)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"{where}: model {self.name!r} has no option(s) "
                              f"{listed(unknown)}; options: {', '.join(sorted(known))}")
        try:
            return dataclasses.replace(config, **overrides)
        except FieldError as error:
            raise error.under(where) from None

    def build(self, inputs: TaskInputs) -> Task:
        """Build the training task (see ``sketchgen.models.task.Task``)."""
        return _resolve(self.factory)(inputs)


def _resolve(reference: str) -> Any:
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


_GAN_FACTORY = "sketchgen.models.gan.task:build_gan_task"
_GAN_PRESETS = "sketchgen.models.gan.config"

MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry("dcgan", "bitmap", f"{_GAN_PRESETS}:DCGAN", _GAN_FACTORY,
                   "unconditional DCGAN (Radford et al. 2016), sizes b*2^k, 4<=b<=7"),
        ModelEntry("cgan", "bitmap", f"{_GAN_PRESETS}:CGAN", _GAN_FACTORY,
                   "class-conditional DCGAN, label embedding in G and D (or projection D)"),
        ModelEntry("superdeep", "bitmap", f"{_GAN_PRESETS}:SUPERDEEP", _GAN_FACTORY,
                   "preset: SuperDeepGenerator/ConvDiscriminator (ITU 2023), 28 px"),
        ModelEntry("tf-dcgan", "bitmap", f"{_GAN_PRESETS}:TF_DCGAN", _GAN_FACTORY,
                   "preset: TensorFlow tutorial DCGAN, Adam 1e-3, images in [-1, 1]"),
        ModelEntry("brownlee-cgan", "bitmap", f"{_GAN_PRESETS}:BROWNLEE_CGAN", _GAN_FACTORY,
                   "preset: Brownlee's cGAN, label -> dense -> extra channel / feature map"),
        ModelEntry("smooth-cgan", "bitmap", f"{_GAN_PRESETS}:SMOOTH_CGAN", _GAN_FACTORY,
                   "preset: cGAN with soft labels, BN, LeakyReLU(0.02), separate G/D rates"),
        ModelEntry("sngan", "bitmap", f"{_GAN_PRESETS}:SNGAN", _GAN_FACTORY,
                   "SNGAN: spectral-norm projection D, hinge loss, EMA generator"),
        ModelEntry("ddpm", "bitmap", "sketchgen.models.ddpm.config:DDPM",
                   "sketchgen.models.ddpm.task:build_ddpm_task",
                   "denoising diffusion (Ho et al. 2020): U-Net, cosine schedule, EMA, DDIM, "
                   "classifier-free guidance; sizes multiples of 4"),
        ModelEntry("sketch-rnn", "strokes", "sketchgen.models.sketch_rnn.config:SKETCH_RNN",
                   "sketchgen.models.sketch_rnn.task:build_sketch_rnn_task",
                   "Sketch-RNN (Ha & Eck 2018), magenta's recipe; option mode: vae|"
                   "unconditional|class"),
        ModelEntry("sketch-transformer", "strokes",
                   "sketchgen.models.sketch_transformer.config:SKETCH_TRANSFORMER",
                   "sketchgen.models.sketch_transformer.task:build_sketch_transformer_task",
                   "Sketch-RNN with a causal Transformer decoder (GPT-2 blocks); option "
                   "mode: class|unconditional|vae"),
    )
}


def get_model(name: str) -> ModelEntry:
    """The entry for ``name``; an unknown name is a one-line ConfigError listing the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None


def resolve(config: RunSettings) -> tuple[ModelEntry, Any]:
    """The model entry and its config for a run, checked against the run's settings."""
    entry = get_model(config.model)
    model_config = entry.model_config(config.model_options)
    model_config.check(config)
    return entry, model_config
