"""Runtime helpers shared by every layer: device choice, seeding and RNG state, atomic files,
file locks, checkpoint files, torch thread counts, eval mode, the AMP and compile switches, and
data parallelism under torchrun.

A base module: it imports only ``sketchgen.errors`` and ``sketchgen.checkpoints`` (the checked
reader, which imports no torch either), and torch only inside the functions, so importing it
stays cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sketchgen.checkpoints import load
from sketchgen.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE = "auto"  # every device default (training, sampling, comparisons): CUDA, MPS, CPU


def choose_device(name: str = DEVICE) -> torch.device:
    """``auto``: CUDA if available, then Apple MPS, else CPU; anything else is a torch device
    string, refused (a ConfigError naming it) unless this machine's torch can use it."""
    import torch

    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError as error:
            raise ConfigError(f"device {name!r} is not a torch device ({error})") from None
        if not _usable(device):
            raise ConfigError(f"device {name!r} is not available to this torch "
                              f"{torch.__version__}")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _usable(device: torch.device) -> bool:
    """The CPU; MPS if built and present; another type (cuda, xpu, ...) if torch's module of
    that name has it available, with that many devices (the meta device stores no values)."""
    import torch

    if device.type in ("cpu", "mps"):
        return device.type == "cpu" or torch.backends.mps.is_available()
    backend = getattr(torch, device.type, None)
    if not (hasattr(backend, "is_available") and backend.is_available()):
        return False
    return device.index is None or device.index < backend.device_count()


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


# What atomic_write leaves behind when killed: "." + the file's name + "." + mkstemp's 8 random
# characters + ".tmp" (a glob pattern, for cleaning up a folder the suite owns)
ATOMIC_TEMPORARY = ".?*.????????.tmp"


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


@contextlib.contextmanager
def file_lock(lock: str | Path) -> Iterator[None]:
    """Hold a blocking exclusive ``flock`` on the file ``lock`` (created if missing) for the
    block, so processes sharing a cache build or write one entry at a time."""
    import fcntl

    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    # O_NOFOLLOW: a planted symbolic link must not make us create or lock another file
    handle = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the lock


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` atomically (temp file + ``os.replace``)."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True`` of a checked archive: a checkpoint cannot run
    code when loaded, and a damaged or refused one is a one-line error naming the file
    (``sketchgen.checkpoints.load``; ``read_checkpoint`` also checks a run's layout)."""
    return load(path, device)


class Acceleration(Protocol):
    """The switches :func:`autocast`, :func:`grad_scaler` and :func:`maybe_compile` read from a
    run's config (``sketchgen.training.config.TrainConfig`` has both)."""

    amp: bool
    compile: bool


def autocast(config: Acceleration, device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision when ``config.amp`` and on CUDA (bfloat16 if supported, else float16);
    a no-op context elsewhere, so the CPU path stays exact and deterministic."""
    import torch

    if not (config.amp and device.type == "cuda"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def grad_scaler(config: Acceleration, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler that is active only for float16 autocast (bfloat16 needs none)."""
    import torch

    enabled = (config.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported())
    return torch.amp.GradScaler("cuda", enabled=enabled)


def maybe_compile(module: torch.nn.Module, config: Acceleration, device: torch.device) -> Any:
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


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op torch threads, then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def derived_seed(seed: int, purpose: str) -> int:
    """An independent 63-bit seed for one purpose (batches, grid noise, ...), so streams seeded
    from the same run seed are not the same stream (torch.manual_seed(s) and
    Generator().manual_seed(s) would otherwise produce identical numbers)."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# --- data parallelism (torchrun) -------------------------------------------------------------
# Every rank draws the same *global* batch, noise and labels from identically seeded
# generators and trains on its shard (``shard``); gradients are averaged across ranks after
# each backward (``average_gradients``) before the optimizer step. With equal shards this is
# the gradient of the global batch's mean loss, so N processes follow the single-process run
# with the same global batch. Gradients are reduced by hand, as StyleGAN2-ADA does, rather
# than through the DistributedDataParallel wrapper: GAN steps run D several times per
# backward (real, fake) and through a frozen D for G's step, which the wrapper's one-forward-
# one-backward bookkeeping does not allow.


def init_distributed(device_name: str = DEVICE) -> tuple[int, int, torch.device]:
    """(rank, world size, device) of this process. Under ``torchrun`` (WORLD_SIZE > 1) the
    process group is initialised: NCCL with one GPU per local rank when CUDA is available,
    else gloo on the CPU. Without torchrun: (0, 1, choose_device(device_name))."""
    import torch
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, choose_device(device_name)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available() and device_name in ("auto", "cuda"):
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), device


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside an initialised process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (the whole batch on one process)."""
    rank, size = world()
    if size == 1:
        return tensor
    if len(tensor) % size:
        raise ValueError(f"a batch of {len(tensor)} does not split evenly over {size} ranks")
    return tensor.chunk(size)[rank]


def check_shards(count: int, what: str) -> None:
    """Refuse, before any work, a global batch that does not split into equal shards over
    the ranks (a ConfigError naming ``what``, a phrase that includes ``count``)."""
    _, size = world()
    if count % size:
        raise ConfigError(f"{what} does not split into {size} equal shards (torchrun)")


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over ranks (one all-reduce of a flat buffer)."""
    import torch
    import torch.distributed as dist

    _, size = world()
    grads = [p.grad for p in parameters if p.grad is not None]
    if size == 1 or not grads:
        return
    flat = torch.cat([grad.reshape(-1) for grad in grads])
    dist.all_reduce(flat)
    flat /= size
    for grad, reduced in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        grad.copy_(reduced.view_as(grad))


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over ranks, detached (``value`` itself on one process)."""
    import torch.distributed as dist

    _, size = world()
    if size == 1:
        return value.detach()
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / size


def average_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Means over ranks of per-rank means (equal shards: the global batch's means)."""
    import torch
    import torch.distributed as dist

    if world()[1] == 1 or not metrics:
        return metrics
    values = torch.tensor(list(metrics.values()), dtype=torch.float64)
    if dist.get_backend() == "nccl":
        values = values.cuda()
    return dict(zip(metrics, mean_over_ranks(values).tolist(), strict=True))
