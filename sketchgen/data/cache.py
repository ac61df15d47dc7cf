"""The download cache: its folder, the manifest that vouches for every file, and its locks.

Files fetched over HTTP live under :func:`cache_dir` (``SKETCHGEN_CACHE``, default
``~/.cache/sketchgen``). Since Google publishes no hashes, each finished file's sha256 is
recorded in its cache folder's ``MANIFEST.json``, and a cached file is used only through that
record. :func:`ensure_cached` makes a cached file hold what is asked for: the whole source,
or a head of it (:mod:`sketchgen.data.heads`) made longer by a later call that asks for more,
fetched by :mod:`sketchgen.data.download` under the file's lock and recorded before it is
moved into place. :mod:`sketchgen.data.sources` decides what is fetched and where.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from sketchgen.data.download import (
    FILE_CHUNK,
    DownloadOptions,
    continue_head,
    download_part,
    resume_state,
    sidecar,
)
from sketchgen.data.heads import Lines, Rows, Want, check_limit, row_bytes, want_for
from sketchgen.errors import DownloadError
from sketchgen.runtime import atomic_write, file_lock

DEFAULT_CACHE = "~/.cache/sketchgen"


def cache_dir() -> Path:
    """The cache root: ``$SKETCHGEN_CACHE``, else ``~/.cache/sketchgen``."""
    return Path(os.environ.get("SKETCHGEN_CACHE") or DEFAULT_CACHE).expanduser()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(FILE_CHUNK):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive lock on ``path.lock``, so parallel processes (e.g. DDP ranks) never write
    the same cached file or manifest at once; the second one finds the finished file."""
    with file_lock(sidecar(path, ".lock")):
        yield


# -- the cache's manifest -------------------------------------------------------------------
# One MANIFEST.json per mirror's cache folder records, for every file, its sha256 and size,
# the source's size and validator (ETag or Last-Modified) and how much of the source it
# holds. A cached file is trusted only through its entry: removing entries (or the whole
# manifest) makes files untrusted, never trusted again, and the manifest's own checksum
# detects a damaged one. This guards against corruption and edits of the cache, not against
# someone who can rewrite both a file and the manifest.

MANIFEST = "MANIFEST.json"
_MANIFEST_FORMAT = 1
_ENTRY_TYPES = {
    "sha256": str,  # of the local file
    "bytes": int,  # the local file's size
    "source_bytes": int,  # the source's size, as the server announced it
    "source_end": int,  # the local file was made from the source's bytes [0, source_end)
    "validator": (str, type(None)),  # the source's ETag or Last-Modified; None: it had none
    "complete": bool,  # the whole source; else a head of it
    "records": (int, type(None)),  # a head's lines (ndjson) or rows (npy); None if complete
}


def _manifest_checksum(files: dict) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def _intact(stored: object) -> bool:
    """Whether a parsed manifest is one this module wrote, checksum included."""
    if not isinstance(stored, dict) or stored.get("format") != _MANIFEST_FORMAT:
        return False
    files = stored.get("files")
    return (
        isinstance(files, dict)
        and all(
            isinstance(entry, dict)
            and all(isinstance(entry.get(key), kind) for key, kind in _ENTRY_TYPES.items())
            and isinstance(entry.get("npy_header", ""), str)
            for entry in files.values()
        )
        and stored.get("sha256") == _manifest_checksum(files)
    )


def _read_manifest(root: Path) -> dict[str, dict]:
    """The entries of ``root``'s manifest, ``{}`` if it has none; DownloadError if damaged."""
    path = root / MANIFEST
    try:
        stored = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (ValueError, RecursionError):  # not JSON, or nested too deep for json's parser
        stored = None
    if not _intact(stored):
        raise DownloadError(
            f"{path}: damaged (not as sketchgen wrote it, or its checksum does not match); "
            f"delete the folder {root} to download its files again"
        )
    return stored["files"]


