"""The registry of checks, the runner that times and prints them, and ``main``."""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sketchgen.gpu_check.context import (
    BENCHMARKS,
    SCALES,
    TORCHRUN_CHILD,
    Check,
    Context,
    Skipped,
    one_line,
)
from sketchgen.gpu_check.device_checks import (
    bench_render_check,
    bench_train_check,
    classifier_check,
    fid_across_devices_check,
    render_across_devices_check,
    render_check,
)
from sketchgen.gpu_check.train_checks import (
    distributed_child,
    sample_across_devices_check,
    sample_check,
    torchrun_check,
    train_check,
)

if TYPE_CHECKING:
    import torch

# --- the registry ----------------------------------------------------------------------------

NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")  # present when an NVIDIA driver is loaded


def _check(name: str, run: Callable[..., str], seconds: float, needs_cuda: bool = False,
           **arguments: Any) -> Check:
    return Check(name, functools.partial(run, **arguments), seconds, needs_cuda)


CHECKS: tuple[Check, ...] = (
    _check("train sngan", train_check, 8, model="sngan"),
    _check("train sngan --amp", train_check, 8, True, model="sngan", amp=True),
    _check("train dcgan --amp", train_check, 8, True, model="dcgan", amp=True),
    _check("train sngan --compile", train_check, 60, True, model="sngan", compile=True),
    # Sketch-RNN applies neither --amp nor --compile (README): runs with them would train the
    # same float32 model again and could not fail where this one passes
    _check("train sketch-rnn", train_check, 6, model="sketch-rnn"),
    _check("sample sngan", sample_check, 3, model="sngan"),
    _check("sample sngan cuda vs cpu", sample_across_devices_check, 3, True, model="sngan"),
    _check("sample sketch-rnn", sample_check, 4, model="sketch-rnn"),
    _check("sample sketch-rnn cuda vs cpu", sample_across_devices_check, 5, True,
           model="sketch-rnn"),
    _check("torch render vs cairo", render_check, 2),
    _check("torch render cuda vs cpu", render_across_devices_check, 2, True),
    _check("classifier", classifier_check, 4),
    _check("fid cuda vs cpu", fid_across_devices_check, 2, True),
    _check("torchrun dcgan (nccl)", torchrun_check, 25, True),
    _check("bench train", bench_train_check, 25),
    _check("bench torch render", bench_render_check, 5),
)


# --- the runner ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: str  # PASS, FAIL or SKIP
    name: str
    seconds: float | None  # None: not run
    detail: str  # the figure, the one-line reason, or why it was skipped


def run_check(check: Check, ctx: Context, verbose: bool = False) -> Outcome:
    """Run and time one check. What it writes to stderr (the harness's summaries, warnings)
    is kept out of the report; ``verbose`` prints it, with the traceback, for a failure."""
    if check.needs_cuda and ctx.device.type != "cuda":
        return Outcome("SKIP", check.name, None, "(needs CUDA)")
    began = time.perf_counter()
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stderr(chatter):
            detail = check.run(ctx)
            if ctx.device.type == "cuda":  # an asynchronous CUDA error belongs to this check
                import torch

                torch.cuda.synchronize(ctx.device)
        status = "PASS"
    except Skipped as reason:
        status, detail = "SKIP", str(reason)
    except Exception as error:
        status, detail = "FAIL", one_line(error)
        if verbose:
            sys.stderr.write(chatter.getvalue())
            traceback.print_exception(error, file=sys.stderr)
    return Outcome(status, check.name, time.perf_counter() - began, detail)


def format_outcome(outcome: Outcome, width: int) -> str:
    """``STATUS  name  seconds  detail``, the name padded to ``width``."""
    seconds = "-" if outcome.seconds is None else f"{outcome.seconds:.1f} s"
    return f"{outcome.status}  {outcome.name:<{width}}  {seconds:>7}  {outcome.detail}"


def summary(outcomes: Sequence[Outcome], seconds: float) -> str:
    counts = {status: sum(o.status == status for o in outcomes) for status in ("PASS", "FAIL",
                                                                               "SKIP")}
    line = (f"{len(outcomes)} checks in {seconds:.1f} s: {counts['PASS']} passed, "
            f"{counts['FAIL']} failed, {counts['SKIP']} skipped")
    failed = [o.name for o in outcomes if o.status == "FAIL"]
    return line + (f"; FAILED: {', '.join(failed)}" if failed else "")


