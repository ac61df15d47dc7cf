"""Downloads into a cache folder that vouches for what it holds.

Bytes of a URL go to ``<file>.part``: resumed with HTTP ranges that name the version they
continue (If-Range, so a file that changed restarts from byte 0, and one without a validator
is never pieced together), checked against the size the server announced, capped
(:class:`DownloadOptions`) and refused if the disk cannot take them. With a record limit,
only a *head* is fetched -- the first lines of an ``.ndjson`` file (cut after the last whole
one) or rows of an ``.npy`` (a valid file, its header's row count patched) -- and made
longer by a later call that asks for more. Since Google publishes no hashes, each finished
file's sha256 is recorded in its cache folder's ``MANIFEST.json``, and a cached file is used
only through that record.

:mod:`sketchgen.data.datasets` decides what is fetched and where (category names, mirrors, the
cache's layout); this module only moves bytes from a URL into a file it can vouch for.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import itertools
import json
import math
import os
import re
import shutil
import sys
import time
import tokenize
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sketchgen.errors import DownloadError
from sketchgen.runtime import file_lock

_HASH_CHUNK = 1 << 20  # bytes read at a time to hash or copy a file


class _Retry(Exception):
    """A transient failure: the next attempt resumes from what the ``.part`` file holds."""


class _Restart(Exception):
    """The server's answer cannot continue the bytes held: start again from byte 0."""


