"""What every benchmark shares: a small fixed set of real drawings, the timer, extra_info.

The drawings: the first :data:`PER_CATEGORY` simplified drawings of each of
:data:`CATEGORIES`, read by Google name through ``sketchgen.data.datasets`` -- from
``$QUICKDRAW_MIRROR`` (a folder or a URL) or, without one, Google's bucket; over HTTP only the
head of each file is fetched. The shared mirror holds the first 250 lines of these categories
in Google's order, byte for byte, so a run from the mirror and one from the bucket time the
same drawings. Each loader reads and renders once per session (``functools.cache``: the
benchmarks of every module share one copy, which none of them modifies).

Each benchmark times our implementation and its baseline *in the same run*, alternating
between them and keeping each side's best round, so load on the machine hits both alike;
the ratio goes into ``benchmark.extra_info`` where the report reads it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

import numpy as np
import orjson

from rasterize.drawings import Drawing
from rasterize.geometry import GOOGLE_SIZE
from sketchgen.data import datasets as data

# The 23 categories of which the shared mirror holds Google's first 250 simplified lines:
# a varied mix (faces, animals, objects, shapes) with the same drawings in mirror and bucket.
CATEGORIES = (
    "bear", "beard", "bird", "bowtie", "circle", "cookie", "crab", "dog", "dragon", "ear",
    "eyeglasses", "face", "hat", "headphones", "hot dog", "moustache", "necklace", "nose",
    "sandwich", "sock", "wine bottle", "wine glass", "zigzag",
)
PER_CATEGORY = 180  # drawings per category: 23 x 180 = 4,140 in all
ROUNDS = 5  # best of 5 alternating rounds per side


def _fixed(categories: Sequence[str]) -> tuple[str, ...]:
    """``categories`` if all are in the fixed set (so every benchmark reads the same heads)."""
    outside = [name for name in categories if name not in CATEGORIES]
    if outside:
        raise ValueError(f"{outside} are not among the benchmark categories {CATEGORIES}")
    return tuple(categories)


def real_drawings(categories: Sequence[str] = CATEGORIES) -> data.LabelledDrawings:
    """The first PER_CATEGORY simplified drawings of each category, in file order."""
    return _drawings(_fixed(categories))


@functools.cache
def _drawings(categories: tuple[str, ...]) -> data.LabelledDrawings:
    return data.load_drawings(categories, per_class=PER_CATEGORY)


def real_bitmaps(categories: Sequence[str] = CATEGORIES, size: int = GOOGLE_SIZE
                 ) -> data.LabelledBitmaps:
    """The same drawings rendered (once, then from the cache) at ``size`` px."""
    return _bitmaps(_fixed(categories), size)


@functools.cache
def _bitmaps(categories: tuple[str, ...], size: int) -> data.LabelledBitmaps:
    return data.load_bitmaps(categories, size, per_class=PER_CATEGORY)


@functools.cache
def mixed_drawings() -> list[Drawing]:
    """All the drawings, interleaved: the first of every category, then the second, ..., so
    a prefix (the 256 px render benchmark takes 690) is still a mix of all of them."""
    loaded = real_drawings()
    place = np.arange(len(loaded)) - np.searchsorted(loaded.labels, loaded.labels)
    return [loaded.drawings[i] for i in np.lexsort((loaded.labels, place))]


@functools.cache
def first_lines() -> list[bytes]:
    """:func:`mixed_drawings` as ndjson lines. ``Drawing.to_json`` is Google's record layout,
    so these are the files' own lines byte for byte (``tests/test_fresh_machine.py``)."""
    return [orjson.dumps(drawing.to_json()) + b"\n" for drawing in mixed_drawings()]


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
