"""Files from strangers read with ``torch.load``: every one is checked here before anything is
built from it, and each problem is a one-line :class:`CheckpointError` naming the file and
the key. The layouts of particular files (a training run's, a classifier's) are checked by
their owners with the tools here.

1. The file (:func:`load`): a zip archive as ``torch.save`` writes it, every entry stored
   uncompressed (torch would inflate a compressed one to whatever size the archive claims: a
   zip bomb) and no larger than the file; then ``torch.load(weights_only=True)``, which
   builds tensors and plain data only and runs no code; then no tensor may declare more
   bytes than the file holds (a view can stretch one stored element over 10**10).
2. The layout (:func:`check_layout`): the loaded dict through a layout dataclass whose fields
   declare each key's type and range; :func:`check_class_names` for the stored class names.
3. The weights (:func:`check_state`): once a model is built from checked sizes, every tensor
   of the stored state must have the built one's shape and dtype.
"""

from __future__ import annotations

import dataclasses
import pickle
import warnings
import zipfile
from dataclasses import fields
from pathlib import Path
from typing import Any

from sketchgen.config import MAX_CLASSES, cut
from sketchgen.errors import CheckpointError, FieldError

# -- 1. the file --------------------------------------------------------------------------------


def load(path: str | Path, device: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` of a checked archive; errors name the file."""
    import torch

    path = Path(path)
    _check_archive(path)
    try:
        with warnings.catch_warnings():  # about the pickle protocol of a file refused anyway
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            loaded = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:  # weights_only met a global it does not allow
        raise CheckpointError(path, "refused: it holds objects other than tensors and plain "
                                    f"data ({_unpickling_reason(error)})") from None
    except (RuntimeError, EOFError, ValueError, KeyError, TypeError, IndexError,
            AttributeError, OverflowError) as error:  # a damaged archive or record
        raise CheckpointError(path, f"not a torch checkpoint ({first_line(error)})") from None
    _check_tensor_sizes(loaded, path)
    return loaded


def _check_archive(path: Path) -> None:
    if not zipfile.is_zipfile(path):
        raise CheckpointError(path, "not a torch checkpoint (torch.save writes a zip archive; "
                                    "this file is none, or is cut short)")
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as error:
        raise CheckpointError(path, f"not a torch checkpoint ({error})") from None
    compressed = [entry.filename for entry in entries if entry.compress_type != zipfile.ZIP_STORED]
    if compressed:
        raise CheckpointError(path, f"not a torch checkpoint: entry {compressed[0]!r} is "
                                    "compressed (torch.save stores every entry as it is)")
    if sum(entry.file_size for entry in entries) > path.stat().st_size:
        raise CheckpointError(path, "not a torch checkpoint: its entries claim more bytes "
                                    "than the file holds")


def _check_tensor_sizes(loaded: Any, path: Path) -> None:
    """Every tensor's bytes are in the file when torch.save wrote it; a stranger's view (stride
    0) can declare any number of elements over one stored value, and the first copy of it
    (numpy's of an RNG state, a dtype conversion) would allocate them all."""
    import torch

    limit = path.stat().st_size
    pending, seen = [("", loaded)], set()
    while pending:  # not recursive: the unpickler builds lists nested deeper than the stack
        where, value = pending.pop()
        if isinstance(value, torch.Tensor):
            size = value.numel() * value.element_size()
            if size > limit:
                raise CheckpointError(path, f"{where or 'its tensor'} declares "
                                            f"{value.numel():_} elements ({size:_} bytes), "
                                            f"more than the file's {limit:_}")
        elif isinstance(value, (dict, list, tuple)) and id(value) not in seen:
            seen.add(id(value))  # the memo can make a list hold itself
            items = value.items() if isinstance(value, dict) else enumerate(value)
            pending += [(_inner(where, key, isinstance(value, dict)), item)
                        for key, item in items]


def _inner(where: str, key: Any, named: bool = True) -> str:
    """The path of ``key`` inside ``where``: ``task.G``, ``rng.numpy[1]``, ``state[0]``."""
    if named and isinstance(key, str):
        return f"{where}.{key}" if where else key
    return f"{where}[{key!r}]"


def first_line(error: BaseException) -> str:
    """The first line of an error's message that says anything (or its type's name)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def joined_lines(error: BaseException, limit: int = 300) -> str:
    """All of a message's lines on one (torch's state-dict errors say what is wrong on the
    second line), cut to a readable length."""
    return cut(" ".join(line.strip() for line in str(error).splitlines() if line.strip()), limit)


def _unpickling_reason(error: pickle.UnpicklingError) -> str:
    """The line of torch's message that says what was refused (it leads with boilerplate that
    suggests weights_only=False, which is exactly what must not be done with this file)."""
    lines = [line.split("WeightsUnpickler error:")[-1].strip()
             for line in str(error).splitlines()[1:]]
    useful = [line for line in lines
              if line and not line.startswith(("Please file", "Check the documentation"))]
    return useful[0] if useful else first_line(error)


# -- 2. the layout ------------------------------------------------------------------------------


def check_layout(layout: type, checkpoint: Any, path: Path) -> Any:
    """``layout(**checkpoint)``: a dict with every key of the layout (others are ignored),
    each of its declared type."""
    names = [spec.name for spec in fields(layout)]
    if not isinstance(checkpoint, dict):
        raise CheckpointError(path, f"expected a dict of {', '.join(names)}, "
                                    f"got {type(checkpoint).__name__}")
    required = [spec.name for spec in fields(layout) if spec.default is dataclasses.MISSING]
    missing = [name for name in required if name not in checkpoint]
    if missing:
        raise CheckpointError(path, f"missing {', '.join(missing)}")
    try:
        return layout(**{name: checkpoint[name] for name in names if name in checkpoint})
    except FieldError as error:
        raise CheckpointError(path, str(error)) from None


def check_class_names(names: tuple[str, ...], path: Path, where: str, at_least: int = 1
                       ) -> None:
    if not at_least <= len(names) <= MAX_CLASSES or len(set(names)) != len(names):
        raise CheckpointError(path, f"{where} must be {at_least} to {MAX_CLASSES:_} distinct "
                                    f"names, got {len(names)} ({len(set(names))} distinct)")


# -- 3. the weights -----------------------------------------------------------------------------


def check_state(expected: Any, found: Any, where: str, path: Path) -> None:
    """``found`` has everything ``expected`` (the built model's state) has: tensors of the same
    shape and dtype, numbers where numbers are, lists of the same length, every dict key.
    Extra keys are left to the loader (an optimizer's per-parameter state is empty before
    the first step, and the loaders of modules refuse unexpected keys themselves), and so are
    missing plain values: an optimizer setting that a newer torch added is missing from an
    older file, and torch fills in its default (a run's optimizers are checked by
    ``sketchgen.training.checkpoints.load_task_state``)."""
    import torch

    if isinstance(expected, torch.Tensor):
        _check_tensor(expected, found, where, path)
    elif isinstance(expected, dict):
        if not isinstance(found, dict):
            raise CheckpointError(path, f"{where} must be a dict, got {type(found).__name__}")
        for key, value in expected.items():
            inner = _inner(where, key)
            if key in found:
                check_state(value, found[key], inner, path)
            elif isinstance(value, (torch.Tensor, dict, list, tuple)):
                raise CheckpointError(path, f"{inner} is missing")
    elif isinstance(expected, (list, tuple)):
        if not isinstance(found, (list, tuple)) or len(found) != len(expected):
            raise CheckpointError(path, f"{where} must be a list of {len(expected)}, "
                                        f"got {_described(found)}")
        for index, (value, item) in enumerate(zip(expected, found, strict=True)):
            check_state(value, item, f"{where}[{index}]", path)
    elif not _same_kind(expected, found):
        raise CheckpointError(path, f"{where} must be like {expected!r}, got {_described(found)}")


def _check_tensor(expected: Any, found: Any, where: str, path: Path) -> None:
    import torch

    if not isinstance(found, torch.Tensor):
        raise CheckpointError(path, f"{where} must be a tensor, got {_described(found)}")
    if found.shape != expected.shape:
        raise CheckpointError(path, f"{where} has shape {tuple(found.shape)}, the model's is "
                                    f"{tuple(expected.shape)}")
    if found.dtype != expected.dtype:
        raise CheckpointError(path, f"{where} has dtype {found.dtype}, the model's is "
                                    f"{expected.dtype}")


def _same_kind(expected: Any, found: Any) -> bool:
    """Scalars: a bool for a bool, a string for a string, a number (or None) for a number or
    None (a task built without data holds None where a trained one holds a number)."""
    if isinstance(expected, bool) or isinstance(found, bool):
        return isinstance(expected, bool) and isinstance(found, bool)
    if isinstance(expected, str) or isinstance(found, str):
        return isinstance(expected, str) and isinstance(found, str)
    if expected is None or isinstance(expected, (int, float)):
        return found is None or isinstance(found, (int, float))
    return True


def _described(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__
