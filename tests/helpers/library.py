"""A small real music library for the scan tests: copies of the real format files, untagged
but for the user's own ID3v2.3 tag on the MP3."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from mutagen.id3 import ID3, TALB, TCON, TPE1

from tagger.library import tags

ARTIST = "Kevin MacLeod"
ALBUM = "Jazz Sampler"


def at_rest(*paths: Path | str) -> None:
    """Date the files (or every file below the folders) an hour back: a library whose copies
    finished long ago, as a user's library is. A file modified within
    ``library.settle_seconds`` is in motion, and a scan leaves it for later
    (tagger.library.motion; tests/test_motion.py tests that rule itself)."""
    hour_ago = time.time() - 3600
    for path in paths:
        if os.path.isdir(path):
            for folder, _, names in os.walk(path):
                for name in names:
                    os.utime(os.path.join(folder, name), (hour_ago, hour_ago),
                             follow_symlinks=False)
        else:
            os.utime(path, (hour_ago, hour_ago), follow_symlinks=False)


def user_library(root: Path, format_files: Mapping[str, Path], names: Iterable[str],
                 mp3_genre: str) -> dict[str, Path]:
    """``{name: path}``: a writable copy under ``root`` (made) of each of the ``format_files``
    ``names``, with no genre; the MP3 (``mp3`` must be one of them) gets the user's own ID3v2.3
    tag: :data:`ARTIST`, :data:`ALBUM` and the genre text ``mp3_genre``."""
    root.mkdir()
    files = {}
    for name in names:
        files[name] = root / f"{name}{format_files[name].suffix}"
        shutil.copy(format_files[name], files[name])
        files[name].chmod(0o644)
        tags.write_genres(files[name], [], None)
    tag = ID3()
    tag.add(TPE1(encoding=1, text=[ARTIST]))
    tag.add(TALB(encoding=1, text=[ALBUM]))
    tag.add(TCON(encoding=1, text=[mp3_genre]))
    tag.save(files["mp3"], v2_version=3)
    at_rest(*files.values())
    return files
