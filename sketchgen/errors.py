"""Every error the suite raises on purpose, in one place.

Owns: the exception classes. Imports nothing from sketchgen, so every layer may import it.

Library messages name parameters and fields (``overwrite=True``, ``models[2].steps``), never
command-line flags. Only ``sketchgen.cli`` turns them into flags (an :class:`OutputError`'s
remedy ``overwrite=True`` reads ``--overwrite`` there), one line on stderr and an exit status:

- :class:`UsageError` and its subclasses: bad input found before any work starts (a
  config, an argument, a data source, a checkpoint, an output folder) -- exit status 2;
- :class:`DownloadError`, like every ``OSError``: the environment failed the run -- exit 1;
- :class:`DivergenceError`: training produced non-finite values. ``sketchgen train`` prints
  it as one line (the step, the value, where the last good checkpoint is kept) and exits with
  status 1; elsewhere (``sketchgen compare``, the API) it keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class UsageError(Exception):
    """Bad input from the caller: printed as one line before any work starts."""


class ConfigError(UsageError):
    """A configuration that cannot work (unknown model, category or field, impossible size)."""


class FieldError(ConfigError, ValueError):
    """A field's value has the wrong type or lies outside its declared range or choices.

    ``path`` names the field as the TOML file spells it (``steps``, ``models[3].batch_size``,
    ``classifier.max_epochs``). Also a ValueError: to an API caller it is a bad argument value.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.path, self.problem = path, problem

    def under(self, prefix: str) -> FieldError:
        """The same error named by its path inside the enclosing table ``prefix``."""
        return FieldError(f"{prefix}.{self.path}", self.problem)


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used: unreadable, refused, or not what the suite wrote."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = Path(path), problem


class OutputError(ConfigError):
    """A write or delete that ``sketchgen.outputs`` refuses; one line naming the folder or file.

    ``allowed_by`` names the boolean parameter that would allow it (None: nothing does) and
    ``to`` what passing it does."""

    def __init__(self, message: str, allowed_by: str | None = None, to: str = "") -> None:
        self.message, self.allowed_by, self.to = message, allowed_by, to
        super().__init__(self.with_remedy(f"{allowed_by}=True"))

    def with_remedy(self, remedy: str) -> str:
        """The message ending in how to allow the action, spelt ``remedy``."""
        if self.allowed_by is None:
            return self.message
        return f"{self.message}, or pass {remedy} to {self.to}"


class DownloadError(OSError):
    """A download that failed or a cached file that no longer matches its recorded hash.

    Every message is one line that starts with the URL or the file concerned.
    """


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or weights; the last good checkpoint is kept."""
