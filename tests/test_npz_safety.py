"""Sketch-RNN ``.npz`` files from strangers cannot run code (issue 10, item 1).

Google's files and the mirror's are pickled object arrays of int16 arrays, so they are read
with a restricted unpickler; these tests load the real ones, Google's own layout as Python 2
wrote it, and crafted payloads that must be refused without running.

Longer than 450 lines: the crafted pickles are written opcode by opcode (``pickled_array``,
``write_pickled_npz``, ...), and every refusal test builds its payload from those helpers.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import re
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
from http_mirror import serve

from rasterize import npz_pickle, sketch_npz
from rasterize.drawings import MAX_POINTS_PER_DRAWING, MAX_STROKES_PER_DRAWING
from rasterize.sketch_npz import read_sketch_npz
from sketchgen.data.datasets import load_drawings


class Runs:
    """Pickles as a call of ``function(*args)``: how a pickle names code to run on load."""

    def __init__(self, function, *args):
        self.call = (function, args)

    def __reduce__(self):
        return self.call


def object_column(*items) -> np.ndarray:
    column = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        column[i] = item
    return column


GOOD = np.array([[0, 0, 0], [5, 3, 1]], dtype=np.int16)


@pytest.fixture
def marker(tmp_path):
    """A file that a payload would create: it must never exist."""
    return tmp_path / "payload-ran"


def payloads(marker):
    """(name, object-array element, fragment of the error): each must be refused."""
    write = f"open({str(marker)!r}, 'w').write('ran')"
    return [
        ("os.system", Runs(os.system, f"touch '{marker}'"), "system"),
        ("builtins.eval", Runs(builtins.eval, write), "builtins.eval"),
        ("builtins.exec", Runs(builtins.exec, write), "builtins.exec"),
        # numpy.ndarray called directly: any size, with no data behind it
        ("ndarray call", Runs(np.ndarray, (2**40, 3), "i2"), "called directly"),
    ]


@pytest.mark.parametrize("case", range(4))
def test_a_pickled_call_is_refused_and_never_runs(tmp_path, marker, case):
    name, payload, fragment = payloads(marker)[case]
    path = tmp_path / "evil.npz"
    np.savez(path, sketches=object_column(GOOD, payload))
    with pytest.raises(ValueError) as caught:
        read_sketch_npz(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: sketches: ") and fragment in message, name
    assert "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize(
    "element, fragment",
    [
        (object_column(GOOD, GOOD), "sketches[1] is an object array inside an object array"),
        ({"drawing": [[1, 2], [3, 4]]}, "sketches[1] is a dict"),
        ("0,0,1", "sketches[1] is a str"),
        (np.zeros((4, 2), np.int16), "sketches[1] has shape (4, 2)"),
        (np.zeros((0, 3), np.int16), "sketches[1] has shape (0, 3)"),
        (np.array([[0, 0, 1], [np.nan, 1, 1]]), "sketches[1] holds a value that is not finite"),
        (np.array([["a", "b", "c"]]), "sketches[1] is an array of dtype 'U1'"),
        (np.zeros((MAX_POINTS_PER_DRAWING + 1, 3), np.int16),
         f"has {MAX_POINTS_PER_DRAWING + 1} points, more than the limit"),
        (np.ones((MAX_STROKES_PER_DRAWING + 1, 3), np.int16),
         f"has {MAX_STROKES_PER_DRAWING + 1} strokes, more than the limit"),
    ],
    ids=["nested object array", "dict", "string", "two columns", "empty", "NaN", "text",
         "too many points", "too many strokes"],
)
def test_elements_that_are_not_stroke3_arrays_are_named(tmp_path, element, fragment):
    path = tmp_path / "bad.npz"
    np.savez(path, sketches=object_column(GOOD, element))
    with pytest.raises(ValueError) as caught:
        read_sketch_npz(path)
    assert str(caught.value).startswith(f"{path}: ") and fragment in str(caught.value)


IN_2_GB = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a regression fails, not the machine
from rasterize.sketch_npz import read_sketch_npz
try:
    read_sketch_npz(sys.argv[1])
except ValueError as error:
    print(error)
"""


