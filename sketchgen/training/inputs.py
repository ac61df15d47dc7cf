"""What a run is built from: its data and the task made of config, data and model settings.

Owns the checks of a run's categories and of data given in memory (before any work), loading
the data in the form the model trains on (bitmaps on the device, or drawings), the data's
fingerprint that a checkpoint records so that a run is never resumed on other data, and
building the task through the model registry.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np
import torch

from rasterize.render import render
from sketchgen.data import datasets
from sketchgen.data.datasets import LabelledBitmaps, LabelledDrawings
from sketchgen.data.sources import source_list
from sketchgen.errors import ConfigError, FieldError
from sketchgen.models import registry
from sketchgen.models.task import BitmapData, Task, TaskInputs
from sketchgen.training.config import TrainConfig


def check_categories(config: TrainConfig) -> None:
    """At least one category; unknown names fail with the data module's suggestions."""
    if not config.categories:
        raise FieldError("categories", "must name at least one category, e.g. ['cat', 'dog']")
    try:
        source_list(config.categories)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def config_for_data(config: TrainConfig, given: Any) -> TrainConfig:
    """The run's config when ``train`` gets ``data`` (checked here, before any work): the
    data's class names as categories (recorded in config.toml, not read); per_class and
    mirror, which choose what is read, must be left unset."""
    if not isinstance(given, (LabelledDrawings, LabelledBitmaps)):
        raise ConfigError("data must be sketchgen.data.datasets.LabelledDrawings or "
                          f"LabelledBitmaps, got {type(given).__name__}")
    class_names, labels = tuple(given.class_names), np.asarray(given.labels)
    if (labels.shape != (len(given),) or not np.issubdtype(labels.dtype, np.integer)
            or (len(labels) and not 0 <= labels.min() <= labels.max() < len(class_names))):
        raise ConfigError(f"data: expected {len(given)} integer labels indexing "
                          f"{len(class_names)} class names, got {labels.dtype} {labels.shape}")
    if config.per_class is not None or config.mirror is not None:
        raise ConfigError("per_class and mirror choose what is read from categories; with "
                          "data given, select the drawings beforehand (e.g. "
                          "sketchgen.data.datasets.load_drawings(sources, per_class=N))")
    if config.categories and config.categories != class_names:
        raise ConfigError(f"categories {list(config.categories)} differ from the data's class "
                          f"names {list(class_names)}; leave categories out when giving data")
    return dataclasses.replace(config, categories=class_names)


def load_data(config: TrainConfig, kind: str, device: torch.device, given: Any | None = None
              ) -> tuple[Any, tuple[str, ...]]:
    """The training data for a model kind, and its class names.

    "bitmap": rasterized once (cached on disk by ``sketchgen.data.datasets``), then one uint8
    tensor on the device. "strokes": ``sketchgen.data.datasets.load_drawings`` as it is; the
    task prepares it. ``given``: data already in memory (``train``'s ``data``), used instead
    of reading ``config.categories``.
    """
    try:
        if given is not None:
            loaded = _as_kind(given, kind, config.size)
        elif kind == "bitmap":
            loaded = datasets.load_bitmaps(config.categories, config.size,
                                           per_class=config.per_class, mirror=config.mirror)
        else:
            loaded = datasets.load_drawings(config.categories, per_class=config.per_class,
                                            mirror=config.mirror)
    except (ValueError, FileNotFoundError) as error:
        raise ConfigError(str(error)) from None
    class_names = tuple(loaded.class_names)
    empty = [name for i, name in enumerate(class_names) if not (loaded.labels == i).any()]
    if len(loaded) == 0 or empty:
        raise ConfigError(f"no drawings for {', '.join(empty) or 'any category'}")
    if kind != "bitmap":
        return loaded, class_names
    images = torch.from_numpy(np.ascontiguousarray(loaded.bitmaps)).to(device)
    labels = torch.from_numpy(np.asarray(loaded.labels, dtype=np.int64)).to(device)
    return BitmapData(images, labels, class_names), class_names


def _as_kind(given: Any, kind: str, size: int) -> Any:
    """Data passed in memory in the form ``kind`` trains on: drawings as they are, or bitmaps
    (drawings rendered once at ``size``, Google's geometry, as ``sketchgen.data.datasets``
    renders)."""
    if isinstance(given, LabelledDrawings):
        if kind != "bitmap":
            return given
        return LabelledBitmaps(render(given.drawings, size=size), given.labels, given.class_names)
    if kind != "bitmap":
        raise ValueError("data: this model trains on strokes; give drawings (LabelledDrawings), "
                         "not bitmaps")
    images = np.asarray(given.bitmaps)
    if images.dtype != np.uint8 or images.shape[1:] != (size, size):
        raise ValueError(f"data: bitmaps of {images.dtype} {images.shape[1:]} do not fit "
                         f"size={size} (expected uint8 (N, {size}, {size}))")
    return given


def data_fingerprint(given: Any) -> dict[str, Any]:
    """What identifies data passed in memory: its counts per class and a sha256 of labels
    and content (bitmaps, or every drawing's stroke lengths and points). Recorded in the
    checkpoint, so that a run is never resumed on other data."""
    labels = np.asarray(given.labels, dtype=np.int64)
    digest = hashlib.sha256("\0".join(given.class_names).encode() + b"\0" + labels.tobytes())
    if isinstance(given, LabelledBitmaps):
        kind = "bitmaps"
        digest.update(np.ascontiguousarray(given.bitmaps).tobytes())
    else:
        kind = "drawings"
        for drawing in given.drawings:
            lengths = [len(drawing.strokes), *(len(stroke) for stroke in drawing.strokes)]
            digest.update(np.asarray(lengths, dtype=np.int64).tobytes())
            digest.update(np.ascontiguousarray(drawing.points(), dtype=np.float64).tobytes())
    per_class = np.bincount(labels, minlength=len(given.class_names)).tolist()
    return {"kind": kind, "count": len(labels), "per_class": per_class,
            "sha256": digest.hexdigest()}


def check_same_data(checkpoint: dict[str, Any], fingerprint: dict[str, Any] | None) -> None:
    """Refuse to resume a run on other data than it was trained on (``None``: read from the
    config's categories)."""
    stored = checkpoint.get("data")
    if stored == fingerprint:
        return

    def described(value: dict[str, Any] | None) -> str:
        if value is None:
            return "the config's categories"
        try:
            return f"{value['count']} {value['kind']} given as data (sha256 {value['sha256'][:12]})"
        except (KeyError, TypeError):  # a checkpoint's record is any dict (stranger's files)
            return "other data (a record this version does not read)"

    raise ConfigError(f"cannot resume: the checkpoint was trained on {described(stored)}, "
                      f"not on {described(fingerprint)}")


def build_task(config: TrainConfig, device: torch.device, data: Any,
               class_names: tuple[str, ...], model_config: Any | None = None) -> Task:
    """The task for ``config.model`` (model settings from ``model_config`` if given, as stored
    in a checkpoint, else the registry defaults with ``config.model_options``)."""
    entry = registry.get_model(config.model)
    if model_config is None:
        model_config = entry.model_config(config.model_options)
    return entry.build(TaskInputs(config, model_config, class_names, device, data))
