"""The ndjson reader and writer (rasterize.ndjson_reader, rasterize.drawings) on real files and
every bad-line case."""

from __future__ import annotations

import gzip
import re
import tracemalloc
from collections import Counter

import numpy as np
import orjson
import pytest

from rasterize.drawings import (
    MAX_POINTS_PER_DRAWING,
    MAX_STROKES_PER_DRAWING,
    Drawing,
    drawing_from_arrays,
    write_ndjson,
)
from rasterize.ndjson_reader import (
    MAX_LINE_BYTES,
    LineError,
    NdjsonError,
    SkipLog,
    parse_record,
    read_ndjson,
)

GOOD = b'{"word":"cat","countrycode":"US","drawing":[[[1,2,3],[4,5,6]]]}'

# (name, line, NdjsonError kind, a fragment of the reason): every documented bad line
BAD_LINES = [
    ("bad JSON", b'{"drawing":[[[1,2],[3,4]]]', "bad-json", "invalid JSON"),
    ("not an object", b"[1, 2]", "not-an-object", "expected a JSON object"),
    ("missing drawing", b'{"word":"cat"}', "missing-drawing", "no 'drawing' key"),
    ("drawing not a list", b'{"drawing":"abc"}', "bad-drawing", "not a list of strokes"),
    ("empty drawing", b'{"drawing":[]}', "empty-drawing", "no strokes"),
    ("stroke of one list", b'{"drawing":[[[1,2]]]}', "bad-stroke", "stroke 0 is not"),
    ("x not a list", b'{"drawing":[[5,[1]]]}', "bad-stroke", "stroke 0 x is int"),
    ("ragged x/y", b'{"drawing":[[[1,2],[3]]]}', "ragged", "different lengths [1, 2]"),
    ("ragged t", b'{"drawing":[[[1,2],[3,4],[0]]]}', "ragged", "different lengths"),
    ("ragged x/y/t arity", b'{"drawing":[[[1],[2],[0]],[[1],[2]]]}', "ragged", "stroke 1 has 2"),
    ("string coordinate", b'{"drawing":[[[1,"2"],[3,4]]]}', "non-numeric", "'2'"),
    ("null coordinate", b'{"drawing":[[[1,2],[3,null]]]}', "non-numeric", "stroke 0 y"),
    ("bool coordinate", b'{"drawing":[[[1,true],[3,4]]]}', "non-numeric", "True"),
    ("NaN", b'{"drawing":[[[1,NaN],[3,4]]]}', "bad-json", "invalid JSON"),
    ("Infinity", b'{"drawing":[[[1,Infinity],[3,4]]]}', "bad-json", "invalid JSON"),
    ("overflow to inf", b'{"drawing":[[[1,1e999],[3,4]]]}', "bad-json", "infinity"),
    ("empty stroke", b'{"drawing":[[[],[]]]}', "empty-stroke", "stroke 0 has no points"),
    ("bad recognized", b'{"recognized":"yes","drawing":[[[1],[2]]]}', "bad-metadata", "bool"),
    ("bad word", b'{"word":5,"drawing":[[[1],[2]]]}', "bad-metadata", "'word' is int"),
    ("blank line", b"", "blank-line", "blank line"),
    ("whitespace line", b"  \t", "blank-line", "blank line"),
    ("invalid UTF-8", b'{"word":"\xff","drawing":[[[1],[2]]]}', "bad-json", "UTF-8"),
]


def line_count(path) -> int:
    with open(path, "rb") as lines:
        return sum(1 for _ in lines)


# -- real files ------------------------------------------------------------------------------


@pytest.mark.parametrize("category", ["cat", "house plant", "The Eiffel Tower"])
def test_real_raw_file(mirror, category):
    path = mirror / "full/raw" / f"{category}.ndjson"
    drawings = list(read_ndjson(path))
    assert len(drawings) == line_count(path)
    for d in drawings:
        assert d.word == category and re.fullmatch(r"[A-Z]{2}", d.countrycode)
        assert d.timestamp.endswith(" UTC") and isinstance(d.recognized, bool)
        assert d.key_id.isdigit()
        assert all(s.dtype == np.float64 and s.ndim == 2 and s.shape[1] == 2 for s in d.strokes)
        assert [len(t) for t in d.times] == [len(s) for s in d.strokes]
        assert all((np.diff(t) >= 0).all() for t in d.times)  # milliseconds, in order


