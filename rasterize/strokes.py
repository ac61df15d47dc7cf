"""Stroke-3 and stroke-5 sequences, Sketch-RNN ``.npz`` files and offset normalisation.

This module is THE place the sequence conventions of the suite are written down; every other
module (the Sketch-RNN model, its data batching, sampling) follows them.

Drawing
    :class:`rasterize.drawings.Drawing`: absolute ``(x, y)`` points per stroke, y pointing
    down (image coordinates), as in Google's ndjson files.

stroke-3 (magenta's ``lines_to_strokes`` convention), float ``(n, 3)``, one row per point:
    ``[dx, dy, pen_lifted]``. ``dx, dy`` is the offset of the point from the previous point;
    the FIRST row is the offset from the origin ``(0, 0)``, i.e. the absolute position of the
    first point, so Drawing -> stroke-3 -> Drawing is lossless. ``pen_lifted = 1`` on the
    LAST point of every stroke (the pen leaves the paper after it), so the last row of a
    sketch always has ``pen_lifted = 1``.
    Google's Sketch-RNN ``.npz`` files use the same row semantics but their sketches start at
    their own first point: read as-is they decode to drawings whose first point is at the
    origin. Nothing here depends on where a drawing starts: samples are re-aligned to 0..255
    before rendering (:func:`stroke3_to_canvas`).

stroke-5 (Ha & Eck 2018, section 3.1), float32 ``(1 + length, 5)``:
    ``[dx, dy, p_down, p_up, p_end]``. Row 0 is the start token ``S0 = (0, 0, 1, 0, 0)``.
    Rows ``1..n`` are the points: ``p_down = 1 - pen_lifted``, ``p_up = pen_lifted``.
    End of sketch is marked AFTER the last point: rows ``n+1..length`` are the padding row
    ``(0, 0, 0, 0, 1)``; the last point itself keeps its ``p_up = 1``. ``length >= n + 1``,
    so every sketch has at least one end row, including the longest one of a data set (magenta
    pads to exactly the longest length, leaving the longest sketches with no end row; we pad
    one further so the model always sees where sketches stop). A decoder reads rows
    ``[:-1]`` as inputs and predicts rows ``[1:]``.

Sketch-RNN ``.npz`` (:func:`read_sketch_npz`, :func:`write_sketch_npz`)
    Google's layout: keys ``train``, ``valid``, ``test``, each an object array of int16
    stroke-3 arrays. The shared mirror's files (``sketchrnn/*.npz``) instead hold one key
    ``sketches`` (Google's test split) plus a ``pix_count`` array that is ignored here. Both
    are pickled object arrays (Google's written by Python 2), so they cannot be read with
    ``allow_pickle=False``, and ``allow_pickle=True`` runs whatever code a file names. They
    are read with a restricted unpickler instead (:class:`_ArrayUnpickler`): it rebuilds
    numpy arrays of numbers and refuses anything else before calling it; every sketch must
    then be a numeric ``(n, 3)`` array within the drawing limits of ``rasterize.drawings``.
    Arrays that are not object arrays load with ``allow_pickle=False``. Reading a split may
    take at most :data:`MAX_NPZ_SPLIT_BYTES` of memory (each part is counted before it is
    made), so a zip bomb fails in one line too.

Normalisation (magenta's ``calculate_normalizing_scale_factor``, :func:`normalize_splits`)
    Sketches with more than ``max_seq_len`` points are dropped from every split (counted),
    offsets are clamped to ``+-offset_limit`` (magenta's removal of huge gaps), and ``dx, dy``
    of every split are divided by ONE factor: the standard deviation (ddof 0) of all ``dx``
    and ``dy`` values of the kept training sketches, pooled.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
import re
import reprlib
import sys
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rasterize.drawings import MAX_POINTS_PER_DRAWING, MAX_STROKES_PER_DRAWING, Drawing
from rasterize.simplify import align_and_scale

START_TOKEN = np.array([0, 0, 1, 0, 0], dtype=np.float32)  # S0: "pen down at the origin"
END_ROW = np.array([0, 0, 0, 0, 1], dtype=np.float32)  # padding after the last point
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


# -- Drawing <-> stroke-3 ----------------------------------------------------------------------


def drawing_to_stroke3(drawing: Drawing) -> np.ndarray:
    """A drawing as stroke-3 (float64 ``(num_points, 3)``), first row relative to the origin."""
    points = drawing.points()
    stroke3 = np.zeros((len(points), 3), dtype=np.float64)
    stroke3[:, :2] = np.diff(points, axis=0, prepend=np.zeros((1, 2)))
    stroke3[np.cumsum([len(s) for s in drawing.strokes]) - 1, 2] = 1.0
    return stroke3


def stroke3_to_drawing(stroke3: np.ndarray, **metadata) -> Drawing:
    """The drawing a stroke-3 sequence describes (absolute points, split after pen lifts).

    A last point without a pen lift (a sample cut at its length cap) still ends its stroke.
    """
    stroke3 = np.asarray(stroke3, dtype=np.float64)
    if stroke3.ndim != 2 or stroke3.shape[1] != 3 or len(stroke3) == 0:
        raise ValueError(f"stroke-3 must be a non-empty (n, 3) array, got shape {stroke3.shape}")
    if not np.isfinite(stroke3).all():
        raise ValueError("stroke-3 offsets must be finite")
    points = np.cumsum(stroke3[:, :2], axis=0)
    ends = np.flatnonzero(stroke3[:-1, 2] > 0.5) + 1
    return Drawing(tuple(np.split(points, ends)), None, **metadata)


def stroke3_to_canvas(stroke3: np.ndarray, **metadata) -> Drawing:
    """The drawing of a stroke-3 sequence in any units, aligned and scaled into Google's 0..255
    simplified box (``rasterize.simplify.align_and_scale``), ready for ``rasterize.render``."""
    return align_and_scale(stroke3_to_drawing(stroke3, **metadata))


# -- stroke-3 <-> stroke-5 ---------------------------------------------------------------------


def stroke3_to_stroke5(stroke3: np.ndarray, length: int | None = None) -> np.ndarray:
    """Stroke-5 with the start token, padded with end rows to ``1 + length`` rows.

    ``length`` defaults to ``n + 1`` (one end row) and must be at least that.
    """
    n = len(stroke3)
    length = n + 1 if length is None else length
    if length < n + 1:
        raise ValueError(f"length {length} leaves no end row after {n} points (need >= {n + 1})")
    stroke5 = np.zeros((1 + length, 5), dtype=np.float32)
    stroke5[0] = START_TOKEN
    stroke5[1 : n + 1, :2] = stroke3[:, :2]
    stroke5[1 : n + 1, 3] = stroke3[:, 2]
    stroke5[1 : n + 1, 2] = 1.0 - stroke5[1 : n + 1, 3]
    stroke5[n + 1 :] = END_ROW
    return stroke5


def stroke5_to_stroke3(stroke5: np.ndarray) -> np.ndarray:
    """The points of a stroke-5 sequence (row 0 must be the start token) up to the first end
    row, as float64 stroke-3. Pen states are read as the argmax of the three pen columns, so
    soft or one-hot rows both work."""
    stroke5 = np.asarray(stroke5)
    if stroke5.ndim != 2 or stroke5.shape[1] != 5 or len(stroke5) == 0:
        raise ValueError(f"stroke-5 must be a (rows, 5) array, got shape {stroke5.shape}")
    if not np.array_equal(stroke5[0], START_TOKEN):
        raise ValueError(f"row 0 of a stroke-5 sequence must be the start token, got {stroke5[0]}")
    pen = np.argmax(stroke5[1:, 2:], axis=1)
    ended = np.flatnonzero(pen == 2)
    n = int(ended[0]) if len(ended) else len(pen)
    stroke3 = np.empty((n, 3), dtype=np.float64)
    stroke3[:, :2] = stroke5[1 : n + 1, :2]
    stroke3[:, 2] = pen[:n] == 1
    return stroke3


# -- Sketch-RNN .npz ---------------------------------------------------------------------------


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
        copied = item.data_bytes() if isinstance(item, _PickledArray) else 0
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
        _check_pickle(member, budget)
        return _unpickled_items(member)
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
        raise ValueError(f"the header's shape {_short(shape)} of {dtype} needs {nbytes:,} bytes; "
                         f"the member holds {held:,}")
    budget.spend(nbytes, f"an array of {nbytes:,} bytes")
    member.seek(0)
    return np.lib.format.read_array(member, allow_pickle=False)


def _check_pickle(pickled: io.BytesIO, budget: _SplitBudget) -> None:
    """Refuse a pickle, before unpickling it, if it uses an opcode numpy's never do, if its
    memo indices run past its own length (the C unpickler allocates a memo as long as the
    largest index: five bytes of LONG_BINPUT ask for 32 GB; pickles number their memo entries
    in order, so real ones all pass), or if the objects it would make do not fit the split's
    budget (a megabyte of EMPTY_LIST makes a million lists, 64 MB)."""
    start, made = pickled.tell(), 0
    for count, (opcode, arg, _) in enumerate(pickletools.genops(pickled)):
        name = opcode.name
        if name not in _PICKLE_OPCODES:
            raise pickle.UnpicklingError(
                f"opcode {name} at opcode {count}: numpy's pickles never use it")
        if name in ("PUT", "BINPUT", "LONG_BINPUT") and arg > count:
            raise pickle.UnpicklingError(f"memo index {arg} at opcode {count}: not a real pickle")
        made += _opcode_bytes(name, arg)
    budget.spend(made, f"unpickling it would make about {made:,} bytes of objects")
    pickled.seek(start)


# The opcodes of numpy's pickles of object arrays, in protocols 0 to 4 (Python 2's included),
# with their variants for other sizes, and dicts (an element that is a dict is then named as
# such). Not: calls other than REDUCE (INST, OBJ, NEWOBJ), extension codes, persistent ids,
# sets, protocol 5's buffers, stack tricks.
_PICKLE_OPCODES = frozenset("""
    PROTO FRAME STOP MARK GLOBAL STACK_GLOBAL REDUCE BUILD
    PUT BINPUT LONG_BINPUT MEMOIZE GET BINGET LONG_BINGET
    NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT
    STRING BINSTRING SHORT_BINSTRING BINBYTES SHORT_BINBYTES BINBYTES8
    UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8
    EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST LIST APPEND APPENDS
    EMPTY_DICT DICT SETITEM SETITEMS
