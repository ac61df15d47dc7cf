"""Runtime helpers shared by every model: device choice, seeding, RNG state, atomic files.

torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from sketchgen.config import TrainConfig


def choose_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA if available, then Apple MPS, else CPU; anything else is passed to torch."""
    import torch

    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) so the same seed gives the same run."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> dict[str, Any]:
    """The global python, numpy and torch RNG states as ``weights_only``-loadable data."""
    import torch

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, fsync it, then rename it over
    ``path``: a crash at any moment leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with tmp.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` atomically (temp file + ``os.replace``)."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``: a checkpoint cannot run code when loaded."""
    import torch

    return torch.load(path, map_location=device, weights_only=True)


def autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision when ``config.amp`` and on CUDA (bfloat16 if supported, else float16);
    a no-op context elsewhere, so the CPU path stays exact and deterministic."""
    import torch

    if not (config.amp and device.type == "cuda"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def grad_scaler(config: TrainConfig, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler that is active only for float16 autocast (bfloat16 needs none)."""
    import torch

    enabled = (config.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported())
    return torch.amp.GradScaler("cuda", enabled=enabled)


def maybe_compile(module: torch.nn.Module, config: TrainConfig, device: torch.device) -> Any:
    """``torch.compile(module)`` when ``config.compile`` and on CUDA, else ``module``.

    The compiled wrapper shares parameters with ``module``; keep using ``module`` for
    ``state_dict`` so checkpoint keys don't depend on the option.
    """
    import torch

    if config.compile and device.type == "cuda":
        return torch.compile(module)
    return module


@contextlib.contextmanager
def eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    """Put modules in eval mode and restore each one's previous mode afterwards."""
    previous = [module.training for module in modules]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for module, was_training in zip(modules, previous, strict=True):
            module.train(was_training)


def derived_seed(seed: int, purpose: str) -> int:
    """An independent 63-bit seed for one purpose (batches, grid noise, ...), so streams seeded
    from the same run seed are not the same stream (torch.manual_seed(s) and
    Generator().manual_seed(s) would otherwise produce identical numbers)."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