def _record(root: Path, relative: str, entry: dict) -> None:
    """Set one entry of ``root``'s manifest: read, change and replace it under its lock
    (other processes may be recording other files of the same mirror)."""
    with _locked(root / MANIFEST):
        files = _read_manifest(root)
        files[relative] = entry
        stored = {"format": _MANIFEST_FORMAT, "files": files, "sha256": _manifest_checksum(files)}
        text = json.dumps(stored, indent=1, sort_keys=True)
        atomic_write(root / MANIFEST, lambda tmp: tmp.write_text(text))


def _staged(dest: Path) -> Path:
    """Where a finished file waits between being recorded and being moved to ``dest``."""
    return sidecar(dest, ".new")


def _finish_commit(dest: Path, entry: dict | None) -> None:
    """Complete a move cut short (a run stopped between recording a file and moving it into
    place), or remove a staged file that was never recorded."""
    staged = _staged(dest)
    if not staged.exists():
        return
    recorded = entry is not None and staged.stat().st_size == entry["bytes"]
    if recorded and sha256_file(staged) == entry["sha256"]:
        os.replace(staged, dest)
    else:
        staged.unlink()


def _set_aside(dest: Path, manifest: Path) -> None:
    """Move a file the manifest does not know out of the way, keeping it."""
    names = (f"{dest.name}.untrusted" + (f"-{n}" if n else "") for n in itertools.count())
    aside = next(dest.with_name(name) for name in names if not dest.with_name(name).exists())
    os.rename(dest, aside)
    print(
        f"sketchgen: {dest} is not in {manifest}; moved it to {aside} and downloading it again",
        file=sys.stderr,
    )


def _trusted(root: Path, dest: Path) -> dict | None:
    """``dest``'s manifest entry once ``dest`` is checked against it; None if there is
    nothing to use (no file, or one the manifest does not know, which is set aside).
    DownloadError if ``dest`` is not what was recorded."""
    entry = _read_manifest(root).get(dest.relative_to(root).as_posix())
    _finish_commit(dest, entry)
    if not dest.exists():
        return None
    if entry is None:
        _set_aside(dest, root / MANIFEST)
        return None
    recorded = f"recorded when it was downloaded (in {root / MANIFEST})"
    size = dest.stat().st_size
    if size != entry["bytes"]:
        problem = f"holds {size} bytes, not the {entry['bytes']} {recorded}"
    elif (actual := sha256_file(dest)) != entry["sha256"]:
        problem = f"sha256 {actual} does not match {entry['sha256']} {recorded}"
    else:
        return entry
    raise DownloadError(
        f"{dest}: {problem}; the cached file is corrupt or was modified -- delete it to "
        "download again"
    )


# -- filling the cache ----------------------------------------------------------------------


def _write_npy_head(staged: Path, part: Path, want: Rows, rows: int) -> None:
    """A valid .npy of the first ``rows`` rows: the source's layout, its row count patched."""
    shape, dtype = want.layout
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": (rows, *shape[1:])}
    with open(staged, "wb") as out, open(part, "rb") as source:
        np.lib.format.write_array_header_1_0(out, header)
        source.seek(want.header_end)
        remaining = rows * row_bytes(shape, dtype)
        while remaining and (block := source.read(min(FILE_CHUNK, remaining))):
            out.write(block)
            remaining -= len(block)