def test_a_pickle_asking_for_a_huge_memo_is_refused_before_it_allocates(tmp_path):
    """Five bytes (LONG_BINPUT 2**32 - 1) make the C unpickler allocate a 32 GB memo."""
    pickled = b"\x80\x02]r\xff\xff\xff\xff."  # an empty list, memoised at that index
    header = {"descr": "|O", "fortran_order": False, "shape": (0,)}
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w") as archive, archive.open("sketches.npy", "w") as member:
        np.lib.format.write_array_header_1_0(member, header)
        member.write(pickled)
    assert read_in_2_gb(path) == (f"{path}: sketches: memo index 4294967295 at opcode 2: "
                                  "not a real pickle")


def read_in_2_gb(path) -> str:
    """The one-line error of reading ``path`` in a process of at most 2 GB (a MemoryError,
    a traceback, prints nothing)."""
    done = subprocess.run([sys.executable, "-c", IN_2_GB, str(path)], capture_output=True,
                          text=True)
    return done.stdout.strip()


@pytest.mark.filterwarnings("ignore:numpy.core:DeprecationWarning")  # the trusting loader's
def test_the_mirrors_files_load_as_the_trusting_loader_read_them(mirror):
    for path in sorted((mirror / "sketchrnn").glob("*.npz")):
        ours = read_sketch_npz(path)["sketches"]
        with np.load(path, allow_pickle=True, encoding="latin1") as trusted:  # our own mirror
            theirs = list(trusted["sketches"])
        assert len(ours) == len(theirs) == 2500
        for a, b in zip(ours, theirs, strict=True):
            assert a.dtype == b.dtype == np.int16
            np.testing.assert_array_equal(a, b)


def pickled_text(value: bytes) -> bytes:
    """A byte string as Python 2 pickled it (a ``str``)."""
    return b"U" + bytes([len(value)]) + value if len(value) < 256 else (
        b"T" + struct.pack("<I", len(value)) + value)


def pickled_shape(shape: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(struct.pack("<Bi", ord("J"), n) for n in shape) + b"t"


def pickled_dtype(spec: bytes, order: bytes = b"<", flags: int = 0) -> bytes:
    """``numpy.dtype(spec)`` and its state; ``spec`` is pickled already."""
    return (b"cnumpy\ndtype\n" + spec + b"K\x00K\x01\x87R"
            + b"(K\x03" + pickled_text(order) + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff"
            + b"K" + bytes([flags]) + b"tb")


def pickled_array(shape: bytes, dtype: bytes, data: bytes) -> bytes:
    """numpy's reconstruction of an array, and its state; the parts are pickled already."""
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
            + b"K\x00\x85" + pickled_text(b"b") + b"\x87R"
            + b"(K\x01" + shape + dtype + b"\x89" + data + b"tb")


def pickled_column(items: list[bytes]) -> bytes:
    """A whole pickle: an object array of these pickled items."""
    objects = pickled_dtype(pickled_text(b"O8"), b"|", 63)
    column = pickled_array(pickled_shape((len(items),)), objects, b"](" + b"".join(items) + b"e")
    return b"\x80\x02" + column + b"."


I2 = pickled_dtype(pickled_text(b"i2"))


def python2_pickle(sketches: list[np.ndarray]) -> bytes:
    """An object array of int16 arrays pickled the way Python 2 and numpy 1.x wrote Google's
    files: protocol 2, ``numpy.core.multiarray`` names, byte strings as ``str``."""
    return pickled_column([pickled_array(pickled_shape(s.shape), I2,
                                         pickled_text(s.astype("<i2").tobytes()))
                           for s in sketches])