def run_checks(checks: Sequence[Check], ctx: Context, out: IO[str] | None = None,
               verbose: bool = False) -> list[Outcome]:
    """Run every check in order, printing its line (to ``out``, default stdout) as soon as it
    is done."""
    out = out or sys.stdout
    width = max(len(check.name) for check in checks)
    outcomes = []
    for check in checks:
        outcomes.append(run_check(check, ctx, verbose))
        print(format_outcome(outcomes[-1], width), file=out, flush=True)
    return outcomes


def no_cuda_message() -> tuple[str, int]:
    """The line printed when CUDA is wanted but torch sees none, and the exit status: 0 on a
    machine without a GPU, 1 when an NVIDIA driver is loaded (torch is the wrong build)."""
    import torch

    if NVIDIA_DRIVER.exists():
        build = ("a CPU-only build" if torch.version.cuda is None
                 else f"built for CUDA {torch.version.cuda}")
        return (f"no CUDA device visible to torch {torch.__version__} ({build}), but an NVIDIA "
                "driver is loaded: install a CUDA build of torch (tox.ini [testenv:gpu])", 1)
    return f"no CUDA device: nothing to check (torch {torch.__version__}, CUDA not available)", 0


def describe(device: torch.device, scale_name: str) -> str:
    """The header line: what is being checked on what."""
    import torch

    parts = [f"torch {torch.__version__}"]
    if device.type == "cuda":
        gpu = torch.cuda.get_device_properties(device)
        parts += [
            f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}",
            f"{gpu.name} ({gpu.total_memory / 2**30:.0f} GiB) of {torch.cuda.device_count()}",
            "bfloat16" if torch.cuda.is_bf16_supported() else "float16 + GradScaler (no bf16)",
            f"TF32 convolutions {'on' if torch.backends.cudnn.allow_tf32 else 'off'}",
        ]
    return f"sketchgen GPU self-check on {device}, scale {scale_name}: " + ", ".join(parts)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sketchgen.gpu_check",
        description="Check the CUDA paths (AMP, compile, sampling, renderer, classifier, FID, "
                    "torchrun/NCCL, benchmarks): one line per check, exit status 1 on a "
                    "failure. Without CUDA it says so and exits 0.")
    parser.add_argument("--device", default="cuda",
                        help="torch device; cpu runs every check that needs no CUDA "
                             "(default: cuda)")
    parser.add_argument("--scale", choices=SCALES, default="normal",
                        help="normal: the GPU run; tiny: small networks, seconds on a CPU")
    parser.add_argument("--mirror", default=None,
                        help="data folder or URL (default: $QUICKDRAW_MIRROR, else Google's "
                             "bucket)")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="run only checks whose name contains TEXT (repeatable)")
    parser.add_argument("--benchmarks", type=Path, default=BENCHMARKS, metavar="DIR",
                        help="the checkout's benchmarks/ folder (default: beside the package, "
                             "for an editable install)")
    parser.add_argument("--ranks", type=int, default=None,
                        help="torchrun processes (default: 2 if there are 2 GPUs, else 1)")
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    parser.add_argument("--verbose", action="store_true",
                        help="print the traceback of every failure to stderr")
    return parser


def _selected(only: Sequence[str]) -> list[Check]:
    return [check for check in CHECKS if not only or any(text in check.name for text in only)]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [TORCHRUN_CHILD]:
        return distributed_child(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    checks = _selected(args.only)
    if not checks:
        parser.error(f"no check name contains {' or '.join(map(repr, args.only))}")
    if args.list:
        width = max(len(check.name) for check in checks)
        for check in checks:
            print(f"{check.name:<{width}}  ~{check.seconds:g} s"
                  + ("  (needs CUDA)" if check.needs_cuda else ""))
        print(f"expected in all: ~{sum(check.seconds for check in checks):g} s on a typical GPU "
              "(estimates)")
        return 0
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        message, status = no_cuda_message()
        print(message)
        return status
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        parser.error(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    ranks = args.ranks or (min(2, torch.cuda.device_count()) if device.type == "cuda" else 1)
    began = time.perf_counter()
    print(describe(device, args.scale), flush=True)
    with tempfile.TemporaryDirectory(prefix="sketchgen-gpu-check-") as work:
        ctx = Context(device, SCALES[args.scale], Path(work), args.mirror, ranks,
                      args.benchmarks)
        outcomes = run_checks(checks, ctx, verbose=args.verbose)
    print(summary(outcomes, time.perf_counter() - began))
    return 1 if any(outcome.status == "FAIL" for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())

