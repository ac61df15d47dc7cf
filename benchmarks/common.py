"""What every benchmark shares: the mirror, a varied real mix of lines, the timer, extra_info.

Each benchmark times our implementation and its baseline *in the same run*, alternating
between them and keeping each side's best round, so load on the machine hits both alike;
the ratio goes into ``benchmark.extra_info`` where the report reads it.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

MIRROR = Path(
    os.environ.get("QUICKDRAW_MIRROR")
    or Path(__file__).resolve().parents[1].parent / "shared" / "quickdraw"
)
SIMPLIFIED = MIRROR / "full" / "simplified"
ROUNDS = 5  # best of 5 alternating rounds per side


def first_lines(per_category: int) -> list[bytes]:
    """The first lines of every simplified category file: a varied, real mix."""
    lines = []
    for path in sorted(SIMPLIFIED.glob("*.ndjson")):
        with open(path, "rb") as stream:
            lines += itertools.islice(stream, per_category)
    return lines


def best_times(*functions, rounds: int = ROUNDS) -> list[float]:
    """Best wall time of each function, calling them in turn ``rounds`` times."""
    best = [float("inf")] * len(functions)
    for _ in range(rounds):
        for i, function in enumerate(functions):
            start = time.perf_counter()
            function()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def record(benchmark, **info) -> None:
    """Put figures into the benchmark JSON (floats to 3 decimals)."""
    for key, value in info.items():
        benchmark.extra_info[key] = round(value, 3) if isinstance(value, float) else value