def write_pickled_npz(path, pickled: bytes, items: int, compression=zipfile.ZIP_STORED,
                      members=("sketches",)) -> None:
    """An .npz whose members are this pickle of an object array, behind numpy's header."""
    header = {"descr": "|O", "fortran_order": False, "shape": (items,)}
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name in members:
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array_header_1_0(member, header)
                member.write(pickled)


def test_googles_python2_layout_loads(tmp_path, mirror):
    """Google's own files (train/valid/test, written by Python 2) are not in the mirror:
    this writes that layout byte by byte and checks it reads back."""
    sketches = read_sketch_npz(mirror / "sketchrnn" / "pig.npz")["sketches"][:40]
    path = tmp_path / "pig.npz"
    write_pickled_npz(path, python2_pickle(sketches), len(sketches),
                      members=("train", "valid", "test"))
    with np.load(path, allow_pickle=True, encoding="latin1") as trusted:  # we wrote it
        assert all(np.array_equal(a, b) for a, b in zip(trusted["train"], sketches, strict=True))
    loaded = read_sketch_npz(path)
    assert list(loaded) == ["train", "valid", "test"]
    for a, b in zip(loaded["test"], sketches, strict=True):
        assert a.dtype == np.int16
        np.testing.assert_array_equal(a, b)


DEEP = b"K\x00" + b"\x85" * 100_000  # a tuple in a tuple in ..., 100,000 deep


