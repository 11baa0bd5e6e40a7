"""Discover audio files under the library roots: extension filter, ignore patterns, no loops."""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from tagger import formats
from tagger.config import LibraryConfig
from tagger.library.paths import is_inside, outside_reason, real_roots

log = logging.getLogger(__name__)

# what tagger itself leaves behind while writing tags (tagger/tags: ".tagger-<random>.tmp")
OWN_TEMP_PATTERN = ".tagger-*.tmp"


@dataclass(frozen=True)
class FoundFile:
    path: str  # absolute, as reached from the root (symlinked folders keep their link path)
    size: int
    mtime_ns: int
    # exactly as the catalogue recorded it (tagger's own write, or a read at rest): its mtime
    # is no sign of a copy in progress (tagger.library.motion)
    settled: bool = False


@dataclass
class WalkReport:
    """What a walk saw besides audio files."""

    unreadable_dirs: list[str] = field(default_factory=list)
    skipped_names: list[str] = field(default_factory=list)  # names that are not valid UTF-8
    temp_dirs: set[str] = field(default_factory=set)  # folders holding our stale temp files
    # (path, reason): symlinks to outside the roots not followed, FIFOs and other non-files
    skipped_links: list[tuple[str, str]] = field(default_factory=list)


def is_ignored(name: str, patterns: Iterable[str]) -> bool:
    """Whether a file or folder name matches one of the ignore patterns (shell globs)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def is_audio_name(name: str, extensions: Iterable[str]) -> bool:
    """Whether a file of this name is scanned: its extension is configured and in the registry
    (tagger/formats.py; a configured ``aac`` is not scanned, it cannot be tagged)."""
    extension = os.path.splitext(name)[1].lower().lstrip(".")
    return extension in extensions and formats.by_extension(extension) is not None


def walk(roots: Iterable[str], library: LibraryConfig,
         report: WalkReport | None = None) -> Iterator[FoundFile]:
    """Yield the audio files under ``roots``, each folder visited once.

    Symlinks (to files or folders) are followed when their target is inside one of the
    roots; one leading outside is noted in ``report.skipped_links`` and not followed, unless
    ``library.follow_symlinks`` (then it is read, never written: the engine checks). A folder
    already visited (a symlink cycle, or a second link to the same folder) is not entered
    again. Unreadable folders are noted in ``report`` and skipped; so are names that are not
    valid UTF-8 and audio-named entries that are not regular files (FIFOs, devices).
    """
    report = report if report is not None else WalkReport()
    roots = list(roots)
    extensions = {e.lower() for e in library.extensions}
    visited: set[tuple[int, int]] = set()
    inside = real_roots(roots)
    for root in roots:
        yield from _walk_dir(os.path.abspath(root), library.ignore, extensions, visited, report,
                             inside, library.follow_symlinks)


def _walk_dir(directory: str, ignore, extensions, visited, report: WalkReport,
              inside: tuple[str, ...], follow: bool):
    try:
        info = os.stat(directory)
    except OSError as exc:
        report.unreadable_dirs.append(f"{directory}: {exc.strerror or exc}")
        return
    key = (info.st_dev, info.st_ino)
    if key in visited:
        log.debug("already visited (symlink loop or duplicate link): %s", directory)
        return
    visited.add(key)
    try:
        with os.scandir(directory) as entries:
            entries = list(entries)
    except OSError as exc:
        report.unreadable_dirs.append(f"{directory}: {exc.strerror or exc}")
        return
    subdirs = []
    for entry in sorted(entries, key=lambda e: e.name):
        name = entry.name
        if fnmatch.fnmatchcase(name, OWN_TEMP_PATTERN):
            if is_inside(directory, inside):  # never delete anything outside the library
                report.temp_dirs.add(directory)
            continue
        if is_ignored(name, ignore):
            continue
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes: cannot be stored or tagged safely
            report.skipped_names.append(os.path.join(directory, name))
            continue
        try:
            is_dir = entry.is_dir()  # follows symlinks
            is_link = entry.is_symlink()
        except OSError:
            continue
        wanted = is_dir or is_audio_name(name, extensions)
        if wanted and is_link and not follow and not is_inside(entry.path, inside):
            report.skipped_links.append((entry.path, outside_reason(entry.path)))
            continue
        if is_dir:
            subdirs.append(entry.path)
        elif is_audio_name(name, extensions):
            try:
                st = entry.stat()  # follows symlinks; a broken link raises
            except OSError:
                log.debug("broken link or vanished: %s", entry.path)
                continue
            if stat.S_ISREG(st.st_mode):
                yield FoundFile(entry.path, st.st_size, st.st_mtime_ns)
            else:
                report.skipped_links.append(
                    (entry.path, "not a regular file (a FIFO, socket or device); not opened"))
    for subdir in subdirs:
        yield from _walk_dir(subdir, ignore, extensions, visited, report, inside, follow)