""".split())
_MEMO_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"})
_SLOT_BYTES = 32  # per opcode: the slot it may take on the stack, in the memo or the marks
_MADE_BYTES = {  # the most the object an opcode makes may take (measured, then doubled)
    **dict.fromkeys(("TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_LIST", "LIST"), 128),
    **dict.fromkeys(("GLOBAL", "STACK_GLOBAL"), 128),  # a stand-in (see _ArrayUnpickler)
    **dict.fromkeys(("EMPTY_DICT", "DICT"), 256),
    **dict.fromkeys(("REDUCE", "BUILD"), 512),  # a stand-in's result; the state it keeps
}


def _opcode_bytes(name: str, arg) -> int:
    """At most what unpickling one opcode keeps in memory: a slot, the object it makes and
    the value it pushes (a str twice: ``_codecs.encode`` may copy it into bytes)."""
    made = _SLOT_BYTES + _MADE_BYTES.get(name, 0)
    if arg is None or name in _MEMO_OPCODES:  # a memo index is no object
        return made
    return made + sys.getsizeof(arg) + (len(arg) if isinstance(arg, str) else 0)


def _unpickled_items(pickled: io.BytesIO) -> list:
    """The items of a pickled 1-D object array, as :class:`_ArrayUnpickler` rebuilt them."""
    try:
        column = _ArrayUnpickler(pickled, encoding="latin1").load()
    except pickle.UnpicklingError:
        raise
    except Exception as error:  # a stranger's pickle can fail in any way: it is a bad file
        reason = f"not a pickled array ({type(error).__name__}: {error})"
        raise pickle.UnpicklingError(reason) from None
    if not isinstance(column, _PickledArray):
        raise pickle.UnpicklingError(f"the pickle holds a {_described(column)}, not an array")
    return column.items()


_RECONSTRUCT_MODULES = (  # where numpy's pickles name its array reconstruction
    "numpy.core.multiarray", "numpy.core._multiarray_umath",  # numpy 1.x, Python 2 included
    "numpy._core.multiarray", "numpy._core._multiarray_umath",  # numpy 2.x
)
_PICKLED_DTYPES = re.compile(r"[iu][1248]|f[248]|O[48]")  # numbers, and the object column
_BYTE_ORDERS = ("<", ">", "|", "=")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles object arrays of numeric arrays, and nothing else.

    It resolves four globals: numpy's array reconstruction, ``numpy.ndarray``, ``numpy.dtype``
    and ``_codecs.encode`` (how protocol 2 writes bytes), each to a stand-in of ours; any
    other (``os.system``, ``builtins.eval``, ...) is refused before anything is called. The
    stand-ins only record their arguments and state, which are checked and turned into arrays
    with ``np.frombuffer`` afterwards: numpy's own ``__setstate__`` never sees a stranger's
    state (one whose shape disagrees with its data crashes numpy 2.4).
    """

    def find_class(self, module: str, name: str):
        if name == "_reconstruct" and module in _RECONSTRUCT_MODULES:
            return _RECONSTRUCT
        if (module, name) in _STAND_INS:
            return _STAND_INS[module, name]
        raise pickle.UnpicklingError(
            f"refusing to unpickle {module}.{name}: only arrays of numbers may be stored"
        )


