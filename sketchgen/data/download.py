"""Moving a URL's bytes into a ``.part`` file over HTTP, resumably and within limits.

Bytes of a URL go to ``<file>.part``: resumed with HTTP ranges that name the version they
continue (If-Range, so a file that changed restarts from byte 0, and one without a validator
is never pieced together), checked against the size the server announced, retried after
transient failures, capped (:class:`DownloadOptions`) and refused if the disk cannot take
them. What the first answer said about the source (URL, size, validator) waits next to the
part in ``<file>.part.json``, so that a later attempt or call can continue it. How much of
the source is needed is a head's business (:mod:`sketchgen.data.heads`); vouching for the
finished file is the cache's (:mod:`sketchgen.data.cache`).
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from sketchgen.data.heads import Want, npy_header_end
from sketchgen.errors import DownloadError
from sketchgen.runtime import atomic_write

FILE_CHUNK = 1 << 20  # bytes read at a time to hash or copy a file


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


def sidecar(dest: Path, suffix: str) -> Path:
    """A file that goes with ``dest`` (``.part``, ``.part.json``, ``.new``, ``.lock``)."""
    return dest.with_name(dest.name + suffix)


def _write_state(part: Path, state: dict) -> None:
    """The resume state of ``part`` in its sidecar, replaced at once (never torn)."""
    data = json.dumps(state).encode()
    atomic_write(sidecar(part, ".json"), lambda tmp: tmp.write_bytes(data))


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
    want: Want,
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


def resume_state(part: Path, url: str) -> dict | None:
    """What the first response said about the source of ``part`` (url, total, validator),
    if ``part`` can be continued: not without that record, for another URL, or without a
    validator (nothing would tell a changed file from the one the bytes came from)."""
    try:
        state = json.loads(sidecar(part, ".json").read_text())
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
    sidecar(part, ".json").unlink(missing_ok=True)


def _step(
    url: str,
    part: Path,
    held: int,
    stop: int | None,
    state: dict | None,
    want: Want,
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
            _write_state(part, state)
        held = _receive(response, url, part, first, last, total, want, options)
    if held < last and held < want.end(held, total):
        raise _Retry(f"received {held} of the {last} bytes the server announced")
    return held, state


def _fill(url: str, part: Path, want: Want, options: DownloadOptions, one_request: bool) -> dict:
    """Make ``part`` hold the start of the source that ``want`` asks for, all of it from
    one version of the file, and return the source's state. Held bytes are continued only
    with the validator they came with (If-Range); when the file has none, or changed, it
    starts again from byte 0. ``one_request``: the file is known to have no validator, so
    one request from byte 0 is read as far as needed. Raises _Retry on a transient
    failure."""
    state = resume_state(part, url)
    held = part.stat().st_size if state else 0
    want.reset()
    if held:
        with open(part, "rb") as stream:
            while block := stream.read(FILE_CHUNK):
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


def download_part(
    url: str, part: Path, want: Want, options: DownloadOptions, one_request: bool
) -> dict:
    """Make ``part`` hold what ``want`` asks for of ``url`` (see :func:`_fill`), retrying
    transient failures ``options.retries`` times; return the source's state (url, total,
    validator). DownloadError once the retries are spent."""
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


def continue_head(dest: Path, part: Path, entry: dict, url: str) -> None:
    """Put the source bytes a trusted head was made from back into ``part``, so that making
    the head longer asks only for what follows it (with If-Range: a changed file restarts).
    A head of a file without a validator cannot be continued."""
    if entry["validator"] is None:
        return
    with open(part, "wb") as out, open(dest, "rb") as head:
        if "npy_header" in entry:  # the source's own header, then the rows
            out.write(entry["npy_header"].encode("latin-1"))
            head.seek(npy_header_end(head.read(12)))
        shutil.copyfileobj(head, out)
    state = {"url": url, "total": entry["source_bytes"], "validator": entry["validator"]}
    _write_state(part, state)


__all__ = [
    "FILE_CHUNK",
    "DownloadOptions",
    "continue_head",
    "download_part",
    "resume_state",
    "sidecar",
]
