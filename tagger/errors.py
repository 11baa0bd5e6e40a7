"""The error hierarchy: one root, with read/write/config kinds that carry the path."""

from __future__ import annotations

import os


class TaggerError(Exception):
    """Root of every error tagger raises on purpose.

    ``str(err)`` is a single line, ``"<path>: <message>"`` when a path is known,
    fit for a log line and for the catalogue's ``error`` column.
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None):
        super().__init__(message)
        self.message = " ".join(str(message).split())  # always one line
        self.path = os.fspath(path) if path is not None else None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(TaggerError):
    """The configuration file or a command-line option is invalid."""


class ReadError(TaggerError):
    """A file could not be read or decoded (missing, unreadable, not audio, too short, silent)."""


class TooShortError(ReadError):
    """The audio is readable but shorter than ``model.min_track_seconds``: skipped, not failed."""


class WriteError(TaggerError):
    """Tags or the catalogue could not be written; the file is left as it was."""


class ModelError(TaggerError):
    """The model weights or model card are missing, corrupt or inconsistent."""