# The stand-ins are instances of classes with empty __slots__: no __dict__ and no attribute a
# pickle's BUILD could set (on a bound method, BUILD wrote into its function's __dict__).


class _Reconstruct:
    """numpy's array reconstruction: an array to be checked and built later."""

    __slots__ = ()

    def __call__(self, cls, shape, typecode) -> _PickledArray:
        if cls is not _STAND_INS["numpy", "ndarray"]:
            raise pickle.UnpicklingError("numpy's array reconstruction of something not an array")
        return _PickledArray()


class _NdarrayName:
    """What the name ``numpy.ndarray`` unpickles to: numpy's reconstruction takes it, but
    called directly (an array of any size with no data behind it) it refuses."""

    __slots__ = ()

    def __call__(self, *args):
        raise pickle.UnpicklingError(
            "numpy.ndarray called directly: only numpy's array reconstruction may build arrays"
        )


class _DtypeName:
    """``numpy.dtype``: a dtype to be resolved later (:meth:`_PickledDtype.resolve`)."""

    __slots__ = ()

    def __call__(self, spec, *flags) -> _PickledDtype:
        return _PickledDtype(spec)


class _Latin1Encode:
    """``_codecs.encode`` as protocol 2 writes bytes: ``encode(text, "latin1")``, only."""

    __slots__ = ()

    def __call__(self, text, encoding) -> bytes:
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise pickle.UnpicklingError("_codecs.encode other than protocol 2's bytes")
        return text.encode("latin1")


