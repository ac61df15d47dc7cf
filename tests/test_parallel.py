"""rasterize.parallel: order, errors, atomic output, and resuming a job killed for real."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orjson
import pytest

from rasterize import parallel
from rasterize.drawings import MAX_POINTS_PER_DRAWING
from rasterize.geometry import GOOGLE_SIZE
from rasterize.ndjson_reader import MAX_LINE_BYTES, LongLine, NdjsonError, SkipLog, read_ndjson
from rasterize.parallel import RasterizeOptions, rasterize_files
from rasterize.render import render
from rasterize.shards import MANIFEST, NpyRowWriter


def head_lines(path, count):
    with open(path, "rb") as stream:
        return list(itertools.islice(stream, count))


def expected_rows(paths, size=GOOGLE_SIZE, on_error="raise"):
    """What the job must write: render() of read_ndjson(), file after file."""
    log = SkipLog()
    drawings = [d for p in paths for d in read_ndjson(p, on_error=on_error, skipped=log)]
    return render(drawings, size=size).reshape(len(drawings), size * size), log


@pytest.fixture(scope="module")
def inputs(mirror, tmp_path_factory):
    """Three real files: simplified, raw (floats, times) and a gzipped simplified one."""
    folder = tmp_path_factory.mktemp("inputs")
    simplified = mirror / "full" / "simplified"
    eye = folder / "eye.ndjson"
    eye.write_bytes(b"".join(head_lines(simplified / "eye.ndjson", 300)))
    raw = mirror / "full" / "raw" / "cat.ndjson"
    fish = folder / "fish.ndjson.gz"
    fish.write_bytes(gzip.compress(b"".join(head_lines(simplified / "fish.ndjson", 25))))
    return [eye, raw, fish]


def test_rows_are_rendered_in_input_order_across_workers_and_shards(inputs, tmp_path):
    out = tmp_path / "out.npy"
    seen = []
    options = RasterizeOptions(workers=2, chunk_lines=16, shard_lines=70)
    result = rasterize_files(inputs, out, options, progress=seen.append)
    expected, _ = expected_rows(inputs)
    rows = np.load(out)
    assert rows.dtype == np.uint8 and rows.shape == expected.shape
    np.testing.assert_array_equal(rows, expected)
    assert result.rows == len(expected) and len(result.skipped) == 0
    assert result.shards == 5 + 1 + 1  # 300 eye lines in shards of 70, 34 raw cats, 25 fish
    assert sum(seen) == len(expected)
    assert not (tmp_path / ".out.npy.parts").exists()  # the work dir goes after success


def test_other_sizes(inputs, tmp_path):
    out = tmp_path / "out64.npy"
    rasterize_files(inputs[1:], out, RasterizeOptions(size=64, workers=1))
    np.testing.assert_array_equal(np.load(out), expected_rows(inputs[1:], size=64)[0])


BAD_LINES = [
    b'{"word": "x", "drawing": [[[0, 10], [0, 10]]]}\r\n',  # CRLF is fine
    b"{not json\n",
    b'{"word": "x"}\n',
    b"\n",
    b'{"drawing": [[[0, "a"], [0, 1]]]}\n',
    b'{"drawing": [[[0, 1, 2], [0, 1]]]}\n',
    b'{"drawing": []}\n',
    b'{"drawing": [[[0, 255], [3, 40]]]}\n',
    b'{"drawing": [[[0, 1], [0',  # truncated last line
]


@pytest.fixture
def bad_file(tmp_path, mirror):
    good = head_lines(mirror / "full" / "simplified" / "apple.ndjson", 5)
    path = tmp_path / "bad.ndjson"
    path.write_bytes(b"\xef\xbb\xbf" + b"".join(good) + b"".join(BAD_LINES))
    return path


def test_skip_counts_and_rows_match_the_streaming_reader(bad_file, tmp_path):
    out = tmp_path / "out.npy"
    result = rasterize_files([bad_file], out, RasterizeOptions(on_error="skip", chunk_lines=3))
    expected, log = expected_rows([bad_file], on_error="skip")
    assert len(expected) == 5 + 2 and len(log) == 7
    np.testing.assert_array_equal(np.load(out), expected)
    assert result.skipped.counts == log.counts
    assert result.skipped.examples == log.examples
    assert log.counts == {
        "bad-json": 2,
        "missing-drawing": 1,
        "blank-line": 1,
        "non-numeric": 1,
        "ragged": 1,
        "empty-drawing": 1,
    }


def test_a_drawing_over_the_point_limit_is_a_bad_line_in_both_modes(bad_file, tmp_path):
    """Issue 10, item 7: a line of too many points stops the job with FILE:LINE, or is
    counted under its own reason; one at the limit is rendered."""
    def line(points):
        return orjson.dumps({"drawing": [[[0, 255] * (points // 2), [9] * points]]}) + b"\n"

    path = tmp_path / "huge.ndjson"
    path.write_bytes(b"".join(head_lines(bad_file, 3)[1:2]) + line(MAX_POINTS_PER_DRAWING + 2)
                     + line(MAX_POINTS_PER_DRAWING))
    out = tmp_path / "out.npy"
    with pytest.raises(NdjsonError, match=rf"^{path}:2: drawing has {MAX_POINTS_PER_DRAWING + 2}"
                                          rf" points, more than the limit"):
        rasterize_files([path], out, RasterizeOptions(workers=2, chunk_lines=1))
    assert not out.exists()
    result = rasterize_files([path], out, RasterizeOptions(on_error="skip", workers=2,
                                                           chunk_lines=1))
    assert result.skipped.counts == {"too-many-points": 1}
    np.testing.assert_array_equal(np.load(out), expected_rows([path], on_error="skip")[0])
    assert result.rows == 2


def test_a_line_over_the_byte_limit_is_a_bad_line_in_both_modes(mirror, tmp_path):
    """Issue 10: the job read a line of any length whole, in this process."""
    good = head_lines(mirror / "full" / "raw" / "cat.ndjson", 3)
    path = tmp_path / "long.ndjson.gz"
    path.write_bytes(gzip.compress(good[0] + b"x" * (MAX_LINE_BYTES + 1) + b"\n"
                                   + b"".join(good[1:]), compresslevel=1))
    out = tmp_path / "out.npy"
    with pytest.raises(NdjsonError, match=rf"^{path}:2: line has {MAX_LINE_BYTES + 1} bytes, "
                                          rf"more than the limit of {MAX_LINE_BYTES}$"):
        rasterize_files([path], out, RasterizeOptions(workers=2, chunk_lines=2))
    assert not out.exists()
    result = rasterize_files([path], out, RasterizeOptions(on_error="skip", workers=2,
                                                           chunk_lines=2))
    assert result.skipped.counts == {"too-long-line": 1} and result.rows == 3
    np.testing.assert_array_equal(np.load(out), expected_rows([path], on_error="skip")[0])


def test_a_chunk_ends_at_the_line_that_brings_it_to_chunk_bytes(mirror, tmp_path):
    """So lines of megabytes (up to MAX_LINE_BYTES) do not put 256 of them in one chunk."""
    lines = head_lines(mirror / "full" / "raw" / "cat.ndjson", 30)
    path = tmp_path / "cat.ndjson"
    path.write_bytes(b"".join(lines[:10]) + b"x" * (MAX_LINE_BYTES + 1) + b"\n"
                     + b"".join(lines[10:]))
    options = RasterizeOptions(chunk_lines=8, chunk_bytes=20_000, shard_lines=12)
    chunks = list(parallel._file_chunks(path, 0, options))
    read = [line for chunk in chunks for line in chunk.lines]
    assert read[:10] + read[11:] == lines and read[10] == LongLine(MAX_LINE_BYTES + 1)
    assert [c.first_line for c in chunks] == list(
        itertools.accumulate([1] + [len(c.lines) for c in chunks[:-1]]))
    cut_by_bytes = 0
    for chunk in chunks:
        sizes = [len(line) if isinstance(line, bytes) else 0 for line in chunk.lines]
        assert len(sizes) <= 8 and sum(sizes[:-1]) < 20_000
        cut_by_bytes += len(sizes) < 8 and sum(sizes) >= 20_000
        block = (chunk.first_line - 1) // 12  # no chunk straddles two shards
        assert chunk.shard.endswith(f"-{block:06d}")
        assert (chunk.first_line + len(chunk.lines) - 2) // 12 == block
    assert cut_by_bytes  # raw cats are 3.6 KB a line: some chunks end by bytes


def test_a_truncated_last_line_is_called_truncated(mirror, tmp_path):
    lines = head_lines(mirror / "full" / "simplified" / "cat.ndjson", 3)
    path = tmp_path / "cut.ndjson"
    path.write_bytes(b"".join(lines)[:-40])
    with pytest.raises(NdjsonError, match=r"cut.ndjson:3: invalid JSON.*looks truncated"):
        rasterize_files([path], tmp_path / "out.npy", RasterizeOptions(workers=1))


def test_raise_names_file_and_line_and_keeps_the_old_output(bad_file, tmp_path):
    out = tmp_path / "out.npy"
    np.save(out, np.full((2, 784), 7, np.uint8))
    before = out.read_bytes()
    with pytest.raises(NdjsonError) as caught:
        rasterize_files([bad_file], out, RasterizeOptions(workers=2, chunk_lines=2))
    assert str(caught.value).startswith(f"{bad_file}:7: invalid JSON")
    assert out.read_bytes() == before
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_truncated_gzip_tail_is_reported_not_dropped(mirror, tmp_path):
    lines = head_lines(mirror / "full" / "simplified" / "cat.ndjson", 25)
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(gzip.compress(b"".join(lines))[:-30])
    out = tmp_path / "out.npy"
    result = rasterize_files([path], out, RasterizeOptions(on_error="skip", workers=1))
    expected, log = expected_rows([path], on_error="skip")
    assert log.counts["bad-gzip"] == 1 and result.skipped.counts == log.counts
    np.testing.assert_array_equal(np.load(out), expected)


def test_empty_input_gives_an_empty_array(tmp_path):
    empty = tmp_path / "empty.ndjson"
    empty.write_bytes(b"")
    out = tmp_path / "out.npy"
    assert rasterize_files([empty], out, RasterizeOptions(workers=1)).rows == 0
    assert np.load(out).shape == (0, 784)


def test_row_writer_is_atomic(tmp_path):
    out = tmp_path / "rows.npy"
    with NpyRowWriter(out, 4) as writer:
        writer.append(np.arange(8, dtype=np.uint8).reshape(2, 4))
        writer.append(np.full((1, 4), 9, np.uint8))
        assert not out.exists()
        writer.commit()
    np.testing.assert_array_equal(np.load(out)[2], [9, 9, 9, 9])
    with pytest.raises(RuntimeError), NpyRowWriter(out, 4) as writer:
        writer.append(np.zeros((5, 4), np.uint8))
        raise RuntimeError("crash while writing")
    assert np.load(out).shape == (3, 4)  # the good file is still there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.npy"]
    with pytest.raises(ValueError), NpyRowWriter(out, 4) as writer:
        writer.append(np.zeros((1, 5), np.uint8))


def test_a_stale_work_dir_is_not_reused(inputs, tmp_path):
    out = tmp_path / "out.npy"
    work = tmp_path / "work"
    options = RasterizeOptions(workers=1, shard_lines=100)
    work.mkdir()
    (work / "00000-000000.npy").write_bytes(b"junk from another job")
    (work / MANIFEST).write_text(json.dumps({"fingerprint": "other", "shards": {}}))
    (work / ".00000-000001.npy.tmp-1234567").write_bytes(b"a dead job's temp file")
    users = ["notes.txt", "data.npy", "notes.tmp-1", ".data.npy.tmp-1234567"]  # must survive
    for name in users:
        (work / name).write_text("not ours")
    result = rasterize_files(inputs[:1], out, options, work_dir=work)
    assert result.reused_shards == 0
    np.testing.assert_array_equal(np.load(out), expected_rows(inputs[:1])[0])
    assert sorted(p.name for p in work.iterdir()) == sorted(users)


def test_a_temporary_whose_pid_no_process_can_have_is_left_alone(inputs, tmp_path):
    """os.kill raised OverflowError on it: one such file made every run fail."""
    out = tmp_path / "out.npy"
    odd = [tmp_path / ".out.npy.tmp-99999999999999999999",
           tmp_path / ".out.npy.parts" / ".00000-000000.npy.tmp-99999999999999999999"]
    odd[1].parent.mkdir()
    for path in odd:
        path.write_text("not ours")
    rasterize_files(inputs[:1], out, RasterizeOptions(workers=1))
    np.testing.assert_array_equal(np.load(out), expected_rows(inputs[:1])[0])
    assert odd[0].read_text() == "not ours"


@pytest.mark.parametrize(
    "options",
    [dict(on_error="ignore"), dict(workers=0), dict(size=0), dict(shard_lines=0)],
)
def test_bad_options_fail_before_any_work(inputs, tmp_path, options):
    with pytest.raises(ValueError):
        rasterize_files(inputs, tmp_path / "out.npy", RasterizeOptions(**options))
    assert not list(tmp_path.iterdir())


JOB = """
import multiprocessing, sys
from rasterize.parallel import RasterizeOptions, rasterize_files
if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")  # the job must be spawn-safe
    options = RasterizeOptions(workers=2, chunk_lines=50, shard_lines=200)
    rasterize_files(sys.argv[3:], sys.argv[1], options, work_dir=sys.argv[2])
