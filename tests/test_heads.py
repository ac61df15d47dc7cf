"""Heads: only the first lines (ndjson) or rows (npy) that are used are downloaded.

Against the loopback server (``tests/http_mirror.py``), which counts the body bytes it sends.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from http_mirror import serve

from sketchgen.cli import fetch
from sketchgen.data import datasets
from sketchgen.data.download import DownloadOptions
from sketchgen.data.sources import resolve

CHUNK = 64 << 10
SMALL = DownloadOptions(timeout=5.0, retries=0, backoff=0.0, chunk_bytes=CHUNK,
                        progress=False)


def end_of_line(path: Path, count: int) -> int:
    """Bytes of the first ``count`` lines of ``path``."""
    return sum(len(line) for line in path.read_bytes().splitlines(keepends=True)[:count])


def first_lines(path: Path, count: int) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)[:count]


def manifest_entry(cache: Path, relative: str) -> dict:
    (manifest,) = (cache / "downloads").glob("*/MANIFEST.json")
    return json.loads(manifest.read_text())["files"][relative]


# -- ndjson ---------------------------------------------------------------------------------


def test_a_head_holds_the_first_lines_and_costs_little(server, mirror, cache):
    source = mirror / "full/simplified/eye.ndjson"
    path = resolve("eye", mirror=server.url, options=SMALL, limit=1000)
    held = path.read_bytes()
    assert held.splitlines(keepends=True)[:1000] == first_lines(source, 1000)
    assert source.read_bytes().startswith(held) and held.endswith(b"\n"), "whole lines only"
    assert server.sent <= end_of_line(source, 1000) + CHUNK
    assert len(server.requests) <= 3 and {r["status"] for r in server.requests} == {206}
    entry = manifest_entry(cache, "full/simplified/eye.ndjson")
    assert entry["complete"] is False and entry["records"] == held.count(b"\n") >= 1000
    assert (entry["source_end"], entry["source_bytes"]) == (len(held), source.stat().st_size)

    before = len(server.requests)
    assert resolve("eye", mirror=server.url, options=SMALL, limit=900) == path
    assert len(server.requests) == before, "a head holding enough lines is used as it is"


def test_extending_a_head_equals_one_bigger_fetch(server, mirror, cache, tmp_path, monkeypatch):
    source = mirror / "full/simplified/eye.ndjson"
    small = resolve("eye", mirror=server.url, options=SMALL, limit=300).read_bytes()
    first = len(server.requests)
    extended = resolve("eye", mirror=server.url, options=SMALL, limit=2000).read_bytes()
    resume = server.requests[first]
    assert resume["range"].startswith(f"bytes={len(small)}-") and resume["status"] == 206
    assert resume["if_range"], "the extension names the version it continues"
    assert server.sent <= end_of_line(source, 2000) + 2 * CHUNK, "the head is not fetched twice"

    monkeypatch.setenv("SKETCHGEN_CACHE", str(tmp_path / "other-cache"))
    at_once = resolve("eye", mirror=server.url, options=SMALL, limit=2000).read_bytes()
    assert extended.splitlines()[:2000] == at_once.splitlines()[:2000]
    assert extended.splitlines(keepends=True)[:2000] == first_lines(source, 2000)


def test_a_changed_source_restarts_the_head(server, mirror, cache):
    source = mirror / "full/simplified/eye.ndjson"
    resolve("eye", mirror=server.url, options=SMALL, limit=300)
    first = len(server.requests)
    server.version = 2
    path = resolve("eye", mirror=server.url, options=SMALL, limit=1000)
    assert server.requests[first]["if_range"] and server.requests[first]["status"] == 200
    assert path.read_bytes().splitlines(keepends=True)[:1000] == first_lines(source, 1000)
    assert source.read_bytes().startswith(path.read_bytes())
    assert manifest_entry(cache, "full/simplified/eye.ndjson")["validator"].endswith('-2"')


def test_a_server_ignoring_range_is_read_only_as_far_as_needed(server, mirror, cache):
    server.ranges = False
    source = mirror / "full/simplified/eye.ndjson"
    held = resolve("eye", mirror=server.url, options=SMALL, limit=1000).read_bytes()
    assert [r["status"] for r in server.requests] == [200]
    assert held.splitlines(keepends=True)[:1000] == first_lines(source, 1000)
    assert len(held) <= end_of_line(source, 1000) + CHUNK < source.stat().st_size


def test_no_limit_completes_a_head_from_where_it_ends(server, mirror, cache):
    source = mirror / "full/simplified/eye.ndjson"
    head = resolve("eye", mirror=server.url, options=SMALL, limit=300).read_bytes()
    first = len(server.requests)
    path = resolve("eye", mirror=server.url, options=SMALL)
    assert path.read_bytes() == source.read_bytes()
    assert (server.requests[first]["range"], server.requests[first]["status"]) == (
        f"bytes={len(head)}-", 206)
    assert server.sent <= source.stat().st_size + CHUNK
    assert manifest_entry(cache, "full/simplified/eye.ndjson")["complete"] is True
    assert resolve("eye", mirror=server.url, options=SMALL, limit=10) == path
    assert len(server.requests) == first + 1


def test_a_head_of_a_short_file_is_the_whole_file(server, mirror, cache):
    path = resolve("cat", mirror=server.url, options=SMALL, limit=1000)
    assert path.read_bytes() == (mirror / "full/simplified/cat.ndjson").read_bytes()
    assert manifest_entry(cache, "full/simplified/cat.ndjson")["complete"] is True


def test_a_head_without_validators_is_never_pieced_together(server, mirror, cache):
    # Two ranges of a file with no ETag could come from two versions: after the first
    # answer shows there is no validator, one request from byte 0, read as far as needed.
    server.validators = False
    source = mirror / "full/simplified/eye.ndjson"
    path = resolve("eye", mirror=server.url, options=SMALL, limit=1000)
    assert [r["range"] for r in server.requests] == ["bytes=0-65535", None]
    held = path.read_bytes()
    assert held.splitlines(keepends=True)[:1000] == first_lines(source, 1000)
    assert len(held) <= end_of_line(source, 1000) + CHUNK
    resolve("eye", mirror=server.url, options=SMALL, limit=2000)
    assert server.requests[2]["range"] is None, "nothing to continue from: from the start"


def test_limit_must_be_a_positive_integer(server):
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="limit must be a positive integer or None"):
            resolve("eye", mirror=server.url, limit=bad)
    assert server.requests == []


# -- npy and npz ----------------------------------------------------------------------------


def test_npy_heads_hold_the_first_rows(server, mirror, cache):
    source = mirror / "full/numpy_bitmap/eye.npy"
    rows = np.load(source, mmap_mode="r")
    path = resolve("eye", "bitmap", mirror=server.url, options=SMALL, limit=100)
    head = np.load(path, mmap_mode="r", allow_pickle=False)
    assert 100 <= len(head) < len(rows) and head.dtype == np.uint8
    np.testing.assert_array_equal(head, rows[: len(head)])
    assert server.sent <= 128 + 100 * 784 + CHUNK

    first = len(server.requests)
    longer = np.load(resolve("eye", "bitmap", mirror=server.url, options=SMALL,
                             limit=2000), mmap_mode="r")
    assert server.requests[first]["if_range"] and server.requests[first]["status"] == 206
    np.testing.assert_array_equal(longer, rows[: len(longer)])
    assert len(longer) >= 2000
    assert server.sent <= 128 + 2000 * 784 + 2 * CHUNK

    whole = resolve("eye", "bitmap", mirror=server.url, options=SMALL)
    assert whole.read_bytes() == source.read_bytes()


def test_a_changed_npy_restarts_its_head(server, mirror, cache):
    rows = np.load(mirror / "full/numpy_bitmap/eye.npy", mmap_mode="r")
    resolve("eye", "bitmap", mirror=server.url, options=SMALL, limit=100)
    server.version = 2
    path = resolve("eye", "bitmap", mirror=server.url, options=SMALL, limit=500)
    head = np.load(path, mmap_mode="r")
    assert len(head) >= 500 and server.requests[-1]["status"] == 200
    np.testing.assert_array_equal(head, rows[: len(head)])


# Edits of the eye.npy header ("... 'shape': (3000, 784), }") that keep its length.
BAD_NPY_SHAPES = {
    "negative rows": (b"(3000, 784)", b"(-300, 784)"),
    "negative row size": (b"(3000, 784)", b"(3000,-784)"),
    "both negative": (b"(3000, 784)", b"(-300,-784)"),
    "unparsable": (b"(3000, 784), }", b"((3000, 784), "),
}


@pytest.mark.parametrize("edit", BAD_NPY_SHAPES.values(), ids=BAD_NPY_SHAPES)
def test_an_npy_header_rows_cannot_be_cut_by_means_the_whole_file(tmp_path, mirror, cache,
                                                                  edit):
    # numpy's header parser lets negative sizes through, and fails on some text with an
    # error that is no ValueError: neither may cut rows or escape as a traceback.
    npy = (mirror / "full/numpy_bitmap/eye.npy").read_bytes()
    assert edit[0] in npy[:128]
    root = tmp_path / "bad-mirror"
    (root / "full/numpy_bitmap").mkdir(parents=True)
    source = root / "full/numpy_bitmap/eye.npy"
    source.write_bytes(npy.replace(*edit, 1))
    with serve(root) as server:
        path = resolve("eye", "bitmap", mirror=server.url, options=SMALL, limit=100)
    assert path.read_bytes() == source.read_bytes(), "fetched whole, as the server has it"
    assert manifest_entry(cache, "full/numpy_bitmap/eye.npy")["complete"] is True


def test_sketchrnn_npz_files_are_fetched_whole(server, mirror, cache):
    path = resolve("face", "sketchrnn", mirror=server.url, options=SMALL, limit=10)
    assert path.read_bytes() == (mirror / "sketchrnn/face.npz").read_bytes()


# -- loaders and sketchgen fetch ------------------------------------------------------------


def test_loaders_download_only_the_heads_they_use(server, mirror, cache):
    # The default comparison's data: per_class + 2 * n_samples = 3,000 drawings of each.
    over_http = datasets.load_bitmaps(["eye", "mouth"], per_class=3000, mirror=server.url)
    assert over_http.labels.tolist() == [0] * 3000 + [1] * 3000
    sources = [mirror / f"full/simplified/{name}.ndjson" for name in ("eye", "mouth")]
    needed = sum(end_of_line(source, 3000) for source in sources)
    assert server.sent <= needed + 2 * DownloadOptions().chunk_bytes
    assert server.sent < sum(source.stat().st_size for source in sources)
    sent, requests = server.sent, len(server.requests)
    for name, source in zip(("eye", "mouth"), sources, strict=True):
        head = resolve(name, mirror=server.url, limit=3000)
        assert head.read_bytes().splitlines(keepends=True)[:3000] == first_lines(source, 3000)
    assert (server.sent, len(server.requests)) == (sent, requests), "the heads are cached"
    in_place = datasets.load_bitmaps(["eye", "mouth"], per_class=40)
    np.testing.assert_array_equal(over_http.bitmaps[:40], in_place.bitmaps[:40])
    np.testing.assert_array_equal(over_http.bitmaps[3000:3040], in_place.bitmaps[40:])


def test_a_class_is_topped_up_from_its_next_file(server, mirror, cache):
    culture = mirror / "extra/culture/sun.ndjson"
    over_http = datasets.load_drawings(["sun", culture], per_class=30, mirror=server.url)
    in_place = datasets.load_drawings(["sun", culture], per_class=30)
    assert [d.countrycode for d in over_http.drawings] == [
        d.countrycode for d in in_place.drawings]
    assert len(over_http) == 30


def test_skipped_lines_make_the_head_longer(tmp_path, mirror, cache):
    # A third of the first 1,500 lines are bad: the first head yields too few drawings.
    lines = first_lines(mirror / "full/simplified/eye.ndjson", 3000)
    bad = b'{"word":"eye","drawing":"' + b"x" * 500 + b'"}\n'
    lines[0:1500:3] = [bad] * 500
    root = tmp_path / "bad-mirror"
    (root / "full/simplified").mkdir(parents=True)
    (root / "full/simplified/eye.ndjson").write_bytes(b"".join(lines))
    with serve(root) as server:
        over_http = datasets.load_drawings("eye", per_class=2400, on_error="skip",
                                           mirror=server.url)
    in_place = datasets.load_drawings("eye", per_class=2400, on_error="skip", mirror=root)
    assert len(over_http) == len(in_place) == 2400
    assert [d.key_id for d in over_http.drawings] == [d.key_id for d in in_place.drawings]
    assert dict(over_http.skipped.counts) == dict(in_place.skipped.counts) == {"bad-drawing": 500}
    assert len(server.requests) > 2


def run_fetch(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    fetch.add_arguments(parser)
    return fetch.run(parser.parse_args(argv))


def test_fetch_limit_downloads_a_head(server, mirror, cache, capsys):
    assert run_fetch("eye", "--limit", "100", "--mirror", server.url) == 0
    path = Path(capsys.readouterr().out.strip())
    source = mirror / "full/simplified/eye.ndjson"
    assert path.read_bytes().splitlines(keepends=True)[:100] == first_lines(source, 100)
    assert path.stat().st_size < source.stat().st_size
    with pytest.raises(SystemExit):
        run_fetch("eye", "--limit", "0", "--mirror", server.url)
