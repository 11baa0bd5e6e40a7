"""One writer per catalogue: an exclusive lock file in the state directory."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from tagger.errors import WriteError


class WriterLock:
    """Held by the process that writes to a catalogue (``scan`` or the ``watch`` daemon).

    A second writer gets a WriteError naming the holder, instead of waiting or racing.
    The lock is released when the process exits, even on kill -9.
    """

    def __init__(self, state_dir: Path, database_url: str, purpose: str):
        digest = hashlib.sha256(database_url.encode()).hexdigest()[:12]
        self.path = Path(state_dir) / f"writer-{digest}.lock"
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> "WriterLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise WriteError(
                f"the catalogue is being written by {holder}; only one writer at a time "
                "(stop it, or let the running daemon do the work)", self.path) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} ({self.purpose})".encode())
        self._fd = fd
        return self

    def holder(self) -> str | None:
        """Who holds the lock now (``"pid N (purpose)"``), or None when nobody does.

        Only probes: a shared lock taken and dropped at once, the file never written.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return os.read(fd, 200).decode(errors="replace").strip() or "another process"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WriterLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
