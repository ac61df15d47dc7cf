"""The download cache's record of what it holds: one MANIFEST.json per mirror folder.

A cached file is trusted only if the manifest records its sha256; removing a record (or the
whole manifest) makes the file untrusted, so it is set aside and downloaded again.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from sketchgen import errors
from sketchgen.cli import fetch
from sketchgen.data import sources
from sketchgen.data.cache import download, sha256_file
from sketchgen.data.download import DownloadOptions

FAST = DownloadOptions(timeout=5.0, retries=0, backoff=0.0, progress=False)


def mirror_folder(cache: Path) -> Path:
    (folder,) = (cache / "downloads").iterdir()
    return folder


def tamper(path: Path) -> bytes:
    content = bytearray(path.read_bytes())
    content[100] ^= 0x01  # same size, one bit off
    path.write_bytes(bytes(content))
    return bytes(content)


def drop_hash_records(folder: Path, keep: list[Path]) -> None:
    """Delete whatever records hashes in the cache folder (sidecars, manifests), not data."""
    for path in folder.rglob("*"):
        if path.is_file() and path not in keep and not path.name.endswith(".lock"):
            path.unlink()


def test_the_manifest_records_hash_size_and_validator(server, mirror, cache):
    path = sources.resolve("cat", mirror=server.url, options=FAST)
    manifest = json.loads((mirror_folder(cache) / "MANIFEST.json").read_text())
    entry = manifest["files"]["full/simplified/cat.ndjson"]
    assert entry["sha256"] == sha256_file(mirror / "full/simplified/cat.ndjson")
    assert entry["bytes"] == entry["source_bytes"] == path.stat().st_size
    assert entry["validator"].startswith('"') and entry["complete"] is True
    assert not list(path.parent.glob("*.sha256")), "no per-file sidecar to delete"


def test_removing_the_records_does_not_trust_tampered_files_again(server, mirror, cache):
    cat = sources.resolve("cat", mirror=server.url, options=FAST)
    dog = sources.resolve("dog", mirror=server.url, options=FAST)
    tampered = tamper(dog)
    drop_hash_records(mirror_folder(cache), keep=[cat, dog])
    assert sources.resolve("dog", mirror=server.url, options=FAST).read_bytes() == (
        mirror / "full/simplified/dog.ndjson"
    ).read_bytes()
    assert sources.resolve("cat", mirror=server.url, options=FAST) == cat
    assert len(server.requests) == 4, "both files, no longer recorded, were downloaded again"
    aside = [p for p in dog.parent.iterdir() if p.read_bytes() == tampered]
    assert [p.name for p in aside] == ["dog.ndjson.untrusted"], "set aside, not deleted"


def test_a_file_put_into_the_cache_by_hand_is_not_trusted(server, mirror, cache, capsys):
    sources.resolve("cat", mirror=server.url, options=FAST)
    planted = mirror_folder(cache) / "full/simplified/dog.ndjson"
    planted.write_text('{"word": "dog", "drawing": [[[0, 1], [0, 1]]]}\n')
    path = sources.resolve("dog", mirror=server.url, options=FAST)
    assert path.read_bytes() == (mirror / "full/simplified/dog.ndjson").read_bytes()
    err = capsys.readouterr().err.splitlines()
    assert err == [f"sketchgen: {planted} is not in {planted.parents[2] / 'MANIFEST.json'}; "
                   f"moved it to {planted}.untrusted and downloading it again"]


def test_a_damaged_manifest_is_detected(server, cache):
    path = sources.resolve("cat", mirror=server.url, options=FAST)
    manifest_path = mirror_folder(cache) / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    # An edit that keeps the JSON valid: the cat entry now vouches for a tampered file.
    manifest["files"]["full/simplified/cat.ndjson"]["sha256"] = sha256_file(path)[::-1]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(errors.DownloadError, match="MANIFEST.json: damaged") as error:
        sources.resolve("cat", mirror=server.url, options=FAST)
    assert "\n" not in str(error.value) and str(error.value).startswith(str(manifest_path))
    for text in ("{not json", "[" * 100_000 + "]" * 100_000):  # too deep for json's parser
        manifest_path.write_text(text)
        with pytest.raises(errors.DownloadError, match="MANIFEST.json: damaged"):
            sources.resolve("cat", mirror=server.url, options=FAST)
    assert len(server.requests) == 1


@pytest.mark.parametrize("change", ["flip", "truncate"])
def test_a_tampered_cache_is_one_line_naming_the_file(server, cache, capsys, change):
    path = sources.resolve("cat", mirror=server.url, options=FAST)
    if change == "flip":
        tamper(path)
    else:
        path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(errors.DownloadError) as error:
        sources.resolve("cat", mirror=server.url, options=FAST)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    parser = argparse.ArgumentParser()
    fetch.add_arguments(parser)
    assert fetch.run(parser.parse_args(["cat", "--mirror", server.url])) == 1
    assert capsys.readouterr().err == f"sketchgen fetch: error: {message}\n"


def test_an_interrupted_commit_is_finished_not_reported(server, mirror, cache, monkeypatch):
    # Killed between recording the hash and moving the file into place: the next call
    # finds the finished file beside the cached one and completes the move.
    real_replace = os.replace

    def crash_on_final_move(src, dst):
        if str(dst).endswith("cat.ndjson"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_final_move)
    with pytest.raises(KeyboardInterrupt):
        sources.resolve("cat", mirror=server.url, options=FAST)
    monkeypatch.setattr(os, "replace", real_replace)
    path = sources.resolve("cat", mirror=server.url, options=FAST)
    assert path.read_bytes() == (mirror / "full/simplified/cat.ndjson").read_bytes()
    assert len(server.requests) == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["cat.ndjson", "cat.ndjson.lock"]


def test_download_touches_no_folder_outside_the_cache(server, cache, tmp_path):
    # Outside the cache, a file the manifest does not know is the user's, not a stale copy.
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("cat.ndjson", "cat.ndjson.new", "cat.ndjson.part"):
        (mine / name).write_text(f"the user's {name}\n")
    before = {p.name: p.read_text() for p in mine.iterdir()}
    url = server.url + "full/simplified/cat.ndjson"
    for root in (None, mine):
        with pytest.raises(ValueError, match=r"root .* is not inside the cache"):
            download(url, mine / "cat.ndjson", FAST, root=root)
    with pytest.raises(ValueError, match=r"dest .* is not inside root"):
        download(url, mine / "cat.ndjson", FAST, root=cache / "downloads" / "x")
    assert {p.name: p.read_text() for p in mine.iterdir()} == before
    assert server.requests == []
    inside = cache / "downloads" / "by-hand" / "cat.ndjson"
    assert download(url, inside, FAST).read_bytes() == server.root.joinpath(
        "full/simplified/cat.ndjson").read_bytes()
