"""Where the suite may write and what it may delete: owned folders, locks, safe names.

The rules (``sketchgen train``, ``sketchgen compare`` and ``sketchgen sample`` follow them):

- A folder is the suite's when it carries the suite's marker file (:data:`MARKER`, JSON naming
  the folder's kind). The suite writes the marker when it creates a folder or finds it empty,
  and only then: a folder that held anything else stays the user's.
- The suite writes into a folder of its own (of the same kind) or an empty or new one. Any
  other folder is refused, unless the caller passes ``overwrite=True``: then the suite writes
  its files there, replacing files of the same names, and still deletes nothing of the user's
  (such a folder is never marked, so the next write needs ``overwrite`` again).
- A process writing a folder holds an exclusive lock on it (``flock`` on :data:`LOCK` inside
  it); a second process is refused at once instead of interleaving its files with the first's.
- The suite deletes only what it made: a whole folder only if it carries the marker and lies
  strictly inside the caller's working folder (:func:`remove_folder`), single files only if
  the folder's marker lists them as written by the suite (:meth:`Claim.remove_recorded`).
- Names taken from configs that become file names (model labels, report names, class names)
  are plain file-name components (:func:`check_name`), so none can point elsewhere.

Errors are :class:`OutputError` (a ``ConfigError``) naming the library parameter that allows
the write (``overwrite=True``); ``sketchgen.cli`` shows the flag instead.
A base module: it imports only ``sketchgen.errors`` and ``sketchgen.runtime``. POSIX only
(``fcntl``).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from sketchgen.errors import ConfigError, OutputError
from sketchgen.runtime import atomic_write

MARKER = ".sketchgen"  # JSON {"kind": ..., "written": [...]}: this folder is the suite's
LOCK = ".sketchgen.lock"  # flock'ed by the process writing the folder; holds its pid
NAME_MAX = 100  # characters in a name from a config; far below every file system's limit
# A letter or digit, then letters, digits, spaces and . _ + - (Unicode letters count: class
# names come from data file names). No separator, no control character, no hidden file.
_NAME = re.compile(r"[^\W_][\w .+-]*")
_SHOWN = 3  # a refused folder's entries named in the error


def check_name(value: str, field: str) -> str:
    """``value`` if it is a safe file-name component, else a ConfigError naming ``field``."""
    if not (isinstance(value, str) and len(value) <= NAME_MAX and _NAME.fullmatch(value)
            and ".." not in value):
        raise ConfigError(
            f"{field}: {value!r} cannot name a file: use letters, digits, spaces and . _ + -, "
            f"starting with a letter or digit (no '/', '\\', '..'; at most {NAME_MAX} characters)")
    return value


# -- the marker ----------------------------------------------------------------------------


def _read_marker(folder: Path) -> dict | None:
    """The folder's marker, or None if it has none or it is not one the suite wrote (the
    suite writes a regular file: a link to another folder's marker, or a pipe, is none)."""
    try:
        fd = os.open(folder / MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with open(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        text = handle.read()
    try:
        marker = json.loads(text.decode("utf-8"))
    except ValueError:
        return None
    if not isinstance(marker, dict) or not isinstance(marker.get("kind"), str):
        return None
    written = marker.get("written", [])
    if not isinstance(written, list) or not all(isinstance(name, str) for name in written):
        return None
    return {"kind": marker["kind"], "written": written}


def _write_marker(folder: Path, kind: str, written: Iterable[str] = ()) -> None:
    text = json.dumps({"kind": kind, "written": sorted(set(written))}, indent=1) + "\n"
    atomic_write(folder / MARKER, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def is_owned(folder: str | Path, kind: str) -> bool:
    """True if ``folder`` carries the suite's marker for ``kind``."""
    marker = _read_marker(Path(folder))
    return marker is not None and marker["kind"] == kind


# -- the lock ------------------------------------------------------------------------------


def _lock(folder: Path) -> int:
    """An exclusive, non-blocking flock on ``folder/LOCK``; its file descriptor."""
    path = folder / LOCK
    while True:
        # O_NOFOLLOW: a lock "file" that links elsewhere must not get truncated (OSError)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 16).decode("ascii", "replace").strip()
            os.close(fd)
            raise OutputError(f"{folder} is being written by another sketchgen process"
                              f"{_pid_note(holder)}; wait for it to finish or choose another "
                              "folder") from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed the file as we opened it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except BaseException:
        _unlock(folder, fd)
        raise
    return fd


def _pid_note(holder: str) -> str:
    """Who holds a lock, from its file's content (any text: it is only shown if a pid)."""
    if not holder.isdigit():
        return ""
    return f" (pid {holder}{', this one' if int(holder) == os.getpid() else ''})"


def _unlock(folder: Path, fd: int) -> None:
    """Remove the lock file, then release it (in that order: a process that opened the file
    meanwhile sees it replaced and retries, so two processes never both hold a lock)."""
    (folder / LOCK).unlink(missing_ok=True)
    os.close(fd)


# -- claiming a folder ---------------------------------------------------------------------


class Claim:
    """A folder this process writes, locked until :meth:`release` (or the ``with`` block's
    end). ``owned``: it carries the suite's marker, so its recorded files may be deleted."""

    def __init__(self, folder: Path, kind: str, owned: bool, fd: int) -> None:
        self.folder, self.kind, self.owned = folder, kind, owned
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            _unlock(self.folder, self._fd)
            self._fd = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def record(self, paths: Iterable[str | Path]) -> None:
        """Note files the suite wrote here, so a later run may delete them (owned folders)."""
        if not self.owned:
            return
        marker = _read_marker(self.folder) or {"written": []}
        relative = [Path(p).relative_to(self.folder).as_posix() for p in paths]
        _write_marker(self.folder, self.kind, [*marker["written"], *relative])

    def remove_recorded(self) -> None:
        """Delete the files :meth:`record` noted (and folders that leaves empty); nothing
        else, and nothing at all in a folder that is not the suite's. A listed path outside
        the folder is an OutputError, before anything is deleted."""
        if not self.owned:
            return
        marker = _read_marker(self.folder)
        written = marker["written"] if marker else []
        targets = [self._recorded_path(name) for name in written]
        for target in targets:
            if target.is_file() or target.is_symlink():
                target.unlink()
        for parent in sorted({t.parent for t in targets}, key=lambda p: -len(p.parts)):
            while parent != self.folder and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        _write_marker(self.folder, self.kind)

    def _recorded_path(self, name: str) -> Path:
        target = self.folder / name
        own = {MARKER, LOCK}
        if (Path(name).is_absolute() or ".." in Path(name).parts or name in own
                or not _inside(target.parent, self.folder, strictly=False)):
            raise OutputError(f"{self.folder / MARKER} lists {name!r}, which is not a file "
                              "of this folder; delete the marker if the folder is yours")
        return target


def _inside(path: Path, root: Path, strictly: bool = True) -> bool:
    """``path`` (symbolic links resolved) lies inside ``root`` (or is it, unless strictly)."""
    path, root = path.resolve(), root.resolve()
    return root in path.parents or (not strictly and path == root)


def _entries(folder: Path) -> list[str]:
    """What a folder holds besides a lock file (a live or leftover lock is no content)."""
    return sorted(entry.name for entry in folder.iterdir() if entry.name != LOCK)


def claim(folder: str | Path, kind: str, overwrite: bool = False,
          recognise: Callable[[Path], bool] | None = None) -> Claim:
    """Take ``folder`` for writing a ``kind`` ("run", "report") folder and lock it.

    Accepted: a new folder (created), an empty one, one with the suite's marker for ``kind``
    -- these carry the marker afterwards, ``owned`` -- and one ``recognise(folder)`` says is
    of that kind from before markers existed (not marked: its other files stay the user's).
    Anything else is refused with an OutputError naming the folder, unless ``overwrite``.
    A folder another process holds is refused at once, whatever ``overwrite`` says.
    """
    folder = Path(folder)
    _check_writable(folder, kind, overwrite, recognise)  # before the lock file goes in
    folder.mkdir(parents=True, exist_ok=True)
    fd = _lock(folder)
    try:  # again under the lock: the folder may have changed since the first look
        owned = _check_writable(folder, kind, overwrite, recognise)
        if owned and not is_owned(folder, kind):
            _write_marker(folder, kind)
    except BaseException:
        _unlock(folder, fd)
        raise
    return Claim(folder, kind, owned, fd)


def _check_writable(folder: Path, kind: str, overwrite: bool,
                    recognise: Callable[[Path], bool] | None) -> bool:
    """Whether ``claim`` may write ``folder`` (else an OutputError); True if it is or becomes
    the suite's (marked)."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file, not a folder; choose another")
    entries = _entries(folder) if folder.is_dir() else []
    owned = is_owned(folder, kind) or not entries
    if not owned and not (recognise is not None and recognise(folder)) and not overwrite:
        shown = ", ".join(entries[:_SHOWN]) + (", ..." if len(entries) > _SHOWN else "")
        raise OutputError(
            f"{folder} is not empty ({shown}) and is not a sketchgen {kind} folder; choose "
            "another", allowed_by="overwrite", to="write into it anyway (files of the names "
            "sketchgen writes are replaced, nothing else is deleted)")
    return owned


# -- deleting ------------------------------------------------------------------------------


def remove_folder(target: str | Path, within: str | Path, kind: str) -> None:
    """``shutil.rmtree(target)``, only if ``target`` lies strictly inside ``within`` (the
    caller's working folder; symbolic links resolved) and carries the suite's ``kind`` marker,
    i.e. the suite created it. Anything else is an OutputError and nothing is deleted."""
    target, within = Path(target), Path(within)
    if not _inside(target, within) or target.is_symlink():
        raise OutputError(f"refusing to delete {target}: it is not inside {within}")
    if not is_owned(target, kind):
        raise OutputError(f"refusing to delete {target}: sketchgen did not create it (no "
                          f"{MARKER} marker); delete or move it yourself if it may go")
    with claim(target, kind):  # not while another process writes it
        shutil.rmtree(target)


# -- single output files -------------------------------------------------------------------


def check_free(paths: Iterable[str | Path], overwrite: bool = False) -> None:
    """Refuse (OutputError) to replace an existing file unless ``overwrite``."""
    for path in map(Path, paths):
        if path.is_dir():
            raise OutputError(f"{path} is a folder; choose another output file")
        if path.exists() and not overwrite:
            raise OutputError(f"{path} exists; choose another output", allowed_by="overwrite",
                              to="replace it")
