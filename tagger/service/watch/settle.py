"""The settle table: what the file system said, waiting until it is safe to act on.

Observer threads record events here; the daemon's main thread takes what is due. One lock
guards three structures: the per-path debounce table (a path, its last stat, the time of its
last event, whether a write is still open), the ordered list of moves, and the pending
deletions. Our own code rather than a library debounce: the entries must also move with a
rename, vanish with a deletion and be checked against the file's stat before they are taken.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

#: (source or None, destination, is a folder): None is a folder that appeared from an
#: ignored or unwatched name, to be walked
Move = tuple[str | None, str, bool]
#: (path, (size, mtime_ns) when taken, is a retry of a failed file)
Taken = tuple[str, tuple[int, int], bool]


def stat_of(path: str) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of ``path``, None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def dir_prefix(directory: str) -> str:
    """``directory`` with a trailing separator: what every path under it starts with."""
    return os.path.join(directory, "")


@dataclass
class Entry:
    """A path waiting to settle."""

    stat: tuple[int, int] | None = None  # (size, mtime_ns) at the last event or check
    since: float = 0.0  # monotonic time of the last event or stat change
    writing: bool = False  # written to and not closed since (inotify only)
    retry: bool = False  # a failed file due for another attempt

    def due(self, now: float, settle: float, grace: float) -> bool:
        quiet = now - self.since
        return quiet >= settle and (not self.writing or quiet >= grace)


class SettleQueue:
    """Thread-safe: any thread records, the main thread takes.

    A file is due once it was quiet for ``settle`` seconds and its write was closed (or
    ``grace`` seconds passed without a close: the polling observer never sees one); it is
    taken only if its stat did not change since the last event. Deletions are handed out per
    root once that root was quiet for ``settle`` seconds.
    """

    def __init__(self, settle: float, grace: float,
                 clock: Callable[[], float] = time.monotonic):
        self.settle, self.grace, self.clock = settle, grace, clock
        self._lock = threading.Lock()
        self._pending: dict[str, Entry] = {}
        self._moves: deque[Move] = deque()
        self._deletes: dict[str, tuple[float, bool]] = {}

    # -- recording (any thread) --------------------------------------------------------------

    def touch(self, path: str, *, writing: bool = False, closed: bool = False,
              retry: bool = False, since: float | None = None,
              stat: tuple[int, int] | None = None) -> None:
        """A file appeared or changed (``since``: when, default now; ``stat``: its stat,
        default read now). ``writing``: a write is open; ``closed``: it was closed."""
        stat = stat or stat_of(path)
        now = self.clock() if since is None else since
        with self._lock:
            entry = self._pending.get(path)
            if entry is None:
                entry = self._pending[path] = Entry()
            entry.stat, entry.since = stat, now
            if writing:
                entry.writing = True
            if closed:
                entry.writing = False
            entry.retry = entry.retry or retry
            self._deletes.pop(path, None)

    def file_renamed(self, src: str, dest: str, *, move: bool) -> None:
        """A file was renamed to ``dest`` (a wanted name). ``move``: ``src`` was a wanted
        name too, so the catalogue row moves; else ``dest`` is new or changed (tagger's own
        temp file, a ``.part`` download) and is checked against the catalogue."""
        stat, now = stat_of(dest), self.clock()
        with self._lock:
            entry = self._pending.pop(src, None) or Entry()
            self._deletes.pop(dest, None)
            entry.stat, entry.since = stat, now
            self._pending[dest] = entry
            if move:
                self._moves.append((src, dest, False))

    def dir_renamed(self, src: str, dest: str) -> None:
        """A wanted folder moved to a wanted name: what waits under it moves along."""
        old, new = dir_prefix(src), dir_prefix(dest)
        with self._lock:
            for table in (self._pending, self._deletes):
                for path in [p for p in table if p.startswith(old)]:
                    table[new + path[len(old):]] = table.pop(path)
            self._moves.append((src, dest, True))

    def dir_appeared(self, dest: str) -> None:
        """A folder moved in from an ignored or unwatched name: its files are walked."""
        with self._lock:
            self._moves.append((None, dest, True))

    def deleted(self, path: str, *, is_dir: bool) -> None:
        """A file or folder is gone (or renamed to an ignored name): it waits to be marked
        missing; what waited under it is dropped."""
        now = self.clock()
        with self._lock:
            if is_dir:
                old = dir_prefix(path)
                for p in [p for p in self._pending if p.startswith(old)]:
                    del self._pending[p]
            else:
                self._pending.pop(path, None)
            self._deletes[path] = (now, is_dir)

    def drop_under(self, root: str) -> None:
        """Forget everything waiting under ``root`` (it is paused)."""
        old = dir_prefix(root)
        with self._lock:
            for table in (self._pending, self._deletes):
                for path in [p for p in table if p == root or p.startswith(old)]:
                    del table[path]

    # -- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        """Everything waiting: files, deletions and moves."""
        with self._lock:
            return len(self._pending) + len(self._deletes) + len(self._moves)

    def __contains__(self, path: str) -> bool:
        """Whether a file is waiting to settle."""
        with self._lock:
            return path in self._pending

    def waiting(self) -> set[str]:
        """The files waiting to settle, now."""
        with self._lock:
            return set(self._pending)

    # -- taking (the main thread) -----------------------------------------------------------

    def take_moves(self) -> list[Move]:
        """The moves recorded so far, in order."""
        with self._lock:
            moves = list(self._moves)
            self._moves.clear()
        return moves

    def take_deletes(self, root_of: Callable[[str], str | None],
                     now: float | None = None) -> dict[str, dict[str, tuple[float, bool]]]:
        """``{root: {path: (time, is_dir)}}`` for each root quiet for ``settle`` seconds:
        a whole root emptied at once (an unmount, rm -r) is then seen as empty, not as
        thousands of missing files. Paths under no root are dropped."""
        now = self.clock() if now is None else now
        with self._lock:
            if not self._deletes:
                return {}
            by_root: dict[str, dict[str, tuple[float, bool]]] = {}
            for path, value in self._deletes.items():
                root = root_of(path)
                if root is not None:
                    by_root.setdefault(root, {})[path] = value
            due = {}
            for root, items in by_root.items():
                if now - max(t for t, _ in items.values()) >= self.settle:
                    due[root] = items
                    for path in items:
                        del self._deletes[path]
            for path in [p for p in self._deletes if root_of(p) is None]:
                del self._deletes[path]
        return due

    def take_ready(self, limit: int) -> list[Taken]:
        """Up to ``limit`` files that settled and whose stat is still the one last seen.

        The stat is checked outside the lock; a file that vanished is dropped (its deletion
        event says what to do), one that changed settles again.
        """
        now = self.clock()
        with self._lock:
            due = list(itertools.islice(
                ((p, e, e.since, e.stat) for p, e in self._pending.items()
                 if e.due(now, self.settle, self.grace)), limit))
        ready, changed, gone = [], [], []
        for path, entry, since, stat in due:
            current = stat_of(path)
            if current is None:
                gone.append((path, entry, since))
            elif current != stat:
                changed.append((path, entry, since, current))
            else:
                ready.append((path, entry, since, current))
        taken = []
        with self._lock:  # an event meanwhile renewed the entry: it is not taken now
            for path, entry, since in gone:
                if self._pending.get(path) is entry and entry.since == since:
                    del self._pending[path]
            for path, entry, since, current in changed:
                if self._pending.get(path) is entry and entry.since == since:
                    entry.stat, entry.since = current, now
            for path, entry, since, current in ready:
                if self._pending.get(path) is entry and entry.since == since:
                    del self._pending[path]
                    taken.append((path, current, entry.retry))
        return taken
