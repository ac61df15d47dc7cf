"""Quick, Draw! data access: category names, download / cache / mirror, and dataset loaders.

Where data comes from, in order of precedence:

1. an explicit ``mirror=`` argument (``--mirror`` on the command line);
2. the ``QUICKDRAW_MIRROR`` environment variable;
3. Google's public bucket, :data:`GOOGLE_BUCKET` (also when a setting names no folder).

A mirror is either a local folder in the bucket's layout (read in place, never copied) or an
http(s) URL. Files fetched over HTTP land in the cache (``SKETCHGEN_CACHE``, default
``~/.cache/sketchgen``): only as much as is used (a *head*: the first lines of an ndjson
file, the first rows of an .npy, made longer when more are asked for), with resumable HTTP
ranges that name the version they continue (If-Range), checked against the size the server
announced, capped (:class:`DownloadOptions`), and -- since Google publishes no hashes --
recorded with their sha256 in the cache folder's ``MANIFEST.json``, which every later use
verifies.

Wherever a category is accepted, a path to an ``.ndjson`` / ``.ndjson.gz`` / ``.npz`` /
``.npy`` file is accepted too, so users can train on their own subsets: :func:`resolve`.
:func:`load_drawings` and :func:`load_bitmaps` turn a list of such sources into labelled
datasets (bitmaps are rendered once and cached on disk); :func:`split_indices` gives the
train / valid / test split every trainer and evaluator shares.
"""

from __future__ import annotations

import difflib
import fcntl
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
import tempfile
import time
import tokenize
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
from tqdm import tqdm

import rasterize
from rasterize.drawings import ON_ERROR_MODES, Drawing, SkipLog, read_ndjson
from rasterize.render import render
from rasterize.strokes import read_sketch_npz, stroke3_to_drawing

GOOGLE_BUCKET = "https://storage.googleapis.com/quickdraw_dataset/"
FORMATS = {  # --format name -> path inside the bucket (or a mirror in its layout)
    "raw": "full/raw/{}.ndjson",
    "simplified": "full/simplified/{}.ndjson",
    "bitmap": "full/numpy_bitmap/{}.npy",
    "sketchrnn": "sketchrnn/{}.npz",
}
STROKE_FORMATS = ("raw", "simplified")
NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz")
DATA_SUFFIXES = (*NDJSON_SUFFIXES, ".npz", ".npy")
GOOGLE_BITMAP_SIZE = 28  # Google's numpy_bitmap files are 28x28 ...
GOOGLE_LINE_WIDTH = 16.0  # ... drawn with this line width and padding (render's defaults)
GOOGLE_PADDING = 16.0
DEFAULT_CACHE = "~/.cache/sketchgen"
RENDER_BATCH = 4096  # drawings rendered per call: bounds memory on Google's 100k+-line files
_HASH_CHUNK = 1 << 20

CATEGORIES: tuple[str, ...] = tuple(
    line.strip()
    for line in resources.files("sketchgen").joinpath("categories.txt").read_text().splitlines()
    if line.strip()
)
_CATEGORY_SET = frozenset(CATEGORIES)


# -- categories and paths -------------------------------------------------------------------


def _did_you_mean(name: str) -> str:
    """``"; did you mean 'cat', 'castle'?"`` for close category names (any case), else ``""``."""
    by_lower = {c.lower(): c for c in CATEGORIES}
    close = difflib.get_close_matches(str(name).lower(), by_lower, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(repr(by_lower[c]) for c in close)}?" if close else ""


def check_category(name: str) -> str:
    """Return ``name`` if it is one of Google's 345 categories, else raise a helpful ValueError."""
    if name in _CATEGORY_SET:
        return name
    raise ValueError(
        f"unknown category {name!r}{_did_you_mean(name)} (Google's {len(CATEGORIES)} names "
        "are in sketchgen/categories.txt; they are case-sensitive and may contain spaces)"
    )


def safe_join(root: str | os.PathLike, *parts: str) -> Path:
    """``root / parts`` as an absolute path, or ValueError if it would leave ``root``.

    The check is lexical (``..``, absolute parts): symlinks are not followed, so a mirror
    folder may be built from links to files kept elsewhere.
    """
    base = Path(os.path.abspath(root))
    target = Path(os.path.normpath(base.joinpath(*parts)))
    if target != base and base not in target.parents:
        raise ValueError(f"{'/'.join(parts)!r} would escape {base}")
    return target


