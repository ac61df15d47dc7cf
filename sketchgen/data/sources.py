"""Where Quick, Draw! data comes from: Google's categories, mirrors, and a source's file.

Where data comes from, in order of precedence:

1. an explicit ``mirror=`` argument;
2. the ``QUICKDRAW_MIRROR`` environment variable;
3. Google's public bucket, :data:`GOOGLE_BUCKET` (also when a setting names no folder).

A mirror is either a local folder in the bucket's layout (read in place, never copied) or an
http(s) URL, whose files are fetched into the cache (:mod:`sketchgen.data.cache`), only as
much as is used. Wherever a category is accepted, a path to an ``.ndjson`` / ``.ndjson.gz`` /
``.npz`` / ``.npy`` file is accepted too, so users can train on their own subsets:
:func:`resolve` gives a local file for either. :func:`class_name` is the one rule that names
the class a source stands for; :func:`class_names` gives the labels of a list of sources.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import sys
import urllib.parse
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from sketchgen.data.cache import cache_dir, ensure_cached
from sketchgen.data.download import DownloadOptions
from sketchgen.data.heads import check_limit

GOOGLE_BUCKET = "https://storage.googleapis.com/quickdraw_dataset/"
FORMATS = {  # format name (fmt) -> path inside the bucket (or a mirror in its layout)
    "raw": "full/raw/{}.ndjson",
    "simplified": "full/simplified/{}.ndjson",
    "bitmap": "full/numpy_bitmap/{}.npy",
    "sketchrnn": "sketchrnn/{}.npz",
}
STROKE_FORMATS = ("raw", "simplified")
NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz")
DATA_SUFFIXES = (*NDJSON_SUFFIXES, ".npz", ".npy")

_CATEGORY_FILE = resources.files("sketchgen.data").joinpath("categories.txt")
CATEGORIES: tuple[str, ...] = tuple(
    line.strip() for line in _CATEGORY_FILE.read_text().splitlines() if line.strip()
)
_CATEGORY_SET = frozenset(CATEGORIES)


# -- categories and mirrors -----------------------------------------------------------------


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


# -- sources and their class names ----------------------------------------------------------


def is_category(source: str | os.PathLike) -> bool:
    """A ``Path`` is always a path; a string is a category if it is one of Google's names."""
    return isinstance(source, str) and source in _CATEGORY_SET


def data_suffix(path: Path) -> str | None:
    """The data suffix ``path`` ends with (one of :data:`DATA_SUFFIXES`), None if none."""
    return next((s for s in DATA_SUFFIXES if path.name.endswith(s)), None)


def check_source(source: str | os.PathLike) -> None:
    """Raise ValueError unless ``source`` is a category name or an existing data file."""
    if is_category(source):
        return
    path = Path(source)
    expected = (
        f"expected one of Google's {len(CATEGORIES)} category names or a path to an existing "
        f"{', '.join(DATA_SUFFIXES)} file"
    )
    if data_suffix(path) is None:
        raise ValueError(f"{os.fspath(source)!r}: {expected}{_did_you_mean(os.fspath(source))}")
    if not path.is_file():
        raise ValueError(f"{os.fspath(source)!r}: no such file ({expected})")


def check_format(fmt: str, allowed: Sequence[str]) -> None:
    """ValueError unless ``fmt`` is one of the ``allowed`` format names."""
    if fmt not in allowed:
        raise ValueError(f"format must be one of {tuple(allowed)}, got {fmt!r}")


def source_list(sources: str | os.PathLike | Sequence[str | os.PathLike]) -> list:
    """The sources as a list, each checked (so a typo fails before anything is downloaded)."""
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not items:
        raise ValueError("no data sources given")
    for item in items:
        check_source(item)
    return items


def class_name(source: str | os.PathLike) -> str:
    """The class a source stands for: a category name itself, or a data file's name without
    its suffix (``sun.ndjson`` is ``sun``). ValueError unless ``source`` is a category name
    or an existing data file."""
    check_source(source)
    if is_category(source):
        return source
    path = Path(source)
    return path.name[: -len(data_suffix(path))]


def class_names(sources: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[str, ...]:
    """The labels of ``sources``: their class names, each once, in the order given. Sources
    with the same class name (the category ``sun`` and a file ``sun.ndjson``) share one
    label, as in :func:`sketchgen.data.datasets.load_drawings`."""
    return tuple(dict.fromkeys(class_name(source) for source in source_list(sources)))


# -- resolving sources ----------------------------------------------------------------------


def locate(
    source: str | os.PathLike, fmt: str, mirror: str | os.PathLike | None
) -> tuple[Path, str | None, Path | None]:
    """Where ``source`` is read from, before anything is downloaded: ``(path, None, None)``
    for a file read in place, ``(cache path, URL, the mirror's cache folder)`` otherwise."""
    check_source(source)
    if not is_category(source):
        return Path(source), None, None
    check_format(fmt, FORMATS)
    relative = FORMATS[fmt].format(source)
    base = resolve_mirror(mirror)
    if isinstance(base, Path):
        path = safe_join(base, relative)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the mirror {base} has no {fmt} file for {source!r}")
        return path, None, None
    root = safe_join(cache_dir() / "downloads", _mirror_cache_name(base))
    return safe_join(root, relative), base + urllib.parse.quote(relative), root


def fetch(
    source: str | os.PathLike,
    fmt: str,
    mirror: str | os.PathLike | None,
    options: DownloadOptions | None,
    limit: int | None,
) -> tuple[Path, int | None]:
    """:func:`resolve`'s file, and the records it holds if it is a head (None: all)."""
    check_limit(limit)
    path, url, root = locate(source, fmt, mirror)
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
    later call with a bigger ``limit`` makes the head longer (see
    :func:`sketchgen.data.cache.download`). Files in a mirror folder are read in place, whole.
    """
    return fetch(source, fmt, mirror, options, limit)[0]


__all__ = [
    "CATEGORIES",
    "DATA_SUFFIXES",
    "FORMATS",
    "GOOGLE_BUCKET",
    "NDJSON_SUFFIXES",
    "STROKE_FORMATS",
    "check_category",
    "check_format",
    "check_source",
    "class_name",
    "class_names",
    "data_suffix",
    "fetch",
    "is_category",
    "locate",
    "resolve",
    "resolve_mirror",
    "safe_join",
    "source_list",
]
