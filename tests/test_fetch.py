"""The HTTP path of sketchgen.data and ``sketchgen fetch``, against a loopback server.

The server (``tests/http_mirror.py``, the ``server`` fixture) serves the shared mirror folder
on 127.0.0.1 and can misbehave on demand.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

import pytest

from sketchgen import data
from sketchgen.cli import UsageError
from sketchgen.commands import fetch

FAST = data.DownloadOptions(timeout=5.0, retries=0, backoff=0.0, progress=False)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("SKETCHGEN_CACHE", str(path))
    return path


def manifest_sha256(mirror: Path, relative: str) -> str:
    for line in (mirror / "MANIFEST.sha256").read_text().splitlines():
        digest, name = line.split("  ", 1)
        if name == relative:
            return digest
    raise AssertionError(f"{relative} is not in the mirror's MANIFEST.sha256")


def leftovers(path: Path) -> list[Path]:
    return [p for p in path.parent.iterdir() if p.name.endswith((".part", ".part.json"))]


# -- downloads ------------------------------------------------------------------------------


def test_download_lands_in_the_cache_with_its_hash_recorded(server, mirror, cache):
    path = data.resolve("coffee cup", mirror=server.url, options=FAST)
    assert path.is_relative_to(cache / "downloads") and path.name == "coffee cup.ndjson"
    assert path.read_bytes() == (mirror / "full/simplified/coffee cup.ndjson").read_bytes()
    assert server.requests[0]["path"] == "/full/simplified/coffee%20cup.ndjson"
    recorded = path.with_name(path.name + ".sha256").read_text().split()[0]
    assert recorded == manifest_sha256(mirror, "full/simplified/coffee cup.ndjson")
    assert leftovers(path) == []

    assert data.resolve("coffee cup", mirror=server.url, options=FAST) == path
    assert len(server.requests) == 1, "a verified cached file is not downloaded again"


def test_interrupted_download_resumes_where_it_stopped(server, mirror, cache):
    full = (mirror / "full/raw/cat.ndjson").read_bytes()
    server.drop_after = [60_000]
    with pytest.raises(data.DownloadError, match=f"received 60000 of the {len(full)} bytes"):
        data.resolve("cat", "raw", mirror=server.url, options=FAST)
    (part,) = (cache / "downloads").rglob("cat.ndjson.part")
    assert part.stat().st_size == 60_000
    assert not part.with_suffix("").exists(), "an incomplete file never takes the final name"

    path = data.resolve("cat", "raw", mirror=server.url, options=FAST)
    resumed = server.requests[1]
    assert (resumed["range"], resumed["status"]) == ("bytes=60000-", 206)
    assert resumed["if_range"], "the resume names the version it continues"
    assert path.read_bytes() == full
    assert leftovers(path) == []


def test_retries_resume_within_one_call(server, mirror, cache):
    server.drop_after = [40_000, 40_000]
    options = data.DownloadOptions(timeout=5.0, retries=2, backoff=0.0, progress=False)
    path = data.resolve("cat", "raw", mirror=server.url, options=options)
    assert [r["range"] for r in server.requests] == [None, "bytes=40000-", "bytes=80000-"]
    assert path.read_bytes() == (mirror / "full/raw/cat.ndjson").read_bytes()


def test_a_file_changed_on_the_server_is_downloaded_afresh(server, mirror, cache):
    server.drop_after = [60_000]
    with pytest.raises(data.DownloadError):
        data.resolve("cat", "raw", mirror=server.url, options=FAST)
    server.version = 2  # new ETag: the 60,000 bytes held belong to an older file
    path = data.resolve("cat", "raw", mirror=server.url, options=FAST)
    assert (server.requests[1]["range"], server.requests[1]["status"]) == ("bytes=60000-", 200)
    assert path.read_bytes() == (mirror / "full/raw/cat.ndjson").read_bytes()


def test_size_mismatch_is_detected(server, mirror, cache):
    size = (mirror / "full/simplified/cat.ndjson").stat().st_size
    server.extra_length = 100
    with pytest.raises(data.DownloadError, match=f"received {size} of the {size + 100} bytes"):
        data.resolve("cat", mirror=server.url, options=FAST)
    assert list((cache / "downloads").rglob("cat.ndjson")) == []


def test_corrupted_cached_file_is_detected(server, cache):
    path = data.resolve("cat", mirror=server.url, options=FAST)
    content = bytearray(path.read_bytes())
    content[100] ^= 0x01  # same size, one bit off
    path.write_bytes(bytes(content))
    with pytest.raises(data.DownloadError, match="does not match .* recorded when it was"):
        data.resolve("cat", mirror=server.url, options=FAST)
    assert len(server.requests) == 1, "a corrupt file is reported, not silently replaced"


def test_missing_remote_file_fails_without_retrying(server, cache):
    options = data.DownloadOptions(timeout=5.0, retries=3, backoff=0.0, progress=False)
    with pytest.raises(data.DownloadError, match="HTTP 404"):
        data.resolve("dog", "bitmap", mirror=server.url, options=options)
    assert len(server.requests) == 1


def test_parallel_downloads_of_one_file_share_one_transfer(server, mirror, cache):
    results: list[Path] = []

    def fetch_cat() -> None:
        results.append(data.resolve("cat", "raw", mirror=server.url, options=FAST))

    threads = [threading.Thread(target=fetch_cat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 2 and results[0] == results[1]
    assert len(server.requests) == 1
    assert results[0].read_bytes() == (mirror / "full/raw/cat.ndjson").read_bytes()


def test_names_and_mirror_urls_cannot_escape_the_cache(server, cache):
    for name in ("../../../etc/passwd", "../cat", "cat/../../x"):
        with pytest.raises(ValueError, match="expected one of Google's 345 category names"):
            data.resolve(name, mirror=server.url, options=FAST)
    assert server.requests == []
    # A mirror URL becomes one sanitised folder name, whatever its path holds.
    path = data.resolve("cat", mirror=server.url + "x/../../..", options=FAST)
    assert path.parent.parent.parent.parent == cache / "downloads"


# -- sketchgen fetch ------------------------------------------------------------------------


def run_fetch(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    fetch.add_arguments(parser)
    return fetch.run(parser.parse_args(argv))


def test_fetch_prints_the_local_paths_with_progress(server, mirror, cache, capsys):
    assert run_fetch("cat", "The Eiffel Tower", "--format", "raw", "--mirror", server.url) == 0
    out, err = capsys.readouterr()
    paths = [Path(line) for line in out.splitlines()]
    assert [p.name for p in paths] == ["cat.ndjson", "The Eiffel Tower.ndjson"]
    for path in paths:
        assert path.read_bytes() == (mirror / "full/raw" / path.name).read_bytes()
    assert "The Eiffel Tower.ndjson" in err and "100%" in err, "tqdm progress goes to stderr"


def test_fetch_from_a_mirror_folder_prints_its_files(mirror, cache, capsys):
    assert run_fetch("apple", "--format", "bitmap") == 0
    assert capsys.readouterr().out == f"{mirror / 'full/numpy_bitmap/apple.npy'}\n"
    assert not cache.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("cat", "catt"), "unknown category 'catt'; did you mean 'cat'"),
        (("../../etc/passwd",), "unknown category '../../etc/passwd'"),
        (("cat", "--mirror", "ftp://example.org/"), "expected a local folder or an http"),
    ],
)
def test_fetch_rejects_bad_arguments_before_any_download(server, cache, argv, message):
    with pytest.raises(UsageError, match=message):
        run_fetch(*argv, *(() if "--mirror" in argv else ("--mirror", server.url)))
    assert server.requests == [] and not cache.exists()


def test_fetch_reports_a_failed_download_in_one_line(server, cache, capsys):
    assert run_fetch("dog", "--format", "bitmap", "--mirror", server.url) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"sketchgen fetch: error: {server.url}full/numpy_bitmap/dog.npy: HTTP 404 Not Found"
    ]