def cache_dir() -> Path:
    """The cache root: ``$SKETCHGEN_CACHE``, else ``~/.cache/sketchgen``."""
    return Path(os.environ.get("SKETCHGEN_CACHE") or DEFAULT_CACHE).expanduser()


_REPORTED_MISSING: set[tuple[str, str]] = set()  # mirror settings already said to be absent


def resolve_mirror(mirror: str | os.PathLike | None) -> str | Path:
    """Where data comes from: an http(s) base URL ending in ``/``, or a local mirror folder.

    ``mirror`` if given, else ``$QUICKDRAW_MIRROR``, else Google's bucket. A setting that
    names no existing folder means Google's bucket too, said once on stderr (a fresh
    machine without the mirror still works); ValueError for any other URL scheme.
    """
    if mirror is not None:
        value, origin = os.fspath(mirror), "mirror"
    elif os.environ.get("QUICKDRAW_MIRROR"):
        value, origin = os.environ["QUICKDRAW_MIRROR"], "QUICKDRAW_MIRROR"
    else:
        return GOOGLE_BUCKET
    if re.match(r"https?://", value, re.IGNORECASE):
        _check_url(value, origin)
        return value.rstrip("/") + "/"
    if "://" in value:
        raise ValueError(f"{origin} {value!r}: expected a local folder or an http(s) URL")
    folder = Path(value).expanduser()
    if folder.is_dir():
        return folder
    if (origin, value) not in _REPORTED_MISSING:
        _REPORTED_MISSING.add((origin, value))
        print(
            f"sketchgen: {origin}={value} is not a folder; reading Google's bucket "
            f"{GOOGLE_BUCKET} instead",
            file=sys.stderr,
        )
    return GOOGLE_BUCKET


def _check_url(url: str, origin: str) -> None:
    """ValueError unless ``url`` names a host (and a port, if any, urllib can use)."""
    try:
        parts = urllib.parse.urlsplit(url)
        problem = None if parts.hostname else "no host"
        parts.port  # noqa: B018 (raises for a port that is no number in 0-65535)
    except ValueError as error:
        problem = str(error)
    if problem:
        raise ValueError(
            f"{origin} {url!r}: not a usable URL ({problem}); expected http(s)://host[:port]/..."
        )


def _mirror_cache_name(base_url: str) -> str:
    """One cache folder per mirror URL: a readable, filesystem-safe slug plus a short hash,
    so files from different mirrors (which may hold different subsets) never mix."""
    parsed = urllib.parse.urlsplit(base_url)
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", parsed.netloc + parsed.path).strip("._")[:60]
    return f"{slug}-{hashlib.sha256(base_url.encode()).hexdigest()[:8]}"


def _is_category(source: str | os.PathLike) -> bool:
    """A ``Path`` is always a path; a string is a category if it is one of Google's names."""
    return isinstance(source, str) and source in _CATEGORY_SET


def _data_suffix(path: Path) -> str | None:
    return next((s for s in DATA_SUFFIXES if path.name.endswith(s)), None)


def _class_name(source: str | os.PathLike) -> str:
    """The class a source stands for: the category itself, or the file name without suffix."""
    if _is_category(source):
        return source
    path = Path(source)
    return path.name[: -len(_data_suffix(path))]


def _check_source(source: str | os.PathLike) -> None:
    """Raise ValueError unless ``source`` is a category name or an existing data file."""
    if _is_category(source):
        return
    path = Path(source)
    expected = (
        f"expected one of Google's {len(CATEGORIES)} category names or a path to an existing "
        f"{', '.join(DATA_SUFFIXES)} file"
    )
    if _data_suffix(path) is None:
        raise ValueError(f"{os.fspath(source)!r}: {expected}{_did_you_mean(os.fspath(source))}")
    if not path.is_file():
        raise ValueError(f"{os.fspath(source)!r}: no such file ({expected})")


def _check_format(fmt: str, allowed: Sequence[str]) -> None:
    if fmt not in allowed:
        raise ValueError(f"format must be one of {tuple(allowed)}, got {fmt!r}")


# -- downloads ------------------------------------------------------------------------------