"""


def test_a_killed_job_resumes_without_redoing_or_duplicating_shards(mirror, tmp_path):
    simplified = mirror / "full" / "simplified"
    inputs = [tmp_path / "eye.ndjson", tmp_path / "mouth.ndjson", simplified / "cat.ndjson"]
    for path in inputs[:2]:
        path.write_bytes(b"".join(head_lines(simplified / path.name, 1500)))
    out, work, script = tmp_path / "out.npy", tmp_path / "work", tmp_path / "job.py"
    script.write_text(JOB)
    job = subprocess.Popen(
        [sys.executable, str(script), str(out), str(work), *map(str, inputs)],
        start_new_session=True,  # its own process group: the kill takes its workers too
    )
    finished: dict = {}
    try:
        deadline = time.monotonic() + 120
        while len(finished) < 2 and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
            try:
                finished = json.loads((work / MANIFEST).read_text())["shards"]
            except (FileNotFoundError, json.JSONDecodeError):
                pass
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    assert job.returncode == -signal.SIGKILL, "the job ended before it could be killed"
    assert len(finished) >= 2 and not out.exists()

    options = RasterizeOptions(workers=2, chunk_lines=50, shard_lines=200)
    resumed = rasterize_files(inputs, out, options, work_dir=work)
    assert resumed.shards == 8 + 8 + 1  # 1500 lines in shards of 200, twice; 25 cats
    assert resumed.reused_shards >= len(finished)
    uninterrupted = tmp_path / "uninterrupted.npy"
    rasterize_files(inputs, uninterrupted, RasterizeOptions(workers=2))
    np.testing.assert_array_equal(np.load(out), np.load(uninterrupted))
    assert resumed.rows == len(np.load(uninterrupted))