@pytest.mark.parametrize("category", ["cat", "mouth"])
def test_real_simplified_file(mirror, category):
    path = mirror / "full/simplified" / f"{category}.ndjson"
    drawings = list(read_ndjson(path))
    assert len(drawings) == line_count(path)
    assert len({d.key_id for d in drawings}) == len(drawings)  # the mirror is de-duplicated
    for d in drawings:
        assert d.times is None and d.word == category and d.key_id.isdigit()
        points = d.points()
        assert points.min() >= 0 and points.max() <= 255
        np.testing.assert_array_equal(points, np.round(points))


def test_culture_file_has_only_word_countrycode_and_drawing(mirror):
    path = mirror / "extra/culture/sun.ndjson"
    drawings = list(read_ndjson(path))
    assert len(drawings) == line_count(path)
    assert {d.countrycode for d in drawings} == {"AF", "OA", "SA"}
    assert all(d.word == "sun" and d.times is None for d in drawings)
    assert all(d.key_id is d.timestamp is d.recognized is None for d in drawings)


def test_gzip_input_reads_like_plain(mirror, tmp_path):
    plain = mirror / "full/raw/zigzag.ndjson"
    compressed = tmp_path / "zigzag.ndjson.gz"
    compressed.write_bytes(gzip.compress(plain.read_bytes()))
    for a, b in zip(read_ndjson(plain), read_ndjson(compressed), strict=True):
        assert a.metadata() == b.metadata()
        assert all(map(np.array_equal, a.strokes, b.strokes))
        assert all(map(np.array_equal, a.times, b.times))


# -- bad lines -------------------------------------------------------------------------------


@pytest.mark.parametrize("name, line, kind, reason", BAD_LINES, ids=[c[0] for c in BAD_LINES])
def test_bad_line_names_file_and_line(tmp_path, name, line, kind, reason):
    path = tmp_path / "bad.ndjson"
    path.write_bytes(GOOD + b"\n" + line + b"\n" + GOOD + b"\n")
    read = []
    with pytest.raises(NdjsonError) as caught:
        read.extend(read_ndjson(path))
    error = caught.value
    assert len(read) == 1  # the good line before it
    assert (error.line, error.kind) == (2, kind)
    assert str(error).startswith(f"{path}:2: ") and reason in str(error)
    assert "truncated" not in str(error)  # the line has its newline

    log = SkipLog()
    assert len(list(read_ndjson(path, on_error="skip", skipped=log))) == 2
    assert log.counts == {kind: 1} and log.examples == [str(error)]


def drawing_line(points_per_stroke: list[int], times: bool = False) -> bytes:
    """A line whose strokes have these point counts, going back and forth along one row."""
    strokes = []
    for count in points_per_stroke:
        x = (np.arange(count) % 200).tolist()
        strokes.append([x, [7] * count] + ([list(range(count))] if times else []))
    return orjson.dumps({"word": "limit", "drawing": strokes})


LIMITS = [  # (kind, the line at the limit, the line one over it)
    ("too-many-points", [MAX_POINTS_PER_DRAWING - 10, 10], [MAX_POINTS_PER_DRAWING - 10, 11]),
    ("too-many-strokes", [1] * MAX_STROKES_PER_DRAWING, [1] * (MAX_STROKES_PER_DRAWING + 1)),
]


@pytest.mark.parametrize("times", [False, True], ids=["simplified", "raw"])
@pytest.mark.parametrize("kind, at_limit, over", LIMITS, ids=[k for k, _, _ in LIMITS])
def test_a_drawing_over_the_limits_is_a_bad_line(tmp_path, kind, at_limit, over, times):
    """Issue 10, item 7: one huge line must not hold a reader or a worker for long."""
    path = tmp_path / "huge.ndjson"
    path.write_bytes(GOOD + b"\n" + drawing_line(over, times) + b"\n"
                     + drawing_line(at_limit, times) + b"\n")
    with pytest.raises(NdjsonError) as caught:
        list(read_ndjson(path))
    assert caught.value.kind == kind
    limit = MAX_POINTS_PER_DRAWING if kind == "too-many-points" else MAX_STROKES_PER_DRAWING
    assert str(caught.value) == (f"{path}:2: drawing has {limit + 1} "
                                 f"{kind.rsplit('-', 1)[1]}, more than the limit of {limit}")
    log = SkipLog()
    drawings = list(read_ndjson(path, on_error="skip", skipped=log))
    assert log.counts == {kind: 1}
    assert [d.num_points for d in drawings] == [3, sum(at_limit)]


