"""Rasterize ndjson files into one ``.npy`` with worker processes: streaming, sharded, resumable.

The output is Google's ``numpy_bitmap`` layout, ``uint8`` of shape ``(N, size*size)``, one
row per good line, in input order (files in the order given, lines in file order).

How it flows: this process reads raw lines (no parsing) and sends chunks of them to worker
processes, which parse, validate and render; results come back in submission order and are
appended to the shard they belong to. Memory stays bounded: at most ``2 * workers`` chunks
are in flight, each of at most ``chunk_lines`` lines and about ``chunk_bytes`` bytes (a line
is at most ``rasterize.ndjson_reader.MAX_LINE_BYTES``), and rows go straight to disk.

Crash safety: the job is cut into shards of ``shard_lines`` consecutive lines of one input
file, each kept as it is finished in a work directory (default: ``.OUT.npy.parts`` next to
the output; ``rasterize.shards`` writes and assembles the files). Rerunning the same job
after a crash or kill skips the recorded shards and renders only the others; a manifest made
for other inputs or options is discarded. ``OUT.npy`` is replaced only when every shard is
done, and the work directory is removed after success.

A killed job leaves nothing running and nothing behind for long: workers end when the job's
process dies (they would otherwise wait on their task pipe forever), and the next run of the
same output removes the temp files that a process which no longer exists left.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rasterize.geometry import GOOGLE_LINE_WIDTH, GOOGLE_PADDING, GOOGLE_SIZE
from rasterize.ndjson_reader import (
    ON_ERROR_MODES,
    STREAM_ERRORS,
    LineError,
    LongLine,
    NdjsonError,
    SkipLog,
    file_lines,
    open_binary,
    parse_file_line,
)
from rasterize.render import render
from rasterize.shards import (
    NpyRowWriter,
    WorkDir,
    assemble,
    merge_skips,
    remove_stale_temporaries,
    shard_name,
)

_PARENT_POLL_S = 1.0  # how often a worker without prctl checks that its parent still lives
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@dataclass(frozen=True)
class RasterizeOptions:
    size: int = GOOGLE_SIZE  # Google's numpy_bitmap side
    line_width: float = GOOGLE_LINE_WIDTH  # Google's, in units of the 256 px drawing box
    padding: float = GOOGLE_PADDING  # Google's, same units
    on_error: str = "raise"  # "raise": stop at the first bad line; "skip": count it, go on
    workers: int | None = None  # worker processes; None = os.cpu_count(); 1 = this process
    chunk_lines: int = 256  # lines per worker task: amortises IPC, keeps results small
    # bytes per worker task, at most (plus the line that crosses it): about 4 times 256 of
    # Google's raw lines (3.6 KB on average), so only lines of megabytes make chunks shorter
    chunk_bytes: int = 4 << 20
    shard_lines: int = 100_000  # lines per resumable shard: the most a crash can cost

    def validated(self) -> RasterizeOptions:
        if self.on_error not in ON_ERROR_MODES:
            raise ValueError(f"on_error must be one of {ON_ERROR_MODES}, got {self.on_error!r}")
        for name in ("size", "chunk_lines", "chunk_bytes", "shard_lines"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        render([], self.size, self.line_width, self.padding)  # checks the geometry
        return self

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


@dataclass
class RasterizeResult:
    rows: int  # rows written to the output
    skipped: SkipLog = field(default_factory=SkipLog)  # bad lines (on_error="skip")
    shards: int = 0  # shards in the job
    reused_shards: int = 0  # shards a previous, interrupted run had finished


# -- workers: parse and render a chunk of raw lines ----------------------------------------


@dataclass(frozen=True)
class _Chunk:
    shard: str  # name of the shard the chunk belongs to
    path: str
    first_line: int  # 1-based number of lines[0]
    lines: list[bytes | LongLine]  # raw lines, newline included; LongLine: one too long
    stream_error: str | None = None  # the compressed stream broke after these lines


def _render_chunk(
    chunk: _Chunk, options: RasterizeOptions
) -> tuple[np.ndarray, list[tuple[int, str, str]]]:
    """Rows for the chunk's good lines, and ``(line, kind, reason)`` for its bad ones.

    With ``on_error="raise"`` it stops at the first bad line (and renders nothing).
    """
    drawings, errors = [], []
    for lineno, raw in enumerate(chunk.lines, chunk.first_line):
        try:
            drawings.append(parse_file_line(raw, lineno))
        except LineError as error:
            errors.append((lineno, error.kind, error.reason))
            if options.on_error == "raise":
                return np.empty((0, options.size**2), np.uint8), errors
    if chunk.stream_error is not None:
        errors.append((chunk.first_line + len(chunk.lines), "bad-gzip", chunk.stream_error))
    images = render(drawings, options.size, options.line_width, options.padding)
    return images.reshape(len(drawings), options.size**2), errors


def _die_with_parent(parent: int | None) -> None:
    """Worker initializer: end this worker when the process that started it dies.

    A killed job's workers would otherwise block on their task pipe forever (each holds the
    pipe's write end too, so it never reports end-of-file). On Linux the kernel kills the
    worker with its parent (prctl); elsewhere a thread checks the parent every second.
    ``parent`` is the job's pid when the job is the workers' parent (fork, spawn), so a job
    that died before this ran is noticed too; None under a fork server.
    """
    parent = parent or os.getppid()
    if not _killed_with_parent():
        threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)


def _killed_with_parent() -> bool:
    """Ask Linux to SIGKILL this process when its parent ends; False where that is not there."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL_S)
    os._exit(1)


