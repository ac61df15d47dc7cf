"""What every check shares: the scales, the tolerances, the context and the check type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# apple's first 100 and eye's first 250 simplified lines are Google's, in Google's order, in
# the shared mirror and the bucket alike, and are among the 450 drawings whose Google bitmaps
# the README's torch-renderer bounds were measured on.
CATEGORIES = ("apple", "eye")
STROKE_CATEGORIES = ("eye",)  # Sketch-RNN learns one category (vae mode)
# seconds: a hung NCCL rendezvous or benchmark is a failure; ~10 times the ~25 s expected,
# within the whole run's 5-minute budget (600 let one hang take twice that)
SUBPROCESS_TIMEOUT = 240
TORCHRUN_CHILD = "_torchrun-child"  # argv[1] of the process torchrun starts (not public)
PROBE = "gpu-check probe: "  # prefix of the child's JSON line on stdout
# benchmarks/ of the checkout the package was installed from in place (pip install -e)
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


class CheckFailed(Exception):
    """A check's expectation did not hold; the message is the line printed after FAIL."""


class Skipped(Exception):
    """A check cannot run here for a reason outside the code it checks (printed after SKIP)."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass(frozen=True)
class Scale:
    """How much work every check does."""

    per_class: int  # drawings per category: training, renderer and classifier data
    batch_size: int  # GAN and torchrun batch
    steps: int  # training steps before the resume
    resumed_steps: int  # further steps after ``--resume``
    rnn_batch_size: int  # Sketch-RNN batch (magenta: 100)
    samples: int  # drawings per sampling check
    classifier_width: int  # k of the width-k classifier: 8k features
    classifier_epochs: int  # epochs (patience as long: no early stop)
    # the suite's 128 would be 2 Adam steps an epoch here: the classifier would stay at chance
    classifier_batch_size: int
    # on the held-out tenth; 0: no bound (at the tiny scale a few images after a few steps)
    min_accuracy: float
    bench_cases: tuple[str, ...]  # benchmarks/bench_train.py case ids
    timing_rounds: int  # best of this many rounds in the render timing
    gan_options: dict[str, Any] = field(default_factory=dict)  # --set for every GAN
    rnn_options: dict[str, Any] = field(default_factory=dict)  # --set for Sketch-RNN


SCALES = {
    # the GPU run: the models at their real sizes, a few steps each
    "normal": Scale(per_class=100, batch_size=64, steps=50, resumed_steps=10, rnn_batch_size=100,
                    samples=64, classifier_width=8, classifier_epochs=3,
                    classifier_batch_size=16, min_accuracy=0.8,  # CPU: 0.95 to 1.0, 5 seeds
                    bench_cases=("sngan-28", "sngan-64"), timing_rounds=3),
    # the CPU test: small networks and a handful of steps, every code path still taken
    "tiny": Scale(per_class=16, batch_size=8, steps=2, resumed_steps=1, rnn_batch_size=8,
                  samples=8, classifier_width=4, classifier_epochs=1, classifier_batch_size=16,
                  min_accuracy=0.0, bench_cases=("sngan-28",),
                  timing_rounds=1, gan_options={"width": 8, "standing_batches": 1},
                  rnn_options={"enc_rnn_size": 16, "dec_rnn_size": 32, "z_size": 8,
                               "num_mixture": 3, "sample_max_len": 40}),
}


@dataclass
class Context:
    """What the checks share: the device, the scale, a work folder this run created, and the
    products of earlier checks (trained runs, the classifier) so each is made once."""

    device: torch.device
    scale: Scale
    work: Path
    mirror: str | None = None  # None: $QUICKDRAW_MIRROR, else Google's bucket
    ranks: int = 1  # torchrun processes
    benchmarks: Path = BENCHMARKS  # the checkout's benchmarks/ folder
    products: dict[str, tuple[Any, BaseException | None]] = field(default_factory=dict)

    def product(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()``'s result, made once; a failure is remembered and named to later users."""
        if key not in self.products:
            try:
                self.products[key] = (make(), None)
            except Exception as error:
                self.products[key] = (None, error)
                raise
        value, error = self.products[key]
        if error is not None:
            raise CheckFailed(f"needs {key}, which failed: {one_line(error)}") from error
        return value


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Context], str]  # returns the figure printed after PASS, or raises
    seconds: float  # expected time on a typical GPU at the normal scale (an estimate)
    needs_cuda: bool = False  # AMP, compile, NCCL, or a comparison of CUDA with the CPU


def one_line(error: BaseException) -> str:
    """An exception as one line: its message (its type too unless it is a CheckFailed)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if not isinstance(error, CheckFailed):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"
