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
verifies (the machinery is :mod:`sketchgen.data.download`; this module chooses what to fetch and
where it goes).

Wherever a category is accepted, a path to an ``.ndjson`` / ``.ndjson.gz`` / ``.npz`` /
``.npy`` file is accepted too, so users can train on their own subsets: :func:`resolve`.
:func:`load_drawings` and :func:`load_bitmaps` turn a list of such sources into labelled
datasets (bitmaps are rendered once and cached on disk); :func:`split_indices` gives the
train / valid / test split every trainer and evaluator shares.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import os
import re
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

import rasterize
from rasterize.drawings import ON_ERROR_MODES, Drawing, SkipLog, read_ndjson
from rasterize.render import render
from rasterize.strokes import read_sketch_npz, stroke3_to_drawing
from sketchgen.data.download import NPY_HEADER_ERRORS, DownloadOptions, ensure_cached, sha256_file
from sketchgen.errors import DownloadError

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

CATEGORIES: tuple[str, ...] = tuple(
    line.strip()
    for line in resources.files("sketchgen.data").joinpath("categories.txt").read_text().splitlines()
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
        "are in sketchgen/data/categories.txt; they are case-sensitive and may contain spaces)"
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


# -- downloads (the machinery is sketchgen.data.download) ----------------------------------------


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
    ensure_cached(url, dest, root, options or DownloadOptions(), limit)
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
    return path, ensure_cached(url, path, root, options or DownloadOptions(), limit)


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
    except (*NPY_HEADER_ERRORS, OverflowError, EOFError) as error:
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