def line_of(size: int) -> bytes:
    """A good line of exactly ``size`` bytes before its newline (JSON whitespace padding)."""
    start = b'{"word":"padded","drawing":[[[1,2],[3,4]]]'
    return start + b" " * (size - len(start) - 1) + b"}"


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_a_line_over_the_byte_limit_is_a_bad_line_never_read_whole(tmp_path, compress):
    """Issue 10: a line of any length was read whole (a 4 GiB line, 4 GiB at once)."""
    def write(name: str, lines: list[bytes]):
        content = b"\n".join([*lines, b""])
        path = tmp_path / (f"{name}.ndjson.gz" if compress else f"{name}.ndjson")
        path.write_bytes(gzip.compress(content, compresslevel=1) if compress else content)
        return path

    long = 2 * MAX_LINE_BYTES
    path = write("long", [GOOD, b"x" * long, line_of(MAX_LINE_BYTES), GOOD])
    with pytest.raises(NdjsonError) as caught:
        list(read_ndjson(path))
    assert str(caught.value) == (f"{path}:2: line has {long} bytes, more than the limit of "
                                 f"{MAX_LINE_BYTES}")
    assert caught.value.kind == "too-long-line"
    log = SkipLog()
    assert [d.word for d in read_ndjson(path, on_error="skip", skipped=log)] == [
        "cat", "padded", "cat"]
    assert log.counts == {"too-long-line": 1}

    path = write("only-long", [b"x" * long, GOOD])
    tracemalloc.start()
    try:
        assert len(list(read_ndjson(path, on_error="skip"))) == 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_LINE_BYTES  # a bounded read takes twice what it returns; whole, 4 times


def test_non_finite_values_from_python_objects():
    """JSON has no NaN or inf (orjson rejects them as bad JSON), but parse_record also takes
    decoded records, where they and ints beyond float range can appear."""
    for value in (float("nan"), float("inf"), -float("inf"), 10**400):
        with pytest.raises(LineError) as caught:
            parse_record({"drawing": [[[1, value], [3, 4]]]})
        assert caught.value.kind == "non-finite"


def test_truncated_last_line(tmp_path):
    path = tmp_path / "cut.ndjson"
    path.write_bytes(GOOD + b"\n" + GOOD[:30])
    with pytest.raises(NdjsonError, match=r"cut\.ndjson:2: invalid JSON.*looks truncated"):
        list(read_ndjson(path))


def test_tolerated_framing(tmp_path):
    """A BOM on line 1, CRLF line ends and a last line without a newline are all fine."""
    path = tmp_path / "windows.ndjson"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD + b"\r\n" + GOOD + b"\r\n" + GOOD)
    drawings = list(read_ndjson(path))
    assert len(drawings) == 3 and all(d.word == "cat" for d in drawings)
    path.write_bytes(GOOD + b"\n\xef\xbb\xbf" + GOOD + b"\n")  # a BOM elsewhere is no JSON
    with pytest.raises(NdjsonError, match="windows.ndjson:2: invalid JSON"):
        list(read_ndjson(path))


def test_skip_mode_counts_every_bad_line_by_kind(tmp_path):
    path = tmp_path / "mixed.ndjson"
    lines = [part for _, line, _, _ in BAD_LINES for part in (GOOD, line)]
    path.write_bytes(b"\n".join(lines) + b"\n" + GOOD[:20])  # and a truncated last line
    log = SkipLog()
    drawings = list(read_ndjson(path, on_error="skip", skipped=log))
    expected = Counter(kind for _, _, kind, _ in BAD_LINES) + Counter({"bad-json": 1})
    assert len(drawings) == len(BAD_LINES)
    assert log.counts == expected and len(log) == len(BAD_LINES) + 1
    assert len(drawings) + len(log) == len(lines) + 1  # nothing dropped silently
    assert log.examples[0].startswith(f"{path}:2: ") and len(log.examples) == SkipLog.max_examples
    assert log.summary().startswith(f"skipped {len(BAD_LINES) + 1} lines (bad-json: ")


