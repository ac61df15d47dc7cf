"""The files of a rasterize job: shards, their manifest and the output, each written atomically.

A job (``rasterize.parallel``) is cut into shards of consecutive lines of one input file. Each
finished shard is a ``.npy`` in a work directory (:class:`WorkDir`), written to a temp name and
renamed, then recorded in ``manifest.json`` (also replaced atomically) with what the job
depends on, so a rerun reuses the shards of the same job and clears those of another. The
output is assembled from the shards into a temp file and renamed over ``OUT.npy`` only when
every shard is done (:func:`assemble`), so a partial output never replaces a good one.

Temp files are named ``.NAME.tmp-PID``; the next run of the same output removes those that a
process which no longer exists left (``.OUT.npy.tmp-PID``, the shards' in the work dir) and
touches no other file (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from rasterize.ndjson_reader import SkipLog

MANIFEST = "manifest.json"
_COPY_BYTES = 64 << 20  # rows copied per step when assembling the output: bounded memory
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.tmp-(?P<pid>[0-9]+)")  # what _temporary names
_SHARD_FILE = re.compile(r"[0-9]{5,}-[0-9]{6,}\.npy")  # what shard_name names, as a file


def shard_name(file_index: int, block: int) -> str:
    """The name of block ``block`` of input file ``file_index`` (sorting in output order)."""
    return f"{file_index:05d}-{block:06d}"


def _temporary(path: Path) -> Path:
    """Where this process writes ``path`` before renaming it into place."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def remove_stale_temporaries(folder: Path, ours: Callable[[str], bool]) -> None:
    """Remove the temp files that dead processes left of the files ``ours(name)`` accepts.

    Only regular files named as :func:`_temporary` names them, of a pid that no longer runs:
    never a user's file, nor a temp file a live run is still writing.
    """
    for item in folder.iterdir():
        match = _TEMPORARY.fullmatch(item.name)
        if (match and ours(match["target"]) and not _running(int(match["pid"]))
                and item.is_file() and not item.is_symlink()):
            item.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; a pid none can have
        return True
    return True


def _job_file(name: str) -> bool:
    """Whether a work dir's file ``name`` is one a job writes there: a shard, the manifest."""
    return name == MANIFEST or _SHARD_FILE.fullmatch(name) is not None


class NpyRowWriter:
    """Append ``uint8`` rows to a ``.npy`` via a temp file; :meth:`commit` renames it in place.

    The header is written first with room for any row count (numpy pads it so the shape can
    grow in place) and rewritten with the real count on commit. Used as a context manager,
    an exception discards the temp file and leaves ``path`` untouched.
    """

    def __init__(self, path: str | os.PathLike, columns: int):
        self.path = Path(path)
        self.columns, self.rows = columns, 0
        self.tmp = _temporary(self.path)
        self._file: BinaryIO = open(self.tmp, "wb")
        self._write_header()

    def _write_header(self) -> None:
        self._file.seek(0)
        header = {"descr": "|u1", "fortran_order": False, "shape": (self.rows, self.columns)}
        np.lib.format.write_array_header_1_0(self._file, header)
        self._file.seek(0, os.SEEK_END)

    def append(self, rows: np.ndarray) -> None:
        if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != self.columns:
            raise ValueError(
                f"expected uint8 rows of {self.columns}, got {rows.dtype} {rows.shape}"
            )
        self._file.write(np.ascontiguousarray(rows).data)
        self.rows += len(rows)

    def commit(self) -> None:
        self._write_header()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> NpyRowWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            self.abort()


def _write_json_atomically(path: Path, data: dict) -> None:
    tmp = _temporary(path)
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


class WorkDir:
    """Finished shards and their manifest; stale ones (another job's) are cleared."""

    def __init__(self, path: Path, fingerprint: dict):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path, _job_file)
        manifest = self._read()
        if manifest.get("fingerprint") != fingerprint:
            self.clear()
            manifest = {"fingerprint": fingerprint, "shards": {}}
        self.manifest = manifest

    def _read(self) -> dict:
        try:
            return json.loads((self.path / MANIFEST).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    @property
    def done(self) -> dict:
        return self.manifest["shards"]

    def shard(self, name: str) -> Path:
        return self.path / f"{name}.npy"

    def record(self, name: str, rows: int, lines: int, log: SkipLog) -> None:
        entry = {"rows": rows, "lines": lines, "skipped": dict(log.counts)}
        self.done[name] = entry | {"examples": log.examples}
        _write_json_atomically(self.path / MANIFEST, self.manifest)

    def clear(self) -> None:
        """Remove this job's files only (shards, manifest, their temp files), nothing else."""
        for item in self.path.iterdir():
            temporary = _TEMPORARY.fullmatch(item.name)
            ours = _job_file(temporary["target"] if temporary else item.name)
            if ours and item.is_file() and not item.is_symlink():
                item.unlink()

    def remove(self) -> None:
        self.clear()
        if not any(self.path.iterdir()):
            self.path.rmdir()


def merge_skips(log: SkipLog, counts: dict, examples: list[str]) -> None:
    log.counts.update(Counter(counts))
    log.examples.extend(examples[: max(0, log.max_examples - len(log.examples))])


def assemble(shards: list[Path], output: Path, columns: int) -> int:
    with NpyRowWriter(output, columns) as writer:
        for shard in shards:
            rows = np.load(shard, mmap_mode="r", allow_pickle=False)
            step = max(1, _COPY_BYTES // max(1, columns))
            for start in range(0, len(rows), step):
                writer.append(np.asarray(rows[start : start + step]))
        writer.commit()
    return writer.rows


__all__ = [
    "MANIFEST",
    "NpyRowWriter",
    "WorkDir",
    "assemble",
    "merge_skips",
    "remove_stale_temporaries",
    "shard_name",
]