_RECONSTRUCT = _Reconstruct()
_STAND_INS = {("numpy", "ndarray"): _NdarrayName(), ("numpy", "dtype"): _DtypeName(),
              ("_codecs", "encode"): _Latin1Encode()}


class _PickledDtype:
    """A pickled ``numpy.dtype``: its type string and state, resolved by :meth:`resolve`."""

    def __init__(self, spec):
        self.spec, self.state = spec, None

    def __setstate__(self, state) -> None:
        self.state = state

    def resolve(self) -> np.dtype:
        """The dtype, if it is a plain number or object type in a known byte order."""
        state = self.state if isinstance(self.state, tuple) else ()
        order = state[1] if len(state) > 4 else None
        plain = len(state) > 4 and all(part is None for part in state[2:5])  # no fields
        if not (isinstance(self.spec, str) and _PICKLED_DTYPES.fullmatch(self.spec)
                and order in _BYTE_ORDERS and plain):
            raise pickle.UnpicklingError(f"an array of dtype {_short(self.spec)}")
        dtype = np.dtype(self.spec)
        return dtype.newbyteorder(order) if order in ("<", ">") else dtype


class _PickledArray:
    """A pickled ndarray: numpy's ``__setstate__`` state, kept to be checked and rebuilt."""

    def __init__(self):
        self.state = None

    def __setstate__(self, state) -> None:
        self.state = state

    def _parts(self) -> tuple[tuple[int, ...], np.dtype, bool, object]:
        state = self.state
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]  # (version, shape, dtype, fortran, data)
        if not (isinstance(state, tuple) and len(state) == 4):
            raise pickle.UnpicklingError("an array without numpy's state")
        shape, dtype, fortran, data = state
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
            raise pickle.UnpicklingError(f"an array of shape {_short(shape)}")
        if not isinstance(dtype, _PickledDtype) or type(fortran) is not bool:
            raise pickle.UnpicklingError("an array without a dtype")
        return shape, dtype.resolve(), fortran, data

    def items(self) -> list:
        """A 1-D object array's items: numeric arrays as stand-ins, anything else as is."""
        shape, dtype, _, data = self._parts()
        if not dtype.hasobject or len(shape) != 1:
            reason = f"expected a 1-D object array, got {dtype} {_short(shape)}"
            raise pickle.UnpicklingError(reason)
        if not isinstance(data, list) or len(data) != shape[0]:
            raise pickle.UnpicklingError(f"an object array of {shape[0]} items without them")
        return data

    def data_bytes(self) -> int:
        """The bytes :meth:`numeric` copies (0 for a state without data)."""
        data = self.state[-1] if isinstance(self.state, tuple) and self.state else None
        return len(data) if isinstance(data, (bytes, str)) else 0

    def numeric(self) -> np.ndarray:
        """The array, if it is an array of numbers whose data fills its shape."""
        shape, dtype, fortran, data = self._parts()
        if dtype.hasobject:
            raise pickle.UnpicklingError("an object array inside an object array")
        if isinstance(data, str):  # Python 2's byte strings, decoded as latin1
            data = data.encode("latin1")
        if not isinstance(data, bytes) or len(data) != math.prod(shape) * dtype.itemsize:
            raise pickle.UnpicklingError(f"an array of {dtype} {_short(shape)} without its data")
        try:
            array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
        except ValueError:  # dimensions numpy cannot have (too many, or too large)
            raise pickle.UnpicklingError(f"an array of shape {_short(shape)}") from None
        return array.copy()


