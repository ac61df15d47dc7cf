"""The restricted unpickler of Sketch-RNN ``.npz`` object arrays: numeric arrays, nothing else.

numpy pickles an object array of arrays; ``allow_pickle=True`` would run whatever code such a
pickle names. Here a pickle is first read opcode by opcode (:func:`check_pickle`: only the
opcodes numpy's pickles use, memo indices within the pickle, and an estimate of what
unpickling it would make, for the reader's memory budget), then unpickled by
:class:`_ArrayUnpickler`, whose only globals are stand-ins that record numpy's array state;
:class:`PickledArray` checks that state and builds the array with ``np.frombuffer``. The
reader of the files is ``rasterize.sketch_npz``.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import re
import reprlib
import sys

import numpy as np


def check_pickle(pickled: io.BytesIO) -> int:
    """About the bytes of the objects unpickling ``pickled`` would make (for the reader to
    count against its budget: a megabyte of EMPTY_LIST makes a million lists, 64 MB), found
    without unpickling it. Refuses a pickle that uses an opcode numpy's never do, or whose
    memo indices run past its own length (the C unpickler allocates a memo as long as the
    largest index: five bytes of LONG_BINPUT ask for 32 GB; pickles number their memo entries
    in order, so real ones all pass)."""
    start, made = pickled.tell(), 0
    for count, (opcode, arg, _) in enumerate(pickletools.genops(pickled)):
        name = opcode.name
        if name not in _PICKLE_OPCODES:
            raise pickle.UnpicklingError(
                f"opcode {name} at opcode {count}: numpy's pickles never use it")
        if name in ("PUT", "BINPUT", "LONG_BINPUT") and arg > count:
            raise pickle.UnpicklingError(f"memo index {arg} at opcode {count}: not a real pickle")
        made += _opcode_bytes(name, arg)
    pickled.seek(start)
    return made


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


def unpickled_items(pickled: io.BytesIO) -> list:
    """The items of a pickled 1-D object array, as :class:`_ArrayUnpickler` rebuilt them."""
    try:
        column = _ArrayUnpickler(pickled, encoding="latin1").load()
    except pickle.UnpicklingError:
        raise
    except Exception as error:  # a stranger's pickle can fail in any way: it is a bad file
        reason = f"not a pickled array ({type(error).__name__}: {error})"
        raise pickle.UnpicklingError(reason) from None
    if not isinstance(column, PickledArray):
        raise pickle.UnpicklingError(f"the pickle holds a {described(column)}, not an array")
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

    def __call__(self, cls, shape, typecode) -> PickledArray:
        if cls is not _STAND_INS["numpy", "ndarray"]:
            raise pickle.UnpicklingError("numpy's array reconstruction of something not an array")
        return PickledArray()


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
            raise pickle.UnpicklingError(f"an array of dtype {short_repr(self.spec)}")
        dtype = np.dtype(self.spec)
        return dtype.newbyteorder(order) if order in ("<", ">") else dtype


class PickledArray:
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
            raise pickle.UnpicklingError(f"an array of shape {short_repr(shape)}")
        if not isinstance(dtype, _PickledDtype) or type(fortran) is not bool:
            raise pickle.UnpicklingError("an array without a dtype")
        return shape, dtype.resolve(), fortran, data

    def items(self) -> list:
        """A 1-D object array's items: numeric arrays as stand-ins, anything else as is."""
        shape, dtype, _, data = self._parts()
        if not dtype.hasobject or len(shape) != 1:
            reason = f"expected a 1-D object array, got {dtype} {short_repr(shape)}"
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
            reason = f"an array of {dtype} {short_repr(shape)} without its data"
            raise pickle.UnpicklingError(reason)
        try:
            array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
        except ValueError:  # dimensions numpy cannot have (too many, or too large)
            raise pickle.UnpicklingError(f"an array of shape {short_repr(shape)}") from None
        return array.copy()


def short_repr(value) -> str:
    """A stranger's value for a message: cut short, however long or deeply nested it is."""
    return reprlib.repr(value)


def described(value) -> str:
    if isinstance(value, (PickledArray, np.ndarray)):
        return "array"
    return type(value).__name__