@pytest.mark.parametrize(
    "element, fragment",
    [
        (pickled_array(pickled_shape((2, 3)), pickled_dtype(pickled_text(b"f1")),
                       pickled_text(bytes(6))), "is an array of dtype 'f1'"),
        (pickled_array(b"(K\x00\x8a\x09" + bytes(8) + b"\x01t", I2, pickled_text(b"")),
         "is an array of shape (0, 18446744073709551616)"),  # 2**64 points: none at all
        (pickled_array(pickled_shape((0,) * 70), I2, pickled_text(b"")), "is an array of shape"),
        (pickled_array(DEEP, I2, pickled_text(b"")),
         "is an array of shape (((((((...),),),),),),),"),
        (pickled_array(pickled_shape((2, 3)), pickled_dtype(DEEP), pickled_text(bytes(12))),
         "is an array of dtype (((((((...),),),),),),),"),
    ],
    ids=["dtype f1", "a dimension of 2**64", "70 dimensions", "a deep shape", "a deep dtype"],
)
def test_crafted_dtypes_and_shapes_are_one_line_errors(tmp_path, element, fragment):
    """Each once escaped as a TypeError, a ValueError without the file, or a RecursionError."""
    path = tmp_path / "crafted.npz"
    write_pickled_npz(path, pickled_column([element]), 1)
    with pytest.raises(ValueError) as caught:
        read_sketch_npz(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: sketches[0] ") and fragment in message, message
    assert "\n" not in message and len(message) < 300


@pytest.mark.parametrize(
    "element, opcode",
    [
        (b"(S'touch x'\nios\nsystem\n", "INST"),  # a call, as protocol 0 writes it
        (b"cnumpy\nndarray\n)\x81", "NEWOBJ"),
        (b"\x82\x01", "EXT1"),  # copyreg's extension registry
        (b"P0\n", "PERSID"),
        (b"\x8f(K\x01\x90", "EMPTY_SET"),
        (b"\x96\x00\x00\x00\x00\x00\x00\x00\x00", "BYTEARRAY8"),  # protocol 5's buffers
        (b"\x97", "NEXT_BUFFER"),
    ],
    ids=["INST", "NEWOBJ", "EXT1", "PERSID", "set", "bytearray", "out-of-band buffer"],
)
def test_an_opcode_numpy_never_writes_is_refused_before_unpickling(tmp_path, element, opcode):
    path = tmp_path / "opcode.npz"
    write_pickled_npz(path, pickled_column([element]), 1)
    with pytest.raises(ValueError) as caught:
        read_sketch_npz(path)
    assert str(caught.value).startswith(f"{path}: sketches: opcode {opcode} at opcode ")
    assert str(caught.value).endswith(": numpy's pickles never use it")


def test_a_pickle_making_more_objects_than_a_split_may_hold_is_refused_unrun(tmp_path,
                                                                            monkeypatch):
    """A megabyte of EMPTY_LIST is a million lists, 64 MB; a gigabyte, 64 GB."""
    monkeypatch.setattr(sketch_npz, "MAX_NPZ_SPLIT_BYTES", 8 << 20)
    monkeypatch.setattr(npz_pickle, "_ArrayUnpickler", None)  # unpickling would fail loudly
    path = tmp_path / "lists.npz"
    write_pickled_npz(path, b"\x80\x02" + b"]" * 100_000 + b".", 1)
    with pytest.raises(ValueError) as caught:
        read_sketch_npz(path)
    assert re.fullmatch(rf"{re.escape(str(path))}: sketches: unpickling it would make about "
                        r"[0-9,]+ bytes of objects: more than the 8,388,608 bytes a split may "
                        r"take in memory", str(caught.value)), str(caught.value)


def test_sketches_repeated_by_reference_are_refused_before_they_are_copied(tmp_path,
                                                                           monkeypatch):
    """A 640 KB pickle naming one 600 KB array 20,000 times (memo references) asked for
    12 GB of copies; rows of a plain array each cost an array object too."""
    monkeypatch.setattr(sketch_npz, "MAX_NPZ_SPLIT_BYTES", 8 << 20)
    data = pickled_text(np.zeros((100_000, 3), "<i2").tobytes())
    first = pickled_array(pickled_shape((100_000, 3)), I2, data) + b"q\x01"  # memoised as 1
    repeated, rows = tmp_path / "repeated.npz", tmp_path / "rows.npz"
    write_pickled_npz(repeated, pickled_column([first] + [b"h\x01"] * 999), 1000)
    np.savez(rows, sketches=np.zeros((60_000, 1, 3), np.int8))  # 180 KB
    for path in (repeated, rows):
        with pytest.raises(ValueError) as caught:
            read_sketch_npz(path)
        assert re.fullmatch(rf"{re.escape(str(path))}: sketches\[[0-9]+\]: the sketches up to "
                            r"this one: more than the 8,388,608 bytes a split may take in "
                            r"memory", str(caught.value)), str(caught.value)


@pytest.mark.parametrize(
    "element, fragment",
    [
        (b"ccopyreg\n_reconstructor\n)R", "refusing to unpickle copyreg._reconstructor"),
        (b"cnumpy.core.multiarray\nscalar\n" + pickled_dtype(pickled_text(b"O8"), b"|", 63)
         + b"N\x86R", "refusing to unpickle numpy.core.multiarray.scalar"),
        (b"c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00utf-7\x86R",
         "_codecs.encode other than protocol 2's bytes"),
        (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\ndtype\nK\x00\x85U\x01b\x87R",
         "numpy's array reconstruction of something not an array"),
        (b"cnumpy\nndarray\n(J\x00\x00\x00\x40K\x03tU\x02i2\x86R", "called directly"),
    ],
    ids=["copyreg._reconstructor", "numpy scalar of dtype O", "encode to utf-7",
         "reconstruct a dtype", "ndarray of 3 GB"],
)
def test_the_names_a_pickle_may_use_refuse_what_numpy_never_writes(tmp_path, element, fragment):
    path = tmp_path / "hostile.npz"
    write_pickled_npz(path, pickled_column([element]), 1)
    with pytest.raises(ValueError) as caught:
        read_sketch_npz(path)
    assert str(caught.value).startswith(f"{path}: sketches: ") and fragment in str(caught.value)


STAND_INS = [("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
             ("numpy", "dtype"), ("_codecs", "encode")]


@pytest.mark.parametrize(("module", "name"), STAND_INS)
def test_a_pickle_cannot_set_attributes_on_what_the_names_it_may_use_stand_for(tmp_path, module,
                                                                              name):
    """BUILD with a dict on numpy's reconstruction wrote into the unpickler's own function
    (its bound method's __dict__), kept after the file failed, for every later file."""
    path = tmp_path / "build.npz"
    global_ = f"c{module}\n{name}\n".encode()
    write_pickled_npz(path, b"\x80\x02" + global_ + b"}X\x04\x00\x00\x00keptK\x01sb.", 1)
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: sketches: "):
        read_sketch_npz(path)
    stand_in = npz_pickle._ArrayUnpickler(io.BytesIO()).find_class(module, name)
    assert not hasattr(stand_in, "kept")


@pytest.mark.parametrize("protocol", range(6))
def test_every_pickle_protocol_loads_or_is_refused_in_one_line_and_never_runs(
    tmp_path, marker, protocol
):
    """numpy writes protocol 3 (Google's Python 2 files: 2); protocol 5 holds arrays as
    buffers (numpy's _frombuffer), which is refused."""
    path = tmp_path / f"protocol-{protocol}.npz"
    header = {"descr": "|O", "fortran_order": False, "shape": (2,)}
    good = object_column(GOOD, GOOD + 1)
    evil = object_column(GOOD, Runs(os.system, f"touch '{marker}'"))
    for column in (good, evil):
        with zipfile.ZipFile(path, "w") as archive, archive.open("sketches.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, header)
            pickle.dump(column, member, protocol=protocol)
        if column is good and protocol < 5:
            loaded = read_sketch_npz(path)["sketches"]
            assert [s.tolist() for s in loaded] == [GOOD.tolist(), (GOOD + 1).tolist()]
            continue
        with pytest.raises(ValueError) as caught:
            read_sketch_npz(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: sketches: ") and "\n" not in message
        if protocol < 5:
            assert f"refusing to unpickle {os.system.__module__}.system" in message
    assert not marker.exists()


@pytest.mark.parametrize("compression", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA],
                         ids=["bzip2", "lzma"])
def test_a_member_compressed_as_numpy_never_does_is_refused_unread(tmp_path, compression):
    """zipfile inflates bzip2 and lzma a whole read at a time: 2 KB of bzip2 took 2.5 GB."""
    path = tmp_path / "packed.npz"
    write_pickled_npz(path, python2_pickle([GOOD]), 1, compression=compression)
    with pytest.raises(ValueError) as caught:
        read_sketch_npz(path)
    method = zipfile.compressor_names[compression]
    assert str(caught.value) == (f"{path}: sketches: compressed with {method}; numpy writes "
                                 "only stored or deflated members")


def test_a_member_over_the_split_limit_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(sketch_npz, "MAX_NPZ_SPLIT_BYTES", 1 << 20)
    path = tmp_path / "big.npz"
    np.savez_compressed(path, sketches=np.zeros((200_000, 1, 3), np.int16))  # 1.2 MB of 0s
    with pytest.raises(ValueError) as caught:
        read_sketch_npz(path)
    assert str(caught.value) == (f"{path}: sketches: 1,200,128 bytes decompressed: more than "
                                 "the 1,048,576 bytes a split may take in memory")


def test_a_plain_array_whose_header_promises_more_than_its_member_holds_is_refused(tmp_path):
    """numpy allocates what the header says before reading: 6.6 TB here (a MemoryError)."""
    path = tmp_path / "promise.npz"
    header = {"descr": "<i2", "fortran_order": False, "shape": (2**40, 3)}
    with zipfile.ZipFile(path, "w") as archive, archive.open("sketches.npy", "w") as member:
        np.lib.format.write_array_header_1_0(member, header)
        member.write(bytes(12))
    with pytest.raises(ValueError) as caught:
        read_sketch_npz(path)
    assert str(caught.value) == (f"{path}: sketches: the header's shape (1099511627776, 3) of "
                                 "int16 needs 6,597,069,766,656 bytes; the member holds 12")


def deflated_beyond_its_size(path, declared: int, inflated: int) -> None:
    """An .npz whose deflated member inflates to ``inflated`` bytes but declares
    ``declared``: a zip bomb past the declared-size check."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    block = bytes(8 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = packer.compress(header.getvalue() + block) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)  # the same every time
    stream = first + again * (inflated // len(block) - 1) + packer.flush()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("sketches.npy", stream)  # stored, then relabelled deflated:
    content = bytearray(path.read_bytes())
    central = content.index(b"PK\x01\x02")
    for method_at, size_at in ((8, 22), (central + 10, central + 24)):
        content[method_at : method_at + 2] = struct.pack("<H", zipfile.ZIP_DEFLATED)
        content[size_at : size_at + 4] = struct.pack("<I", declared)
    path.write_bytes(bytes(content))


def test_a_member_inflating_past_its_declared_size_is_read_in_bounded_pieces(tmp_path):
    """4 MB of deflate that inflate to 4 GB while declaring 1 MB: zipfile stops at the
    declared size, but a whole-member read inflated it all at once (MemoryError)."""
    path = tmp_path / "bomb.npz"
    deflated_beyond_its_size(path, declared=1 << 20, inflated=4 << 30)
    assert read_in_2_gb(path) == f"{path}: sketches: Bad CRC-32 for file 'sketches.npy'"


def test_a_payload_in_a_key_that_is_not_read_never_runs(tmp_path, marker):
    path = tmp_path / "extra.npz"
    np.savez(path, sketches=object_column(GOOD, GOOD),
             pix_count=object_column(Runs(os.system, f"touch '{marker}'")))
    assert [s.tolist() for s in read_sketch_npz(path)["sketches"]] == [GOOD.tolist()] * 2
    assert not marker.exists()


def test_plain_arrays_still_load_without_pickle(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, train=np.stack([GOOD, GOOD + 1]))
    loaded = read_sketch_npz(path)["train"]
    np.testing.assert_array_equal(loaded[1], GOOD + 1)


def test_a_file_that_is_no_zip_is_named(tmp_path, marker):
    """np.load(allow_pickle=True) unpickles a file that is neither zip nor .npy."""
    path = tmp_path / "raw-pickle.npz"
    path.write_bytes(pickle.dumps(Runs(os.system, f"touch '{marker}'")))
    with pytest.raises(ValueError, match=f"{path}: not an .npz"):
        read_sketch_npz(path)
    assert not marker.exists()


def test_loading_a_category_over_http_refuses_the_payload(tmp_path, marker):
    """``load_drawings(["cat"], fmt="sketchrnn")`` from an HTTP mirror serving a bad file."""
    (tmp_path / "site" / "sketchrnn").mkdir(parents=True)
    np.savez(tmp_path / "site" / "sketchrnn" / "cat.npz",
             sketches=object_column(Runs(os.system, f"touch '{marker}'")))
    with serve(tmp_path / "site") as httpd, pytest.raises(ValueError, match="refusing"):
        load_drawings(["cat"], fmt="sketchrnn", mirror=httpd.url)
    assert not marker.exists()


def test_training_on_a_bad_npz_stops_before_the_payload_runs(tmp_path, marker):
    """``sketchgen train sketch-rnn --categories evil.npz``, as the issue ran it."""
    evil = tmp_path / "evil.npz"
    np.savez(evil, sketches=object_column(GOOD, Runs(os.system, f"touch '{marker}'")))
    done = subprocess.run(
        [sys.executable, "-m", "sketchgen", "train", "sketch-rnn", "--categories", str(evil),
         "--steps", "1", "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert done.returncode != 0
    assert f"{evil}: sketches: refusing to unpickle" in done.stderr
    assert not marker.exists()
