"""The HTTP path of sketchgen.data and ``sketchgen fetch``, against a loopback server.

The server (``tests/http_mirror.py``, the ``server`` fixture) serves the shared mirror folder
on 127.0.0.1 and can misbehave on demand.
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
from pathlib import Path

import pytest
from http_mirror import serve

from sketchgen import errors
from sketchgen.cli import fetch
from sketchgen.data import download, sources
from sketchgen.errors import UsageError

FAST = download.DownloadOptions(timeout=5.0, retries=0, backoff=0.0, progress=False)


def manifest_sha256(mirror: Path, relative: str) -> str:
    for line in (mirror / "MANIFEST.sha256").read_text().splitlines():
        digest, name = line.split("  ", 1)
        if name == relative:
            return digest
    raise AssertionError(f"{relative} is not in the mirror's MANIFEST.sha256")


def recorded_sha256(path: Path) -> str:
    """The hash the cache's manifest (in the mirror's cache folder) records for ``path``."""
    root = next(p for p in path.parents if (p / "MANIFEST.json").exists())
    files = json.loads((root / "MANIFEST.json").read_text())["files"]
    return files[path.relative_to(root).as_posix()]["sha256"]


def leftovers(path: Path) -> list[Path]:
    return [p for p in path.parent.iterdir() if p.name.endswith((".part", ".part.json"))]


# -- downloads ------------------------------------------------------------------------------


def test_download_lands_in_the_cache_with_its_hash_recorded(server, mirror, cache):
    path = sources.resolve("coffee cup", mirror=server.url, options=FAST)
    assert path.is_relative_to(cache / "downloads") and path.name == "coffee cup.ndjson"
    assert path.read_bytes() == (mirror / "full/simplified/coffee cup.ndjson").read_bytes()
    assert server.requests[0]["path"] == "/full/simplified/coffee%20cup.ndjson"
    assert recorded_sha256(path) == manifest_sha256(mirror, "full/simplified/coffee cup.ndjson")
    assert leftovers(path) == []

    assert sources.resolve("coffee cup", mirror=server.url, options=FAST) == path
    assert len(server.requests) == 1, "a verified cached file is not downloaded again"


def test_interrupted_download_resumes_where_it_stopped(server, mirror, cache):
    full = (mirror / "full/raw/cat.ndjson").read_bytes()
    server.drop_after = [60_000]
    with pytest.raises(errors.DownloadError, match=f"received 60000 of the {len(full)} bytes"):
        sources.resolve("cat", "raw", mirror=server.url, options=FAST)
    (part,) = (cache / "downloads").rglob("cat.ndjson.part")
    assert part.stat().st_size == 60_000
    assert not part.with_suffix("").exists(), "an incomplete file never takes the final name"

    path = sources.resolve("cat", "raw", mirror=server.url, options=FAST)
    resumed = server.requests[1]
    assert (resumed["range"], resumed["status"]) == ("bytes=60000-", 206)
    assert resumed["if_range"], "the resume names the version it continues"
    assert path.read_bytes() == full
    assert leftovers(path) == []


def test_retries_resume_within_one_call(server, mirror, cache):
    server.drop_after = [40_000, 40_000]
    options = download.DownloadOptions(timeout=5.0, retries=2, backoff=0.0, progress=False)
    path = sources.resolve("cat", "raw", mirror=server.url, options=options)
    assert [r["range"] for r in server.requests] == [None, "bytes=40000-", "bytes=80000-"]
    assert path.read_bytes() == (mirror / "full/raw/cat.ndjson").read_bytes()


def test_a_file_changed_on_the_server_is_downloaded_afresh(server, mirror, cache):
    server.drop_after = [60_000]
    with pytest.raises(errors.DownloadError):
        sources.resolve("cat", "raw", mirror=server.url, options=FAST)
    server.version = 2  # new ETag: the 60,000 bytes held belong to an older file
    path = sources.resolve("cat", "raw", mirror=server.url, options=FAST)
    assert (server.requests[1]["range"], server.requests[1]["status"]) == ("bytes=60000-", 200)
    assert path.read_bytes() == (mirror / "full/raw/cat.ndjson").read_bytes()


@pytest.fixture
def changing(tmp_path, mirror):
    """A server over a mirror folder of this test's own, whose raw cat file the test rewrites."""
    root = tmp_path / "changing-mirror"
    (root / "full/raw").mkdir(parents=True)
    shutil.copy(mirror / "full/raw/cat.ndjson", root / "full/raw/cat.ndjson")
    with serve(root) as httpd:
        yield httpd, root / "full/raw/cat.ndjson"


def new_version(path: Path) -> bytes:
    """Rewrite ``path`` as another file of the same size (its lines in reverse order)."""
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(reversed(lines)))
    return path.read_bytes()


@pytest.mark.parametrize("broken", ["validators", "if_range"])
def test_a_resume_the_server_cannot_confirm_starts_again(changing, cache, broken):
    # No ETag/Last-Modified (nothing to send If-Range with), or a server ignoring If-Range:
    # appending to the bytes held would mix two versions of the file.
    server, source = changing
    setattr(server, broken, False)
    server.drop_after = [60_000]
    with pytest.raises(errors.DownloadError, match="received 60000 of"):
        sources.resolve("cat", "raw", mirror=server.url, options=FAST)
    changed = new_version(source)
    path = sources.resolve("cat", "raw", mirror=server.url, options=FAST)
    assert path.read_bytes() == changed, "the result holds one version of the file"
    resumes = [r for r in server.requests[1:] if r["range"] and r["status"] == 206]
    assert all(r["if_range"] for r in resumes), "a Range without If-Range is never sent"