def _stage(url: str, dest: Path, part: Path, state: dict, want: Want) -> dict:
    """Turn what ``part`` holds into the file to cache (at ``_staged(dest)``) and return its
    entry but for hash and size."""
    held, total = part.stat().st_size, state["total"]
    entry = {"source_bytes": total, "validator": state["validator"]}
    staged = _staged(dest)
    if held == total:
        entry |= {"complete": True, "records": None, "source_end": total}
        os.replace(part, staged)
    elif isinstance(want, Lines):  # cut after the last complete line
        os.truncate(part, want.cut)
        entry |= {"complete": False, "records": want.lines, "source_end": want.cut}
        os.replace(part, staged)
    elif isinstance(want, Rows) and want.layout is not None:
        shape, dtype = want.layout
        rows = min((held - want.header_end) // row_bytes(shape, dtype), shape[0])
        _write_npy_head(staged, part, want, rows)
        entry |= {
            "complete": rows == shape[0],
            "records": None if rows == shape[0] else rows,
            "source_end": want.header_end + rows * row_bytes(shape, dtype),
            "npy_header": want.prefix[: want.header_end].decode("latin-1"),
        }
        part.unlink()
    else:  # never recorded: a file that is not all the server announced
        raise DownloadError(f"{url}: received {held} of the {total} bytes the server announced")
    sidecar(part, ".json").unlink(missing_ok=True)
    return entry


def _commit(root: Path, dest: Path, entry: dict) -> dict:
    """Record the staged file, then move it to ``dest``: a run stopped between the two
    leaves a staged file that the next call moves (``_finish_commit``), never a file the
    manifest does not vouch for."""
    staged = _staged(dest)
    entry = {**entry, "sha256": sha256_file(staged), "bytes": staged.stat().st_size}
    _record(root, dest.relative_to(root).as_posix(), entry)
    os.replace(staged, dest)
    return entry


def ensure_cached(
    url: str, dest: Path, root: Path, options: DownloadOptions, limit: int | None
) -> int | None:
    """Make ``dest`` (in ``root``, whose manifest vouches for it) hold the whole of ``url``,
    or with ``limit`` at least its first ``limit`` records (see :func:`download`); return
    the records a head holds, None for all."""
    entry = _cached_entry(url, dest, root, options, limit)
    return None if entry["complete"] else entry["records"]


def _cached_entry(
    url: str, dest: Path, root: Path, options: DownloadOptions, limit: int | None
) -> dict:
    """``dest``'s manifest entry once it holds what :func:`ensure_cached` promises."""
    want = want_for(dest, limit, options.chunk_bytes)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest):
        entry = _trusted(root, dest)
        if entry is not None and (
            entry["complete"] or (limit is not None and entry["records"] >= limit)
        ):
            return entry
        part = sidecar(dest, ".part")
        if entry is not None and resume_state(part, url) is None:
            continue_head(dest, part, entry, url)
        no_validator = entry is not None and entry["validator"] is None
        state = download_part(url, part, want, options, no_validator)
        return _commit(root, dest, _stage(url, dest, part, state, want))


def _check_inside(path: Path, folder: Path, name: str, folder_name: str) -> None:
    """ValueError unless ``path`` is ``folder`` or lies in it (lexically, as safe_join)."""
    if not Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder)):
        raise ValueError(f"{name} {path} is not inside {folder_name} {folder}")


def download(
    url: str,
    dest: Path,
    options: DownloadOptions | None = None,
    limit: int | None = None,
    root: Path | None = None,
) -> Path:
    """Download ``url`` to ``dest`` unless the cache holds it already, and return ``dest``.

    With ``limit``, an ``.ndjson`` or ``.npy`` file is fetched as a *head*: HTTP ranges for
    its first ``limit`` lines (cut after the last complete one) or rows (a valid .npy with
    the header's row count patched), grown on a later call that asks for more; other files,
    and ``limit=None``, mean the whole file. Bytes go to ``dest.part`` (resumed with a Range
    and If-Range on the next attempt or call, restarted when the file has no validator or
    changed) and reach ``dest`` only once complete. ``root``'s ``MANIFEST.json`` (default:
    ``dest``'s folder) records every file's sha256, checked on every later call: a changed
    file raises :class:`DownloadError`, a file with no entry is set aside and fetched again.
    Since files are set aside and replaced there, ``root`` must be inside :func:`cache_dir`.
    """
    check_limit(limit)
    dest = Path(dest)
    root = dest.parent if root is None else Path(root)
    _check_inside(root, cache_dir(), "root", "the cache")
    _check_inside(dest, root, "dest", "root")
    ensure_cached(url, dest, root, options or DownloadOptions(), limit)
    return dest


__all__ = [
    "DEFAULT_CACHE",
    "MANIFEST",
    "cache_dir",
    "download",
    "ensure_cached",
    "sha256_file",
]