@dataclass(frozen=True)
class DownloadOptions:
    timeout: float = 60.0  # seconds of silence before a connection counts as dropped
    retries: int = 3  # further attempts after a failure, each resuming the partial file
    backoff: float = 1.0  # seconds before the first retry, doubled after each one
    chunk_bytes: int = 1 << 20  # read size, and a head's first request (a few thousand lines)
    progress: bool = True  # tqdm progress bar on stderr
    # No file or head larger than this: Google's largest files (raw ndjson) are about 1 GB,
    # so 4 GiB leaves room for them while a server announcing 10 GiB cannot fill the disk.
    max_bytes: int = 4 << 30

    def __post_init__(self) -> None:
        for name, kind in _OPTION_KINDS.items():
            value = getattr(self, name)
            if not _KIND_CHECKS[kind](value):
                raise ValueError(f"DownloadOptions.{name} must be {kind}: {value!r}")
        valid = {
            "timeout": self.timeout > 0,
            "retries": self.retries >= 0,
            "backoff": self.backoff >= 0,
            "chunk_bytes": self.chunk_bytes >= 1,
            "max_bytes": self.max_bytes >= 1,
        }
        wrong = [name for name, ok in valid.items() if not ok]
        if wrong:
            value = getattr(self, wrong[0])
            raise ValueError(f"DownloadOptions.{wrong[0]} is out of range: {value!r}")


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_KIND_CHECKS = {
    "an integer": _is_integer,
    "a finite number": lambda v: _is_integer(v) or (isinstance(v, float) and math.isfinite(v)),
    "True or False": lambda v: isinstance(v, bool),
}
_OPTION_KINDS = {
    "timeout": "a finite number",
    "retries": "an integer",
    "backoff": "a finite number",
    "chunk_bytes": "an integer",
    "progress": "True or False",
    "max_bytes": "an integer",
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(_HASH_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(dest: Path, suffix: str) -> Path:
    return dest.with_name(dest.name + suffix)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive lock on ``path.lock``, so parallel processes (e.g. DDP ranks) never write
    the same cached file or manifest at once; the second one finds the finished file."""
    with file_lock(_sidecar(path, ".lock")):
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
        _write_atomic(root / MANIFEST, json.dumps(stored, indent=1, sort_keys=True).encode())


def _staged(dest: Path) -> Path:
    """Where a finished file waits between being recorded and being moved to ``dest``."""
    return _sidecar(dest, ".new")


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


# -- what a download asks for ---------------------------------------------------------------
# ``feed`` sees every byte of the source held, in order; ``end`` says how many bytes of the
# source must be held, given how many are (``total``: the source's size, None while unknown).


class _Whole:
    """The whole file."""

    def reset(self) -> None:
        pass

    def feed(self, block: bytes) -> None:
        pass

    def end(self, held: int, total: int | None) -> int | None:
        return total


class _Lines:
    """An ndjson head: at least ``limit`` complete lines."""

    def __init__(self, limit: int, chunk: int):
        self.limit, self.chunk = limit, chunk
        self.reset()

    def reset(self) -> None:
        self.lines = 0  # complete lines held
        self.cut = 0  # bytes up to the end of the last complete line
        self.seen = 0  # bytes fed

    def feed(self, block: bytes) -> None:
        if count := block.count(b"\n"):
            self.lines += count
            self.cut = self.seen + block.rindex(b"\n") + 1
        self.seen += len(block)

    def end(self, held: int, total: int | None) -> int:
        if self.lines >= self.limit:
            return held
        if self.lines == 0:  # no line end seen yet: a chunk, then double what is held
            want = held + max(self.chunk, held)
        else:  # the missing lines at the average length so far, plus an eighth (< a chunk)
            estimate = math.ceil((self.limit - self.lines) * self.cut / self.lines)
            want = held + estimate + min(estimate // 8, self.chunk)
        return want if total is None else min(want, total)


_NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADER_MAX = 12 + 10_000  # the preamble plus numpy's own limit on a header's size
# What numpy's .npy header parser raises for a bad header: a ValueError, except for text it
# cannot tokenize (an unbalanced bracket), which fails before numpy's own checks.
NPY_HEADER_ERRORS = (ValueError, tokenize.TokenError)


def _npy_header_end(prefix: bytes) -> int | None:
    """Where the header of the .npy file starting with ``prefix`` (12+ bytes) ends; None
    for anything but a version 1 or 2 .npy file."""
    if prefix[:6] != _NPY_MAGIC or prefix[6] not in (1, 2):
        return None
    if prefix[6] == 1:
        return 10 + int.from_bytes(prefix[8:10], "little")
    return 12 + int.from_bytes(prefix[8:12], "little")


def _row_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(shape[1:]) * dtype.itemsize


def _npy_layout(header: bytes) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype from a whole .npy header (parsed by numpy, which evaluates no code),
    None unless rows can be cut from the file: C order, no Python objects, non-empty rows
    (numpy's parser lets negative sizes through)."""
    stream = io.BytesIO(header)
    npy = np.lib.format
    major, _ = npy.read_magic(stream)
    read = npy.read_array_header_1_0 if major == 1 else npy.read_array_header_2_0
    try:
        shape, fortran_order, dtype = read(stream)
    except NPY_HEADER_ERRORS:
        return None
    cuttable = shape and min(shape) >= 0 and _row_bytes(shape, dtype) > 0
    if fortran_order or dtype.hasobject or not cuttable:
        return None
    return shape, dtype


class _Rows:
    """An .npy head: at least ``limit`` rows, as the file's header lays them out; the whole
    file if the header is not one rows can be cut from."""

    def __init__(self, limit: int, chunk: int):
        self.limit, self.chunk = limit, chunk
        self.reset()

    def reset(self) -> None:
        self.prefix = b""  # the first bytes, until the header is read
        self.header_end: int | None = None
        self.layout: tuple[tuple[int, ...], np.dtype] | None = None
        self.whole = False  # not an .npy file rows can be cut from

    def feed(self, block: bytes) -> None:
        if self.layout is not None or self.whole:
            return
        self.prefix += block[: _NPY_HEADER_MAX - len(self.prefix)]
        if self.header_end is None and len(self.prefix) >= 12:
            self.header_end = _npy_header_end(self.prefix)
            self.whole = self.header_end is None or self.header_end > _NPY_HEADER_MAX
        if not self.whole and self.header_end and len(self.prefix) >= self.header_end:
            self.layout = _npy_layout(self.prefix[: self.header_end])
            self.whole = self.layout is None

    def end(self, held: int, total: int | None) -> int | None:
        if self.whole:
            return total
        if self.layout is None:
            want = max(held + self.chunk, self.header_end or 0)
        else:
            shape, dtype = self.layout
            want = self.header_end + min(self.limit, shape[0]) * _row_bytes(shape, dtype)
        return want if total is None else min(want, total)


_Want = _Whole | _Lines | _Rows


def _want(dest: Path, limit: int | None, chunk: int) -> _Want:
    """What to fetch for ``limit`` records of ``dest``'s kind of file. Sketch-RNN .npz files
    are zip archives, whose index is at their end: they are always fetched whole."""
    if limit is None:
        return _Whole()
    if dest.name.endswith(".ndjson"):
        return _Lines(limit, chunk)
    if dest.name.endswith(".npy"):
        return _Rows(limit, chunk)
    return _Whole()


# -- requests -------------------------------------------------------------------------------


def _validator(response: http.client.HTTPResponse) -> str | None:
    """The response's strong validator (If-Range takes no weak ETag), None if it has none."""
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return response.headers.get("Last-Modified")


def _content_range(response: http.client.HTTPResponse) -> tuple[int, int, int | None] | None:
    """``(first, end, total)`` from a 206's Content-Range (``end`` exclusive), None if it is
    absent or malformed."""
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", ""))
    if not match or int(match[2]) < int(match[1]):
        return None
    total = None if match[3] == "*" else int(match[3])
    if total is not None and int(match[2]) >= total:
        return None
    return int(match[1]), int(match[2]) + 1, total


def _open(
    url: str, start: int, stop: int | None, validator: str | None, timeout: float
) -> http.client.HTTPResponse:
    """GET bytes ``[start, stop)`` of ``url`` (to its end if ``stop`` is None). A request
    continuing held bytes names their version, so a server whose file changed sends the
    whole file instead; callers continue only bytes that came with a validator."""
    headers = {"User-Agent": "sketchgen"}
    if start or stop is not None:
        headers["Range"] = f"bytes={start}-{'' if stop is None else stop - 1}"
    if start:
        headers["If-Range"] = validator
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _answer(
    response: http.client.HTTPResponse, url: str, held: int, state: dict | None
) -> tuple[int, int, dict]:
    """Where the body starts and ends in the source, and the source's state (url, total,
    validator); _Restart if a range answer does not continue the bytes held."""
    validator = _validator(response)
    if response.status == 206:
        span = _content_range(response)
        if span is None or span[2] is None:
            raise DownloadError(
                f"{url}: a range answer without a usable Content-Range "
                f"({response.headers.get('Content-Range')!r})"
            )
        first, end, total = span
        if held and (first, total, validator) != (held, state["total"], state["validator"]):
            raise _Restart
        if first != held:
            raise DownloadError(f"{url}: the server sent bytes from {first}, not from {held}")
        return first, end, {"url": url, "total": total, "validator": validator}
    # 200: the whole file from byte 0 (a fresh download, a changed file, or Range ignored)
    length = response.headers.get("Content-Length")
    if length is None or not length.isdigit():
        raise DownloadError(f"{url}: no Content-Length, so the download cannot be checked")
    total = int(length)
    return 0, total, {"url": url, "total": total, "validator": validator}


def _too_big(url: str, size: int, total: int, options: DownloadOptions) -> DownloadError:
    what = f"the server announces {total} bytes" if size >= total else f"{size} bytes are needed"
    return DownloadError(f"{url}: {what}, more than max_bytes={options.max_bytes}")


def _check_room(
    url: str, part: Path, start: int, size: int, total: int, options: DownloadOptions
) -> None:
    """Refuse, before reading a body, a file the cap or the free disk space cannot take."""
    if size > options.max_bytes:
        raise _too_big(url, size, total, options)
    free = shutil.disk_usage(part.parent).free
    if size - start > free:
        raise DownloadError(
            f"{url}: needs {size - start} more bytes, but {part.parent} has {free} free"
        )


def _receive(
    response: http.client.HTTPResponse,
    url: str,
    part: Path,
    start: int,
    stop: int,
    total: int,
    want: _Want,
    options: DownloadOptions,
) -> int:
    """Append the body to ``part`` (which holds ``start`` bytes) until it holds ``stop``
    bytes or what ``want`` asks for, and return what it holds. The rest of a longer body is
    left unread: closing the response drops the connection."""
    held = start
    with (
        open(part, "ab" if start else "wb") as out,
        tqdm(
            total=stop,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name.removesuffix(".part"),
            file=sys.stderr,
            disable=not options.progress,
        ) as bar,
    ):
        while held < stop and held < want.end(held, total):
            try:
                block = response.read(min(options.chunk_bytes, stop - held))
            except (http.client.HTTPException, OSError) as error:
                out.flush()
                raise _Retry(f"connection lost ({error!r})") from None
            if not block:
                break
            out.write(block)
            want.feed(block)
            held += len(block)
            bar.update(len(block))
            if held > options.max_bytes:
                raise _too_big(url, held, total, options)
    return held


def _resume_state(part: Path, url: str) -> dict | None:
    """What the first response said about the source of ``part`` (url, total, validator),
    if ``part`` can be continued: not without that record, for another URL, or without a
    validator (nothing would tell a changed file from the one the bytes came from)."""
    try:
        state = json.loads(_sidecar(part, ".json").read_text())
    except (OSError, ValueError, RecursionError):
        return None
    usable = (
        isinstance(state, dict)
        and state.get("url") == url
        and isinstance(state.get("validator"), str)
        and isinstance(state.get("total"), int)
        and part.exists()
        and 0 < part.stat().st_size <= state["total"]
    )
    return state if usable else None


def _discard_partial(part: Path) -> None:
    part.unlink(missing_ok=True)
    _sidecar(part, ".json").unlink(missing_ok=True)


def _step(
    url: str,
    part: Path,
    held: int,
    stop: int | None,
    state: dict | None,
    want: _Want,
    options: DownloadOptions,
) -> tuple[int, dict]:
    """One request, for bytes ``[held, stop)``; returns what ``part`` then holds and the
    source's state. _Restart if the answer cannot continue the bytes held."""
    validator = state["validator"] if state else None
    try:
        response = _open(url, held, stop, validator, options.timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and held:  # the bytes held do not fit the file any more
            raise _Restart from None
        if error.code >= 500:
            raise _Retry(f"HTTP {error.code} {error.reason}") from None
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        raise _Retry(f"cannot connect ({getattr(error, 'reason', error)})") from None
    except http.client.HTTPException as error:  # no HTTP answer: a bad status line, headers
        raise _Retry(f"a malformed answer ({error!r})") from None
    with response:
        first, last, answered = _answer(response, url, held, state)
        total = answered["total"]
        if first == 0:  # a first answer, or the whole of a changed file
            want.reset()
        end = want.end(first, total)
        _check_room(url, part, first, last if end is None else min(end, last), total, options)
        if first == 0:
            # Bytes held of another version go before the new state names them as its own.
            part.unlink(missing_ok=True)
            state = answered
            _write_atomic(_sidecar(part, ".json"), json.dumps(state).encode())
        held = _receive(response, url, part, first, last, total, want, options)
    if held < last and held < want.end(held, total):
        raise _Retry(f"received {held} of the {last} bytes the server announced")
    return held, state


def _fill(url: str, part: Path, want: _Want, options: DownloadOptions, one_request: bool) -> dict:
    """Make ``part`` hold the start of the source that ``want`` asks for, all of it from
    one version of the file, and return the source's state. Held bytes are continued only
    with the validator they came with (If-Range); when the file has none, or changed, it
    starts again from byte 0. ``one_request``: the file is known to have no validator, so
    one request from byte 0 is read as far as needed. Raises _Retry on a transient
    failure."""
    state = _resume_state(part, url)
    held = part.stat().st_size if state else 0
    want.reset()
    if held:
        with open(part, "rb") as stream:
            while block := stream.read(_HASH_CHUNK):
                want.feed(block)
    restarts = 0
    while True:
        total = state["total"] if state else None
        end = want.end(held, total)
        if state is not None and held >= end:
            return state
        try:
            if held and state["validator"] is None:
                one_request = True  # nothing ties two requests to one version of the file
                raise _Restart
            whole_rest = one_request or end is None or (total is not None and end >= total)
            held, state = _step(url, part, held, None if whole_rest else end, state, want,
                                options)
        except _Restart:
            restarts += 1
            if restarts > 2:
                raise _Retry("the server's answers do not continue the bytes held") from None
            _discard_partial(part)
            held, state = 0, None
            want.reset()


def _with_retries(
    url: str, part: Path, want: _Want, options: DownloadOptions, one_request: bool
) -> dict:
    for attempt in itertools.count():
        try:
            return _fill(url, part, want, options, one_request)
        except _Retry as error:
            if attempt >= options.retries:
                raise DownloadError(
                    f"{url}: {error} after {attempt + 1} attempt(s); "
                    f"run again to resume from {part}"
                ) from None
            time.sleep(options.backoff * 2**attempt)


# -- cached files ---------------------------------------------------------------------------


def _continue_head(dest: Path, part: Path, entry: dict, url: str) -> None:
    """Put the source bytes a trusted head was made from back into ``part``, so that making
    the head longer asks only for what follows it (with If-Range: a changed file restarts).
    A head of a file without a validator cannot be continued."""
    if entry["validator"] is None:
        return
    with open(part, "wb") as out, open(dest, "rb") as head:
        if "npy_header" in entry:  # the source's own header, then the rows
            out.write(entry["npy_header"].encode("latin-1"))
            head.seek(_npy_header_end(head.read(12)))
        shutil.copyfileobj(head, out)
    state = {"url": url, "total": entry["source_bytes"], "validator": entry["validator"]}
    _write_atomic(_sidecar(part, ".json"), json.dumps(state).encode())


def _write_npy_head(staged: Path, part: Path, want: _Rows, rows: int) -> None:
    """A valid .npy of the first ``rows`` rows: the source's layout, its row count patched."""
    shape, dtype = want.layout
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": (rows, *shape[1:])}
    with open(staged, "wb") as out, open(part, "rb") as source:
        np.lib.format.write_array_header_1_0(out, header)
        source.seek(want.header_end)
        remaining = rows * _row_bytes(shape, dtype)
        while remaining and (block := source.read(min(_HASH_CHUNK, remaining))):
            out.write(block)
            remaining -= len(block)


def _stage(url: str, dest: Path, part: Path, state: dict, want: _Want) -> dict:
    """Turn what ``part`` holds into the file to cache (at ``_staged(dest)``) and return its
    entry but for hash and size."""
    held, total = part.stat().st_size, state["total"]
    entry = {"source_bytes": total, "validator": state["validator"]}
    staged = _staged(dest)
    if held == total:
        entry |= {"complete": True, "records": None, "source_end": total}
        os.replace(part, staged)
    elif isinstance(want, _Lines):  # cut after the last complete line
        os.truncate(part, want.cut)
        entry |= {"complete": False, "records": want.lines, "source_end": want.cut}
        os.replace(part, staged)
    elif isinstance(want, _Rows) and want.layout is not None:
        shape, dtype = want.layout
        rows = min((held - want.header_end) // _row_bytes(shape, dtype), shape[0])
        _write_npy_head(staged, part, want, rows)
        entry |= {
            "complete": rows == shape[0],
            "records": None if rows == shape[0] else rows,
            "source_end": want.header_end + rows * _row_bytes(shape, dtype),
            "npy_header": want.prefix[: want.header_end].decode("latin-1"),
        }
        part.unlink()
    else:  # never recorded: a file that is not all the server announced
        raise DownloadError(f"{url}: received {held} of the {total} bytes the server announced")
    _sidecar(part, ".json").unlink(missing_ok=True)
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
    or with ``limit`` at least its first ``limit`` records (see
    :func:`sketchgen.data.download`); return the records a head holds, None for all."""
    entry = _cached_entry(url, dest, root, options, limit)
    return None if entry["complete"] else entry["records"]


def _cached_entry(
    url: str, dest: Path, root: Path, options: DownloadOptions, limit: int | None
) -> dict:
    """``dest``'s manifest entry once it holds what :func:`ensure_cached` promises."""
    want = _want(dest, limit, options.chunk_bytes)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest):
        entry = _trusted(root, dest)
        if entry is not None and (
            entry["complete"] or (limit is not None and entry["records"] >= limit)
        ):
            return entry
        part = _sidecar(dest, ".part")
        if entry is not None and _resume_state(part, url) is None:
            _continue_head(dest, part, entry, url)
        no_validator = entry is not None and entry["validator"] is None
        state = _with_retries(url, part, want, options, no_validator)
        return _commit(root, dest, _stage(url, dest, part, state, want))


__all__ = [
    "MANIFEST",
    "NPY_HEADER_ERRORS",
    "DownloadError",
    "DownloadOptions",
    "ensure_cached",
    "sha256_file",
]
