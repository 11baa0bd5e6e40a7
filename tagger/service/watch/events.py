"""From watchdog events to the settle table: which paths matter, and what each event means.

Runs in the observer threads; it only filters (ignore patterns, tagger's own temp files,
audio extensions) and records, never touches the catalogue.
"""

from __future__ import annotations

import fnmatch
import os

from watchdog.events import FileSystemEvent

from tagger.config import LibraryConfig
from tagger.library.discover import OWN_TEMP_PATTERN, is_audio_name, is_ignored
from tagger.service.watch.settle import SettleQueue, dir_prefix


class EventRouter:
    """Turns one watchdog event under ``root`` into calls on a :class:`SettleQueue`."""

    def __init__(self, library: LibraryConfig, queue: SettleQueue):
        self.library, self.queue = library, queue

    def wanted_dir(self, root: str, path: str) -> bool:
        """A folder under ``root`` whose every part is neither ignored nor a temp name."""
        if path == root:
            return True
        if not path.startswith(dir_prefix(root)):
            return False
        ignore = self.library.ignore
        return not any(is_ignored(part, ignore) or fnmatch.fnmatchcase(part, OWN_TEMP_PATTERN)
                       for part in path[len(dir_prefix(root)):].split(os.sep))

    def wanted(self, root: str, path: str) -> bool:
        """An audio file under ``root`` in a wanted folder, with a wanted name."""
        return (self.wanted_dir(root, path) and path != root
                and is_audio_name(os.path.basename(path), self.library.extensions))

    def on_event(self, root: str, event: FileSystemEvent, native: bool) -> None:
        """Record what ``event`` means (``native``: from inotify, which reports open writes
        and their close; the polling observer reports neither)."""
        kind = event.event_type
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        if event.is_directory:
            if kind == "moved" and not event.is_synthetic:  # (its subfolders: covered)
                self._dir_moved(root, src, dest)
            elif kind == "deleted":
                self._deleted(root, src, is_dir=True)
            return
        if kind in ("opened", "closed_no_write"):  # reads never matter
            return
        if kind == "moved":
            if not event.is_synthetic:  # files of a moved folder: the folder's move covers them
                self._file_moved(root, src, dest)
        elif kind == "deleted":
            self._deleted(root, src, is_dir=False)
        elif kind in ("created", "modified", "closed", "attrib"):
            if self.wanted(root, src):
                self.queue.touch(src, writing=native and kind == "modified",
                                 closed=kind == "closed")

    def _file_moved(self, root: str, src: str, dest: str) -> None:
        src_ok, dest_ok = self.wanted(root, src), self.wanted(root, dest)
        if dest_ok:
            self.queue.file_renamed(src, dest, move=src_ok)
        elif src_ok:  # renamed to an ignored name: gone from the library
            self.queue.deleted(src, is_dir=False)

    def _dir_moved(self, root: str, src: str, dest: str) -> None:
        src_ok, dest_ok = self.wanted_dir(root, src), self.wanted_dir(root, dest)
        if src_ok and dest_ok:
            self.queue.dir_renamed(src, dest)
        elif dest_ok:  # from an ignored or unwatched name: its files are new here
            self.queue.dir_appeared(dest)
        elif src_ok:
            self.queue.deleted(src, is_dir=True)

    def _deleted(self, root: str, path: str, *, is_dir: bool) -> None:
        if self.wanted_dir(root, path) if is_dir else self.wanted(root, path):
            self.queue.deleted(path, is_dir=is_dir)