@pytest.mark.parametrize("loss", ["deleted", "too deep"])
def test_a_lost_resume_state_starts_again(changing, cache, loss):
    server, source = changing
    server.drop_after = [60_000]
    with pytest.raises(errors.DownloadError):
        sources.resolve("cat", "raw", mirror=server.url, options=FAST)
    (state,) = (cache / "downloads").rglob("cat.ndjson.part.json")
    if loss == "deleted":
        state.unlink()
    else:  # nested beyond what json's parser takes
        state.write_text("[" * 100_000 + "]" * 100_000)
    changed = new_version(source)
    path = sources.resolve("cat", "raw", mirror=server.url, options=FAST)
    assert server.requests[1]["range"] is None and path.read_bytes() == changed


def test_a_run_killed_as_a_changed_file_starts_again_mixes_no_versions(changing, cache,
                                                                      monkeypatch):
    # Killed after the new version's first answer, before its first byte was written:
    # the bytes held of the old version must not pass for the start of the new one.
    server, source = changing
    server.drop_after = [60_000]
    with pytest.raises(errors.DownloadError):
        sources.resolve("cat", "raw", mirror=server.url, options=FAST)
    changed = new_version(source)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    receive = download._receive
    monkeypatch.setattr(download, "_receive", killed)
    with pytest.raises(KeyboardInterrupt):
        sources.resolve("cat", "raw", mirror=server.url, options=FAST)
    assert server.requests[1]["status"] == 200, "the server sent the new version whole"
    monkeypatch.setattr(download, "_receive", receive)
    path = sources.resolve("cat", "raw", mirror=server.url, options=FAST)
    assert path.read_bytes() == changed


def test_a_huge_announced_size_is_refused_before_reading(server, cache):
    server.extra_length = 10 << 30  # "10 GiB"
    with pytest.raises(errors.DownloadError, match=r"cat\.ndjson: .*more than max_bytes=") as error:
        sources.resolve("cat", mirror=server.url, options=FAST)
    assert "\n" not in str(error.value) and str(error.value).startswith(server.url)
    assert [p.name for p in (cache / "downloads").rglob("cat.ndjson*")] == ["cat.ndjson.lock"]


def test_a_download_that_does_not_fit_on_the_disk_is_refused(server, cache, monkeypatch):
    almost_full = shutil.disk_usage(cache.parent)._replace(free=1000)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: almost_full)
    with pytest.raises(errors.DownloadError, match=r"cat\.ndjson: needs \d+ more bytes, .* 1000"):
        sources.resolve("cat", mirror=server.url, options=FAST)
    assert list((cache / "downloads").rglob("cat.ndjson")) == []


@pytest.mark.parametrize("field", ["chunk_bytes", "max_bytes", "timeout", "retries"])
def test_download_options_out_of_range_are_refused(field):
    with pytest.raises(ValueError, match=f"DownloadOptions.{field} is out of range: -1"):
        download.DownloadOptions(**{field: -1})


@pytest.mark.parametrize(
    ("field", "value"),
    [("timeout", "5"), ("timeout", float("inf")), ("retries", 1.5), ("chunk_bytes", True),
     ("max_bytes", 2.0**40), ("progress", "no")],
)
def test_download_options_of_the_wrong_type_are_refused(field, value):
    with pytest.raises(ValueError, match=rf"DownloadOptions\.{field} must be .*: {value!r}"):
        download.DownloadOptions(**{field: value})


def test_size_mismatch_is_detected(server, mirror, cache):
    size = (mirror / "full/simplified/cat.ndjson").stat().st_size
    server.extra_length = 100
    with pytest.raises(errors.DownloadError, match=f"received {size} of the {size + 100} bytes"):
        sources.resolve("cat", mirror=server.url, options=FAST)
    assert list((cache / "downloads").rglob("cat.ndjson")) == []
    assert list((cache / "downloads").rglob("MANIFEST.json")) == [], "no hash recorded"


def test_corrupted_cached_file_is_detected(server, cache):
    path = sources.resolve("cat", mirror=server.url, options=FAST)
    content = bytearray(path.read_bytes())
    content[100] ^= 0x01  # same size, one bit off
    path.write_bytes(bytes(content))
    with pytest.raises(errors.DownloadError, match="does not match .* recorded when it was"):
        sources.resolve("cat", mirror=server.url, options=FAST)
    assert len(server.requests) == 1, "a corrupt file is reported, not silently replaced"


def test_missing_remote_file_fails_without_retrying(server, cache):
    options = download.DownloadOptions(timeout=5.0, retries=3, backoff=0.0, progress=False)
    with pytest.raises(errors.DownloadError, match="HTTP 404"):
        sources.resolve("dog", "bitmap", mirror=server.url, options=options)
    assert len(server.requests) == 1


def test_an_answer_that_is_no_http_is_a_one_line_download_error(server, cache):
    options = download.DownloadOptions(timeout=5.0, retries=1, backoff=0.0, progress=False)
    server.malformed = True
    with pytest.raises(errors.DownloadError) as error:
        sources.resolve("cat", mirror=server.url, options=options)
    message = str(error.value)
    assert message.startswith(f"{server.url}full/simplified/cat.ndjson: ") and "\n" not in message
    assert "not an HTTP status line" in message and len(server.requests) == 2, "retried once"


def test_parallel_downloads_of_one_file_share_one_transfer(server, mirror, cache):
    results: list[Path] = []

    def fetch_cat() -> None:
        results.append(sources.resolve("cat", "raw", mirror=server.url, options=FAST))

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
            sources.resolve(name, mirror=server.url, options=FAST)
    assert server.requests == []
    # A mirror URL becomes one sanitised folder name, whatever its path holds.
    path = sources.resolve("cat", mirror=server.url + "x/../../..", options=FAST)
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