class DownloadError(OSError):
    """A download that failed or a cached file that no longer matches its recorded hash.

    Every message is one line that starts with the URL or the file concerned.
    """


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
    with open(_sidecar(path, ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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
    except ValueError:
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
_NPY_HEADER_ERRORS = (ValueError, tokenize.TokenError)


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
    except _NPY_HEADER_ERRORS:
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


def _want(dest: Path, limit: int | None, chunk: int) -> _Whole | _Lines | _Rows:
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


def _check_room(url: str, part: Path, start: int, size: int, total: int, options) -> None:
    """Refuse, before reading a body, a file the cap or the free disk space cannot take."""
    if size > options.max_bytes:
        raise _too_big(url, size, total, options)
    free = shutil.disk_usage(part.parent).free
    if size - start > free:
        raise DownloadError(
            f"{url}: needs {size - start} more bytes, but {part.parent} has {free} free"
        )


def _receive(
    response, url: str, part: Path, start: int, stop: int, total: int, want, options
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
    except (OSError, ValueError):
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


def _step(url: str, part: Path, held: int, stop: int | None, state, want, options) -> tuple:
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
            state = answered
            _write_atomic(_sidecar(part, ".json"), json.dumps(state).encode())
        held = _receive(response, url, part, first, last, total, want, options)
    if held < last and held < want.end(held, total):
        raise _Retry(f"received {held} of the {last} bytes the server announced")
    return held, state


def _fill(url: str, part: Path, want, options: DownloadOptions, one_request: bool) -> dict:
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


def _with_retries(url: str, part: Path, want, options: DownloadOptions, one_request) -> dict:
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


def _stage(url: str, dest: Path, part: Path, state: dict, want) -> dict:
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


def _download(url: str, dest: Path, root: Path, options: DownloadOptions, limit) -> dict:
    """``dest``'s manifest entry once it holds what :func:`download` promises."""
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


def _check_limit(limit: int | None, name: str = "limit") -> None:
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1
    ):
        raise ValueError(f"{name} must be a positive integer or None, got {limit!r}")


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
    _check_limit(limit)
    dest = Path(dest)
    root = dest.parent if root is None else Path(root)
    _check_inside(root, cache_dir(), "root", "the cache")
    _check_inside(dest, root, "dest", "root")
    _download(url, dest, root, options or DownloadOptions(), limit)
    return dest



# -- resolving sources ----------------------------------------------------------------------


def _locate(
    source: str | os.PathLike, fmt: str, mirror: str | os.PathLike | None
) -> tuple[Path, str | None, Path | None]:
    """Where ``source`` is read from, before anything is downloaded: ``(path, None, None)``
    for a file read in place, ``(cache path, URL, the mirror's cache folder)`` otherwise."""
    _check_source(source)
    if not _is_category(source):
        return Path(source), None, None
    _check_format(fmt, FORMATS)
    relative = FORMATS[fmt].format(source)
    base = resolve_mirror(mirror)
    if isinstance(base, Path):
        path = safe_join(base, relative)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the mirror {base} has no {fmt} file for {source!r}")
        return path, None, None
    root = safe_join(cache_dir() / "downloads", _mirror_cache_name(base))
    return safe_join(root, relative), base + urllib.parse.quote(relative), root


def _fetch(
    source: str | os.PathLike,
    fmt: str,
    mirror: str | os.PathLike | None,
    options: DownloadOptions | None,
    limit: int | None,
) -> tuple[Path, int | None]:
    """:func:`resolve`'s file, and the records it holds if it is a head (None: all)."""
    _check_limit(limit)
    path, url, root = _locate(source, fmt, mirror)
    if url is None:
        return path, None
    entry = _download(url, path, root, options or DownloadOptions(), limit)
    return path, None if entry["complete"] else entry["records"]


def resolve(
    source: str | os.PathLike,
    fmt: str = "simplified",
    mirror: str | os.PathLike | None = None,
    options: DownloadOptions | None = None,
    limit: int | None = None,
) -> Path:
    """A local file for ``source``: a category name in format ``fmt`` (see :data:`FORMATS`),
    found in a mirror folder or downloaded into the cache; or an existing data file's path,
    returned as it is (``fmt`` does not apply to it). Anything else raises ValueError.

    A download holds at least the first ``limit`` records (lines or rows), or the whole
    file when ``limit`` is None, the file is shorter, or it is a Sketch-RNN ``.npz``; a
    later call with a bigger ``limit`` makes the head longer (see :func:`download`). Files
    in a mirror folder are read in place, whole.
    """
    return _fetch(source, fmt, mirror, options, limit)[0]


@dataclass(frozen=True)
class _Source:
    item: str | os.PathLike  # as given: a category name or a path (located again by _take)
    class_name: str


def _source_list(sources: str | os.PathLike | Sequence[str | os.PathLike]) -> list:
    """The sources as a list, each checked (so a typo fails before anything is downloaded)."""
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not items:
        raise ValueError("no data sources given")
    for item in items:
        _check_source(item)
    return items


def _suffix_of(item: str | os.PathLike, fmt: str) -> str:
    """The kind of file a checked source stands for, known before anything is downloaded."""
    if _is_category(item):
        return _data_suffix(Path(FORMATS[fmt]))
    return _data_suffix(Path(item))


def _plan(
    items: list,
    fmt: str,
    per_class: int | None,
    mirror: str | os.PathLike | None,
    suffixes: Sequence[str],
) -> tuple[list[_Source], list[str]]:
    """Check the request as a whole and locate every source; each is downloaded later,
    by :func:`_take`, for as many records as its class still needs.

    Sources with the same class name (the category ``sun`` and a file ``sun.ndjson``) share
    one label; ``per_class`` caps each class, filled from its files in the order given.
    """
    _check_limit(per_class, "per_class")
    wrong = next((i for i in items if _suffix_of(i, fmt) not in suffixes), None)
    if wrong is not None:
        what = f"the {fmt} file of {wrong!r}" if _is_category(wrong) else repr(os.fspath(wrong))
        raise ValueError(f"{what}: expected a {' or '.join(suffixes)} file here")
    paths = [_locate(item, fmt, mirror)[0] for item in items]
    seen = [p.resolve() for p in paths]
    if len(set(seen)) != len(seen):
        twice = next(p for p in paths if seen.count(p.resolve()) > 1)
        raise ValueError(f"{twice} is listed more than once")
    plan = [_Source(item, _class_name(item)) for item in items]
    return plan, list(dict.fromkeys(source.class_name for source in plan))


def _add_skips(skipped: SkipLog, counts: dict[str, int], examples: list[str]) -> None:
    skipped.counts.update(counts)
    room = SkipLog.max_examples - len(skipped.examples)
    skipped.examples.extend(examples[: max(room, 0)])


def _take(
    plan: list[_Source],
    per_class: int | None,
    read,
    skipped: SkipLog,
    fmt: str,
    mirror: str | os.PathLike | None,
) -> Iterator[tuple[_Source, object]]:
    """Fetch and read each planned file for what its class has left of ``per_class`` (a
    download is a head of that many records): a class whose first file runs short is topped
    up from its next one, and a head whose bad lines were skipped is made longer by what
    they left missing. Yields (source, records read); ``skipped`` gets the skips."""
    taken: dict[str, int] = {}
    for source in plan:
        used = taken.get(source.class_name, 0)
        limit = None if per_class is None else per_class - used
        if limit == 0:
            continue
        path, held = _fetch(source.item, fmt, mirror, None, limit)
        while True:
            log = SkipLog()
            result = read(path, limit, log)
            if held is None or len(result) >= limit:
                break
            path, held = _fetch(source.item, fmt, mirror, None, held + limit - len(result))
        _add_skips(skipped, log.counts, log.examples)
        taken[source.class_name] = used + len(result)
        yield source, result


# -- loaders --------------------------------------------------------------------------------


@dataclass
class LabelledDrawings:
    drawings: list[Drawing]
    labels: np.ndarray  # int64, index into class_names
    class_names: list[str]
    skipped: SkipLog = field(default_factory=SkipLog)  # bad lines passed over with on_error="skip"

    def __len__(self) -> int:
        return len(self.drawings)


@dataclass
class LabelledBitmaps:
    bitmaps: np.ndarray  # uint8 (N, size, size), white ink on black unless inverted
    labels: np.ndarray  # int64, index into class_names
    class_names: list[str]
    skipped: SkipLog = field(default_factory=SkipLog)  # bad lines passed over with on_error="skip"

    def __len__(self) -> int:
        return len(self.bitmaps)


def _check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR_MODES:
        raise ValueError(f"on_error must be one of {ON_ERROR_MODES}, got {on_error!r}")


def _labels(counts: Sequence[tuple[str, int]], class_names: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(class_names)}
    return np.repeat(
        np.array([index[name] for name, _ in counts], dtype=np.int64),
        [n for _, n in counts],
    )


def load_drawings(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    fmt: str = "simplified",
    per_class: int | None = None,
    on_error: str = "raise",
    mirror: str | os.PathLike | None = None,
) -> LabelledDrawings:
    """Drawings of several categories / ndjson or Sketch-RNN ``.npz`` files with integer labels.

    Deterministic: the first ``per_class`` records of each class, in file order (over HTTP
    only those are downloaded: a head of each file, see :func:`resolve`). ``fmt`` is
    ``"raw"``, ``"simplified"`` or ``"sketchrnn"`` for category names. An ``.npz`` gives its
    stroke-3 sketches as drawings, splits in the order train, valid, test (the mirror's files
    hold one split, ``sketches``); callers split them again by seed like any other source.
    """
    _check_format(fmt, (*STROKE_FORMATS, "sketchrnn"))
    _check_on_error(on_error)
    suffixes = (*NDJSON_SUFFIXES, ".npz")
    plan, class_names = _plan(_source_list(sources), fmt, per_class, mirror, suffixes)
    skipped = SkipLog()

    def read(path: Path, limit: int | None, log: SkipLog) -> list[Drawing]:
        if path.name.endswith(".npz"):
            sketches = itertools.chain.from_iterable(read_sketch_npz(path).values())
            return [stroke3_to_drawing(s) for s in itertools.islice(sketches, limit)]
        return list(itertools.islice(read_ndjson(path, on_error, log), limit))

    drawings, counts = [], []
    for source, part in _take(plan, per_class, read, skipped, fmt, mirror):
        drawings.extend(part)
        counts.append((source.class_name, len(part)))
    return LabelledDrawings(drawings, _labels(counts, class_names), class_names, skipped)


@cache
def _renderer_identity() -> str:
    """A hash of the rasterize package's code: a fix to the renderer invalidates cached bitmaps."""
    digest = hashlib.sha256()
    for module in sorted(Path(rasterize.__file__).parent.glob("*.py")):
        digest.update(module.name.encode() + b"\0" + module.read_bytes())
    return digest.hexdigest()


def _bitmap_cache_path(path: Path, limit: int | None, on_error: str, settings: dict) -> Path:
    stat = path.stat()
    identity = {
        "file": str(path.resolve()),
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "limit": limit,
        "on_error": on_error,
        "render": settings,
        "renderer": _renderer_identity(),
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return cache_dir() / "bitmaps" / f"{key}.npz"


def _render_file(path: Path, limit: int | None, on_error: str, settings: dict) -> tuple:
    """Render the first ``limit`` drawings of an ndjson file in bounded batches."""
    log = SkipLog()
    drawings = itertools.islice(read_ndjson(path, on_error, log), limit)
    batches = []
    while batch := list(itertools.islice(drawings, RENDER_BATCH)):
        batches.append(render(batch, **settings))
    return np.concatenate(batches) if batches else render([], **settings), log


def _save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            np.savez(out, **arrays)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _cached_render(
    path: Path, limit: int | None, on_error: str, settings: dict, skipped: SkipLog
) -> np.ndarray:
    """Bitmaps of one ndjson file, rendered once and then read from the cache."""
    cached = _bitmap_cache_path(path, limit, on_error, settings)
    if cached.exists():
        with np.load(cached, allow_pickle=False) as stored:
            bitmaps, log = stored["bitmaps"], json.loads(str(stored["skipped"]))
    else:
        bitmaps, file_log = _render_file(path, limit, on_error, settings)
        log = {"counts": dict(file_log.counts), "examples": file_log.examples}
        _save_npz_atomic(cached, bitmaps=bitmaps, skipped=np.array(json.dumps(log)))
    _add_skips(skipped, log["counts"], log["examples"])
    return bitmaps


def _load_npy_bitmaps(path: Path, limit: int | None, size: int) -> np.ndarray:
    """The first ``limit`` rows of a ``uint8`` ``(N, size*size)`` or ``(N, size, size)`` .npy,
    memory-mapped so only those rows are read."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (*_NPY_HEADER_ERRORS, OverflowError, EOFError) as error:
        # numpy's messages name no file; some span lines. OverflowError: a negative size.
        reason = " ".join(str(error).split())
        raise ValueError(f"{path}: not a valid .npy file of bitmaps ({reason})") from None
    if array.dtype != np.uint8 or array.shape[1:] not in ((size * size,), (size, size)):
        raise ValueError(
            f"{path}: holds {array.dtype} {array.shape[1:]} rows, expected uint8 bitmaps of "
            f"{size}x{size} (shape (N, {size * size}) as in Google's numpy_bitmap files)"
        )
    return np.array(array[:limit]).reshape(-1, size, size)


def load_bitmaps(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    size: int = 28,
    per_class: int | None = None,
    fmt: str = "simplified",
    on_error: str = "raise",
    mirror: str | os.PathLike | None = None,
    line_width: float = GOOGLE_LINE_WIDTH,
    padding: float = GOOGLE_PADDING,
    invert: bool = False,
) -> LabelledBitmaps:
    """Labelled ``uint8`` bitmaps ``(N, size, size)`` of several categories / files.

    Stroke sources (``fmt`` ``"simplified"`` or ``"raw"``, or ndjson paths) are rendered with
    ``rasterize.render.render`` once and cached under the cache dir, keyed by the file
    (path, size, mtime), the render settings, the record limit and the renderer's code.
    ``fmt="bitmap"`` (and ``.npy`` paths) read ready-made bitmaps instead -- Google's
    ``numpy_bitmap`` files are 28 px at the default settings, so other settings are refused
    there rather than silently ignored. Same selection rule as :func:`load_drawings`.
    """
    _check_format(fmt, (*STROKE_FORMATS, "bitmap"))
    _check_on_error(on_error)
    settings = {"size": size, "line_width": line_width, "padding": padding, "invert": invert}
    as_google = {"line_width": GOOGLE_LINE_WIDTH, "padding": GOOGLE_PADDING, "invert": False}
    accepts = (*NDJSON_SUFFIXES, ".npy") if fmt != "bitmap" else (".npy",)
    items = _source_list(sources)
    uses_npy = any(_suffix_of(item, fmt) == ".npy" for item in items)
    if uses_npy and {k: settings[k] for k in as_google} != as_google:
        raise ValueError(
            ".npy bitmaps are used as they are: line_width, padding and invert apply only "
            "when rendering strokes (use fmt='simplified' or ndjson files)"
        )
    if fmt == "bitmap" and size != GOOGLE_BITMAP_SIZE:
        raise ValueError(
            f"Google's numpy_bitmap files are {GOOGLE_BITMAP_SIZE} px; for size={size} "
            "render strokes with fmt='simplified'"
        )
    render([], **settings)  # renders nothing, but rejects bad settings before any download
    plan, class_names = _plan(items, fmt, per_class, mirror, accepts)
    skipped = SkipLog()

    def read(path: Path, limit: int | None, log: SkipLog) -> np.ndarray:
        if path.name.endswith(".npy"):
            return _load_npy_bitmaps(path, limit, size)
        return _cached_render(path, limit, on_error, settings, log)

    parts, counts = [], []
    for source, part in _take(plan, per_class, read, skipped, fmt, mirror):
        parts.append(part)
        counts.append((source.class_name, len(part)))
    return LabelledBitmaps(
        np.concatenate(parts), _labels(counts, class_names), class_names, skipped
    )


# -- splits ---------------------------------------------------------------------------------


def split_indices(
    n: int, seed: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> tuple[np.ndarray, ...]:
    """Disjoint, sorted int64 index arrays covering ``range(n)``, one per fraction
    (train / valid / test by default); the same ``(n, seed, fractions)`` always gives the
    same split. Sizes are the rounded cumulative fractions, so they add up to ``n``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer (a split must be reproducible), got {seed!r}")
    weights = np.asarray(fractions, dtype=np.float64)
    if (
        weights.ndim != 1
        or not len(weights)
        or (weights < 0).any()
        or not np.isfinite(weights).all()
    ):
        raise ValueError(f"fractions must be non-negative numbers, got {fractions!r}")
    if abs(weights.sum() - 1.0) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {weights.sum():g})")
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.round(np.cumsum(weights) * n).astype(np.int64)
    bounds[-1] = n
    return tuple(np.sort(part) for part in np.split(order, bounds[:-1]))


__all__ = [
    "CATEGORIES",
    "FORMATS",
    "GOOGLE_BUCKET",
    "DownloadError",
    "DownloadOptions",
    "LabelledBitmaps",
    "LabelledDrawings",
    "cache_dir",
    "check_category",
    "download",
    "load_bitmaps",
    "load_drawings",
    "resolve",
    "resolve_mirror",
    "safe_join",
    "sha256_file",
    "split_indices",
]
