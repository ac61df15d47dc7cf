"""Heads: how much of a file a download asks for, given a record limit.

With ``limit=None`` a download is the whole file (:class:`Whole`); with a limit, only a
*head* of an ``.ndjson`` file (:class:`Lines`: the first lines, cut after the last whole one)
or of an ``.npy`` (:class:`Rows`: rows as its header lays them out, read by numpy's parser,
which evaluates no code). Each sees the bytes held, in order, and says how many are needed.
:mod:`sketchgen.data.download` fetches what they ask for; :mod:`sketchgen.data.cache` cuts the
head out of it.
"""

from __future__ import annotations

import io
import math
import tokenize
from pathlib import Path

import numpy as np


def check_limit(limit: int | None, name: str = "limit") -> None:
    """ValueError unless a record limit (parameter ``name``) is None or a positive integer."""
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1
    ):
        raise ValueError(f"{name} must be a positive integer or None, got {limit!r}")


# -- what a download asks for ---------------------------------------------------------------
# ``feed`` sees every byte of the source held, in order; ``end`` says how many bytes of the
# source must be held, given how many are (``total``: the source's size, None while unknown).


class Whole:
    """The whole file."""

    def reset(self) -> None:
        pass

    def feed(self, block: bytes) -> None:
        pass

    def end(self, held: int, total: int | None) -> int | None:
        return total


class Lines:
    """An ndjson head: at least ``limit`` complete lines."""

    def __init__(self, limit: int, chunk: int):
        self.limit, self.chunk = limit, chunk
        self.reset()

    def reset(self) -> None:
        self.lines = 0  # complete lines held
        self.cut = 0  # bytes up to the end of the last complete line
        self.seen = 0  # bytes fed

    def feed(self, block: bytes) -> None:
        if count := block.count(b"\n"):
            self.lines += count
            self.cut = self.seen + block.rindex(b"\n") + 1
        self.seen += len(block)

    def end(self, held: int, total: int | None) -> int:
        if self.lines >= self.limit:
            return held
        if self.lines == 0:  # no line end seen yet: a chunk, then double what is held
            want = held + max(self.chunk, held)
        else:  # the missing lines at the average length so far, plus an eighth (< a chunk)
            estimate = math.ceil((self.limit - self.lines) * self.cut / self.lines)
            want = held + estimate + min(estimate // 8, self.chunk)
        return want if total is None else min(want, total)


_NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADER_MAX = 12 + 10_000  # the preamble plus numpy's own limit on a header's size
# What numpy's .npy header parser raises for a bad header: a ValueError, except for text it
# cannot tokenize (an unbalanced bracket), which fails before numpy's own checks.
NPY_HEADER_ERRORS = (ValueError, tokenize.TokenError)


def npy_header_end(prefix: bytes) -> int | None:
    """Where the header of the .npy file starting with ``prefix`` (12+ bytes) ends; None
    for anything but a version 1 or 2 .npy file."""
    if prefix[:6] != _NPY_MAGIC or prefix[6] not in (1, 2):
        return None
    if prefix[6] == 1:
        return 10 + int.from_bytes(prefix[8:10], "little")
    return 12 + int.from_bytes(prefix[8:12], "little")


def row_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(shape[1:]) * dtype.itemsize


def _npy_layout(header: bytes) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype from a whole .npy header (parsed by numpy, which evaluates no code),
    None unless rows can be cut from the file: C order, no Python objects, non-empty rows
    (numpy's parser lets negative sizes through)."""
    stream = io.BytesIO(header)
    npy = np.lib.format
    major, _ = npy.read_magic(stream)
    read = npy.read_array_header_1_0 if major == 1 else npy.read_array_header_2_0
    try:
        shape, fortran_order, dtype = read(stream)
    except NPY_HEADER_ERRORS:
        return None
    cuttable = shape and min(shape) >= 0 and row_bytes(shape, dtype) > 0
    if fortran_order or dtype.hasobject or not cuttable:
        return None
    return shape, dtype


class Rows:
    """An .npy head: at least ``limit`` rows, as the file's header lays them out; the whole
    file if the header is not one rows can be cut from."""

    def __init__(self, limit: int, chunk: int):
        self.limit, self.chunk = limit, chunk
        self.reset()

    def reset(self) -> None:
        self.prefix = b""  # the first bytes, until the header is read
        self.header_end: int | None = None
        self.layout: tuple[tuple[int, ...], np.dtype] | None = None
        self.whole = False  # not an .npy file rows can be cut from

    def feed(self, block: bytes) -> None:
        if self.layout is not None or self.whole:
            return
        self.prefix += block[: _NPY_HEADER_MAX - len(self.prefix)]
        if self.header_end is None and len(self.prefix) >= 12:
            self.header_end = npy_header_end(self.prefix)
            self.whole = self.header_end is None or self.header_end > _NPY_HEADER_MAX
        if not self.whole and self.header_end and len(self.prefix) >= self.header_end:
            self.layout = _npy_layout(self.prefix[: self.header_end])
            self.whole = self.layout is None

    def end(self, held: int, total: int | None) -> int | None:
        if self.whole:
            return total
        if self.layout is None:
            want = max(held + self.chunk, self.header_end or 0)
        else:
            shape, dtype = self.layout
            want = self.header_end + min(self.limit, shape[0]) * row_bytes(shape, dtype)
        return want if total is None else min(want, total)


Want = Whole | Lines | Rows


def want_for(dest: Path, limit: int | None, chunk: int) -> Want:
    """What to fetch for ``limit`` records of ``dest``'s kind of file. Sketch-RNN .npz files
    are zip archives, whose index is at their end: they are always fetched whole."""
    if limit is None:
        return Whole()
    if dest.name.endswith(".ndjson"):
        return Lines(limit, chunk)
    if dest.name.endswith(".npy"):
        return Rows(limit, chunk)
    return Whole()


__all__ = [
    "NPY_HEADER_ERRORS",
    "Lines",
    "Rows",
    "Want",
    "Whole",
    "check_limit",
    "npy_header_end",
    "row_bytes",
    "want_for",
]
