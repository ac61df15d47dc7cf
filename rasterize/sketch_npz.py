"""Sketch-RNN ``.npz`` files: a reader that runs no code and bounds its memory, and a writer.

Google's layout: keys ``train``, ``valid``, ``test``, each an object array of int16 stroke-3
arrays (``rasterize.strokes``). The shared mirror's files (``sketchrnn/*.npz``) instead hold
one key ``sketches`` (Google's test split) plus a ``pix_count`` array that is ignored here.
Both are pickled object arrays (Google's written by Python 2), so they cannot be read with
``allow_pickle=False``, and ``allow_pickle=True`` runs whatever code a file names. They are
read with a restricted unpickler instead (``rasterize.npz_pickle``): it rebuilds numpy arrays
of numbers and refuses anything else before calling it; every sketch must then be a numeric
``(n, 3)`` array within the drawing limits of ``rasterize.drawings``. Arrays that are not
object arrays load with ``allow_pickle=False``. Reading a split may take at most
:data:`MAX_NPZ_SPLIT_BYTES` of memory (each part is counted before it is made), so a zip bomb
fails in one line too.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from rasterize.drawings import MAX_POINTS_PER_DRAWING, MAX_STROKES_PER_DRAWING
from rasterize.npz_pickle import (
    PickledArray,
    check_pickle,
    described,
    short_repr,
    unpickled_items,
)

GOOGLE_NPZ_SPLITS = ("train", "valid", "test")
MIRROR_NPZ_KEY = "sketches"  # the shared mirror's single split (Google's test split)
NPZ_INT16 = np.iinfo(np.int16)
# The most memory reading one split of a Sketch-RNN .npz may take, each part counted before
# it is made: the member, decompressed; for a pickled object array the objects unpickling
# makes (estimated from its opcodes: about 3 times what they take); the sketches. Far above
# Google's files (the mirror's largest split, 2,500 pig sketches in a 1.9 MB member, counts
# 14.5 MB and takes 8 MB; Google's training splits of 70,000 are about 28 times that), low
# enough that a crafted file (4 MB of deflate can inflate to 4 GB; a megabyte of pickle can
# make a million lists or name one array a million times) fails in one line instead of taking
# the machine's memory.
MAX_NPZ_SPLIT_BYTES = 2 << 30


def read_sketch_npz(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """The stroke-3 sketches of a Sketch-RNN ``.npz``, by split name.

    Google's files give ``{"train", "valid", "test"}``; the shared mirror's give
    ``{"sketches"}`` (Google's test split only -- split it yourself). Nothing in the file can
    run code (see the module docstring); a bad file, split or sketch raises ``ValueError``
    naming the file and the split (and the sketch).
    """
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ValueError(f"{path}: not an .npz file, or a truncated one (no zip index)") from None
    with archive:
        members = {name.removesuffix(".npy"): name for name in archive.namelist()}
        keys = [k for k in GOOGLE_NPZ_SPLITS if k in members]
        if not keys and MIRROR_NPZ_KEY in members:
            keys = [MIRROR_NPZ_KEY]
        if not keys:
            raise ValueError(
                f"{path}: no Sketch-RNN splits (expected keys {GOOGLE_NPZ_SPLITS} or "
                f"{MIRROR_NPZ_KEY!r}, found {list(members)})"
            )
        return {key: _checked_split(archive, members[key], path, key) for key in keys}


# What the bytes of a broken member, header or pickle can raise while being read (zipfile:
# NotImplementedError for an unknown compression, RuntimeError for an encrypted member).
_NPZ_ERRORS = (ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, zlib.error,
               NotImplementedError, RuntimeError)


def _checked_split(archive: zipfile.ZipFile, member_name: str, path, key: str) -> list:
    """One split's stroke-3 arrays, each checked and counted against the split's memory
    limit before it is made (an array named again and again by a pickle is copied as many
    times; a plain array's rows are one small array each)."""
    budget = _SplitBudget()
    sketches = []
    for index, item in enumerate(_npz_split(archive, member_name, path, key, budget)):
        copied = item.data_bytes() if isinstance(item, PickledArray) else 0
        budget.spend(_SKETCH_BYTES + copied, f"{path}: {key}[{index}]: the sketches up to this one")
        sketches.append(_checked_stroke3(item, path, key, index))
    return sketches


def _npz_split(
    archive: zipfile.ZipFile, member_name: str, path, key: str, budget: _SplitBudget
) -> Sequence:
    """One split's sketches: the rows of a plain array, or the items of an object array."""
    try:
        member = _member(archive, member_name, budget)
        shape, dtype = _npy_header(member)
        if not dtype.hasobject:
            return _plain_array(member, shape, dtype, budget)
        made = check_pickle(member)
        budget.spend(made, f"unpickling it would make about {made:,} bytes of objects")
        return unpickled_items(member)
    except _NPZ_ERRORS as error:
        raise ValueError(f"{path}: {key}: {error}") from None


_NPZ_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # what numpy's savez writes
_READ_BYTES = 1 << 20  # per read of a member: a deflate read of n bytes inflates at most n
_SKETCH_BYTES = 192  # what a sketch takes besides its data: its ndarray and its list slot


class _SplitBudget:
    """What reading one split may still take in memory; spending past it raises ValueError."""

    def __init__(self) -> None:
        self.left = MAX_NPZ_SPLIT_BYTES

    def spend(self, nbytes: int, what: str) -> None:
        self.left -= nbytes
        if self.left < 0:
            raise ValueError(
                f"{what}: more than the {MAX_NPZ_SPLIT_BYTES:,} bytes a split may take in memory"
            )


def _member(archive: zipfile.ZipFile, name: str, budget: _SplitBudget) -> io.BytesIO:
    """A member's bytes, inflated a bounded piece at a time (zipfile inflates bzip2 and lzma
    a whole read at once, however large, so those are refused)."""
    info = archive.getinfo(name)
    if info.compress_type not in _NPZ_COMPRESSIONS:
        method = zipfile.compressor_names.get(info.compress_type, info.compress_type)
        raise ValueError(f"compressed with {method}; numpy writes only stored or deflated members")
    budget.spend(info.file_size, f"{info.file_size:,} bytes decompressed")
    data = io.BytesIO()
    with archive.open(info) as member:  # stops at file_size; a longer stream fails its CRC
        while piece := member.read(_READ_BYTES):
            data.write(piece)
    data.seek(0)
    return data


def _npy_header(member: io.BytesIO) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype in a ``.npy`` header, leaving ``member`` at the start of the data."""
    if np.lib.format.read_magic(member) == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    return shape, dtype


def _plain_array(member: io.BytesIO, shape, dtype: np.dtype, budget: _SplitBudget) -> np.ndarray:
    """The array, once its header is known to promise no more than the member holds (numpy
    allocates what the header says before reading)."""
    nbytes = math.prod(shape) * dtype.itemsize
    start = member.tell()
    held = member.seek(0, io.SEEK_END) - start
    if nbytes > held:
        raise ValueError(f"the header's shape {short_repr(shape)} of {dtype} needs "
                         f"{nbytes:,} bytes; the member holds {held:,}")
    budget.spend(nbytes, f"an array of {nbytes:,} bytes")
    member.seek(0)
    return np.lib.format.read_array(member, allow_pickle=False)


def _checked_stroke3(sketch, path, key: str, index: int) -> np.ndarray:
    where = f"{path}: {key}[{index}]"
    if isinstance(sketch, PickledArray):
        try:
            sketch = sketch.numeric()
        except pickle.UnpicklingError as error:
            raise ValueError(f"{where} is {error}, expected a stroke-3 array") from None
    if not isinstance(sketch, np.ndarray):
        raise ValueError(f"{where} is a {described(sketch)}, expected a stroke-3 array")
    if sketch.dtype.kind not in "iuf":
        raise ValueError(f"{where} is an array of dtype {sketch.dtype}, expected a stroke-3 array")
    if sketch.ndim != 2 or sketch.shape[1] != 3 or len(sketch) == 0:
        raise ValueError(f"{where} has shape {sketch.shape}, expected a non-empty (n, 3) array")
    if not np.isfinite(sketch).all():
        raise ValueError(f"{where} holds a value that is not finite")
    if len(sketch) > MAX_POINTS_PER_DRAWING:
        raise ValueError(f"{where} has {len(sketch)} points, more than the limit of "
                         f"{MAX_POINTS_PER_DRAWING} per drawing")
    strokes = int(np.count_nonzero(sketch[:-1, 2] > 0.5)) + 1  # as stroke3_to_drawing splits
    if strokes > MAX_STROKES_PER_DRAWING:
        raise ValueError(f"{where} has {strokes} strokes, more than the limit of "
                         f"{MAX_STROKES_PER_DRAWING} per drawing")
    return sketch


def write_sketch_npz(
    path: str | os.PathLike, splits: Mapping[str, Sequence[np.ndarray]]
) -> None:
    """Write stroke-3 sketches in Google's layout (object arrays of int16), atomically.

    Offsets must be integers within int16 (as in simplified drawings); anything else raises
    instead of being silently rounded or wrapped.
    """
    arrays = {}
    for key, sketches in splits.items():
        column = np.empty(len(sketches), dtype=object)
        for i, sketch in enumerate(sketches):
            column[i] = _as_int16(np.asarray(sketch), key, i)
        arrays[key] = column
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    try:
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _as_int16(sketch: np.ndarray, key: str, index: int) -> np.ndarray:
    if sketch.ndim != 2 or sketch.shape[1] != 3 or len(sketch) == 0:
        raise ValueError(f"{key}[{index}] is not a non-empty (n, 3) stroke-3 array")
    if not (np.isfinite(sketch).all() and np.array_equal(sketch, np.round(sketch))):
        raise ValueError(f"{key}[{index}] has non-integer offsets; int16 storage would round them")
    if sketch.min() < NPZ_INT16.min or sketch.max() > NPZ_INT16.max:
        raise ValueError(f"{key}[{index}] has offsets outside the int16 range")
    return sketch.astype(np.int16)


__all__ = ["MAX_NPZ_SPLIT_BYTES", "read_sketch_npz", "write_sketch_npz"]