# -- this process: read lines, plan shards -------------------------------------------------


@dataclass(frozen=True)
class _ShardEnd:
    """Marks, in the stream of chunks, that every chunk of a shard has been sent."""

    name: str
    lines: int
    reused: bool  # an earlier run finished it: nothing was sent


def _read_lines(
    lines: Iterator[bytes | LongLine], count: int, most_bytes: int
) -> tuple[list[bytes | LongLine], str | None, bool]:
    """Up to ``count`` lines, ending at the one that brings them to ``most_bytes``; the error
    of a compressed stream that broke after them, if it did; whether the file ended."""
    batch: list[bytes | LongLine] = []
    size = 0
    try:
        for line in lines:
            batch.append(line)
            size += len(line) if isinstance(line, bytes) else 0
            if len(batch) == count or size >= most_bytes:
                return batch, None, False
    except STREAM_ERRORS as error:
        # A truncated or corrupt gzip tail: nothing after it can be read.
        return batch, f"compressed stream is corrupt or truncated ({error})", True
    return batch, None, True


def _file_chunks(path: Path, file_index: int, options: RasterizeOptions) -> Iterator[_Chunk]:
    """The file's raw lines in chunks; a chunk never straddles two shards."""
    with open_binary(path) as stream:
        lines, lineno = file_lines(stream), 0
        while True:
            block, in_block = divmod(lineno, options.shard_lines)
            wanted = min(options.chunk_lines, options.shard_lines - in_block)
            batch, error, ended = _read_lines(lines, wanted, options.chunk_bytes)
            if batch or error:
                yield _Chunk(shard_name(file_index, block), str(path), lineno + 1, batch, error)
            lineno += len(batch)
            if ended:
                return


def _plan(
    inputs: Sequence[Path], options: RasterizeOptions, done: dict
) -> Iterator[_Chunk | _ShardEnd]:
    """Chunks to render and shard ends, in output order; chunks of done shards are dropped."""
    for file_index, path in enumerate(inputs):
        shard, lines = None, 0
        for chunk in _file_chunks(path, file_index, options):
            if chunk.shard != shard:
                if shard is not None:
                    yield _ShardEnd(shard, lines, shard in done)
                shard, lines = chunk.shard, 0
            lines += len(chunk.lines)
            if chunk.shard not in done:
                yield chunk
        if shard is not None:
            yield _ShardEnd(shard, lines, shard in done)