def _short(value) -> str:
    """A stranger's value for a message: cut short, however long or deeply nested it is."""
    return reprlib.repr(value)


def _described(value) -> str:
    if isinstance(value, (_PickledArray, np.ndarray)):
        return "array"
    return type(value).__name__


def _checked_stroke3(sketch, path, key: str, index: int) -> np.ndarray:
    where = f"{path}: {key}[{index}]"
    if isinstance(sketch, _PickledArray):
        try:
            sketch = sketch.numeric()
        except pickle.UnpicklingError as error:
            raise ValueError(f"{where} is {error}, expected a stroke-3 array") from None
    if not isinstance(sketch, np.ndarray):
        raise ValueError(f"{where} is a {_described(sketch)}, expected a stroke-3 array")
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


# -- normalisation -----------------------------------------------------------------------------


def normalizing_scale_factor(sketches: Sequence[np.ndarray]) -> float:
    """Standard deviation (ddof 0) of all ``dx`` and ``dy`` values of ``sketches``, pooled."""
    if not sketches:
        raise ValueError("cannot compute a scale factor from no sketches")
    offsets = np.concatenate([np.asarray(s, dtype=np.float64)[:, :2].ravel() for s in sketches])
    scale = float(np.std(offsets))
    if not scale > 0:
        raise ValueError("all offsets are equal: no scale to normalise by")
    return scale


@dataclass(frozen=True)
class NormalizedSplits:
    """Sketches ready for Sketch-RNN: float32 stroke-3, offsets divided by ``scale_factor``."""

    splits: dict[str, list[np.ndarray]]
    kept: dict[str, np.ndarray]  # int64 positions, in the input split, of the sketches kept
    scale_factor: float  # std of the training offsets; multiply samples by it to get data units
    dropped: dict[str, int]  # sketches over max_seq_len removed from each split
    max_seq_len: int  # the cap the splits were filtered with


def normalize_splits(
    splits: Mapping[str, Sequence[np.ndarray]],
    max_seq_len: int = 250,
    train_key: str = "train",
    offset_limit: float = 1000.0,
) -> NormalizedSplits:
    """Drop sketches over ``max_seq_len`` points, clamp offsets to ``+-offset_limit`` and divide
    every split by the training split's :func:`normalizing_scale_factor` (see module doc)."""
    if train_key not in splits:
        raise ValueError(f"no {train_key!r} split among {sorted(splits)}")
    normalised, kept, dropped = {}, {}, {}
    for key, sketches in splits.items():
        kept[key] = np.flatnonzero([len(s) <= max_seq_len for s in sketches]).astype(np.int64)
        dropped[key] = len(sketches) - len(kept[key])
        normalised[key] = [_clamped(sketches[i], offset_limit) for i in kept[key]]
    scale = normalizing_scale_factor(normalised[train_key])
    for sketches in normalised.values():
        for sketch in sketches:
            sketch[:, :2] /= scale
    return NormalizedSplits(normalised, kept, scale, dropped, max_seq_len)


def _clamped(sketch: np.ndarray, limit: float) -> np.ndarray:
    out = np.array(sketch, dtype=np.float32)
    np.clip(out[:, :2], -limit, limit, out=out[:, :2])
    return out


__all__ = [
    "END_ROW",
    "MAX_NPZ_SPLIT_BYTES",
    "START_TOKEN",
    "NormalizedSplits",
    "drawing_to_stroke3",
    "normalize_splits",
    "normalizing_scale_factor",
    "read_sketch_npz",
    "stroke3_to_canvas",
    "stroke3_to_drawing",
    "stroke3_to_stroke5",
    "stroke5_to_stroke3",
    "write_sketch_npz",
]