def test_truncated_gzip_tail(mirror, tmp_path):
    text = (mirror / "full/simplified/cat.ndjson").read_bytes()
    data = gzip.compress(text, mtime=0)
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(data[: len(data) // 2])
    log = SkipLog()
    drawings = list(read_ndjson(path, on_error="skip", skipped=log))
    assert 0 < len(drawings) < line_count(mirror / "full/simplified/cat.ndjson")
    assert log.counts == {"bad-gzip": 1}
    with pytest.raises(NdjsonError) as caught:
        list(read_ndjson(path))
    assert caught.value.kind == "bad-gzip" and caught.value.line == len(drawings) + 1
    assert str(caught.value).startswith(f"{path}:{len(drawings) + 1}: compressed stream")


def test_empty_gzip_file_is_truncated_not_empty(tmp_path):
    empty = tmp_path / "empty.ndjson.gz"
    empty.write_bytes(b"")
    with pytest.raises(NdjsonError, match=r"empty\.ndjson\.gz:1: .*empty"):
        list(read_ndjson(empty))
    no_lines = tmp_path / "no-lines.ndjson.gz"
    no_lines.write_bytes(gzip.compress(b""))  # a valid stream of nothing: no records
    assert list(read_ndjson(no_lines)) == []


def test_unknown_error_mode(tmp_path):
    with pytest.raises(ValueError, match="on_error must be one of"):
        next(read_ndjson(tmp_path / "any.ndjson", on_error="ignore"))


# -- writing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["full/raw/cat.ndjson", "full/simplified/cat.ndjson", "extra/culture/shoe.ndjson"]
)
def test_write_reproduces_googles_files_byte_for_byte(mirror, tmp_path, name):
    out = tmp_path / "copy.ndjson"
    assert write_ndjson(read_ndjson(mirror / name), out) == line_count(mirror / name)
    assert out.read_bytes() == (mirror / name).read_bytes()


def test_write_gzip_round_trip(tmp_path):
    drawings = [
        drawing_from_arrays([[[0.5, 1e300], [-3, 2]], [[7, 7]]], word="x", key_id="1"),
        Drawing((np.array([[1.0, 2.0]]),), (np.array([16.0]),), recognized=False),
    ]
    path = tmp_path / "out.ndjson.gz"
    assert write_ndjson(drawings, path) == 2
    back = list(read_ndjson(path))
    for a, b in zip(drawings, back, strict=True):
        assert a.metadata() == b.metadata() and all(map(np.array_equal, a.strokes, b.strokes))
    assert back[0].times is None and np.array_equal(back[1].times[0], [16.0])


def test_write_is_atomic(tmp_path):
    path = tmp_path / "out.ndjson"
    path.write_bytes(GOOD + b"\n")

    def failing():
        yield drawing_from_arrays([[[0, 0]]])
        raise RuntimeError("generator died")

    with pytest.raises(RuntimeError):
        write_ndjson(failing(), path)
    assert path.read_bytes() == GOOD + b"\n" and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_drawing_from_arrays_wants_xy_rows():
    drawing = drawing_from_arrays([[[0, 1], [2, 3], [4, 5]]], word="w")
    np.testing.assert_array_equal(drawing.strokes[0], [[0, 1], [2, 3], [4, 5]])
    with pytest.raises(ValueError, match=r"\(n, 2\) arrays"):
        drawing_from_arrays([[[0, 2, 4], [1, 3, 5]]])  # Google's [[x...], [y...]] layout
    with pytest.raises(ValueError, match="no empty strokes"):
        drawing_from_arrays([np.empty((0, 2))])
    with pytest.raises(ValueError, match="finite"):
        drawing_from_arrays([[[0, np.nan]]])