def _fingerprint(inputs: Sequence[Path], options: RasterizeOptions) -> dict:
    """What the shards depend on: the inputs' identity and the options that change rows."""
    files = [
        {"path": str(p.resolve()), "bytes": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
        for p in inputs
    ]
    settings = asdict(options)
    del settings["workers"], settings["chunk_lines"], settings["chunk_bytes"]  # same rows
    return {"files": files, "options": settings}


# -- the job -------------------------------------------------------------------------------


class _InProcess(Executor):
    """``workers=1``: run tasks here, without process start-up or pickling."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # handed to whoever reads the result, as a pool does
            future.set_exception(error)
        return future


def _executor(options: RasterizeOptions) -> Executor:
    if options.worker_count == 1:
        return _InProcess()
    # The platform's default start method; worker code is importable, so spawn works too.
    context = multiprocessing.get_context()
    parent = os.getpid() if context.get_start_method() in ("fork", "spawn") else None
    return ProcessPoolExecutor(options.worker_count, mp_context=context,
                               initializer=_die_with_parent, initargs=(parent,))


class _ShardSink:
    """Takes chunk results and shard ends in output order and writes the shards."""

    def __init__(self, work: WorkDir, options: RasterizeOptions, progress):
        self.work, self.options, self.progress = work, options, progress
        self.writer: NpyRowWriter | None = None
        self.log = SkipLog()
        self.shards: list[str] = []
        self.reused = 0

    def rows(self, chunk: _Chunk, rows: np.ndarray, errors: list[tuple[int, str, str]]) -> None:
        for lineno, kind, reason in errors:
            error = NdjsonError(chunk.path, lineno, reason, kind)
            if self.options.on_error == "raise":
                raise error
            self.log.add(error)
        self._writer(chunk.shard).append(rows)
        self._advance(len(chunk.lines))

    def end(self, shard: _ShardEnd) -> None:
        self.shards.append(shard.name)
        if shard.reused:
            self.reused += 1
        else:
            writer = self._writer(shard.name)  # a shard of only bad lines has no rows yet
            writer.commit()
            self.work.record(shard.name, writer.rows, shard.lines, self.log)
            self.writer, self.log = None, SkipLog()
            return
        self._advance(shard.lines)

    def _writer(self, shard: str) -> NpyRowWriter:
        if self.writer is None:
            self.writer = NpyRowWriter(self.work.shard(shard), self.options.size**2)
        return self.writer

    def _advance(self, lines: int) -> None:
        if self.progress is not None:
            self.progress(lines)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def _run(plan: Iterator[_Chunk | _ShardEnd], sink: _ShardSink, options: RasterizeOptions) -> None:
    """Send chunks to workers, at most ``2 * workers`` in flight; hand results on in order."""
    pending: deque = deque()
    in_flight = 0

    def hand_on_oldest() -> None:
        nonlocal in_flight
        entry = pending.popleft()
        if isinstance(entry, _ShardEnd):
            sink.end(entry)
        else:
            in_flight -= 1
            sink.rows(entry[0], *entry[1].result())

    with _executor(options) as executor:
        try:
            for item in plan:
                if isinstance(item, _ShardEnd):
                    pending.append(item)
                    continue
                pending.append((item, executor.submit(_render_chunk, item, options)))
                in_flight += 1
                while in_flight > 2 * options.worker_count:
                    hand_on_oldest()
            while pending:
                hand_on_oldest()
        except BaseException:
            sink.abort()
            for entry in pending:
                if isinstance(entry, tuple):
                    entry[1].cancel()
            raise


def rasterize_files(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    options: RasterizeOptions | None = None,
    work_dir: str | os.PathLike | None = None,
    progress: Callable[[int], object] | None = None,
) -> RasterizeResult:
    """Render every drawing of ``inputs`` (ndjson, plain or ``.gz``) into ``output`` (.npy).

    Rows are ``uint8`` ``size*size`` bitmaps (``rasterize.render.render``), in input order.
    ``on_error="raise"`` raises :class:`NdjsonError` (``FILE:LINE: reason``) at the first
    bad line and leaves ``output`` as it was; ``"skip"`` leaves bad lines out and counts
    them in the result's ``skipped``. ``progress(lines)`` is called as lines are done.
    Rerunning an interrupted job resumes it (see the module docstring).
    """
    options = (options or RasterizeOptions()).validated()
    inputs = [Path(p) for p in inputs]
    for path in inputs:
        if not path.is_file():
            raise FileNotFoundError(f"no such input file: {path}")
    output = Path(output)
    remove_stale_temporaries(output.parent, lambda name: name == output.name)
    work = WorkDir(
        Path(work_dir) if work_dir else output.with_name(f".{output.name}.parts"),
        _fingerprint(inputs, options),
    )
    sink = _ShardSink(work, options, progress)
    _run(_plan(inputs, options, work.done), sink, options)
    result = RasterizeResult(rows=0, shards=len(sink.shards), reused_shards=sink.reused)
    for name in sink.shards:
        entry = work.done[name]
        merge_skips(result.skipped, entry["skipped"], entry["examples"])
    result.rows = assemble([work.shard(n) for n in sink.shards], output, options.size**2)
    work.remove()
    return result


__all__ = ["RasterizeOptions", "RasterizeResult", "rasterize_files"]
