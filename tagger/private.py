"""Files that are the user's alone: the modes of the state directory and of everything tagger
creates in it (the catalogue holds every path and the tag history; the embedding cache, what
was listened to). Base, so that every room creates them the same way."""

from __future__ import annotations

import os
import stat

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def create_private_file(path: str | os.PathLike[str], *, tighten: bool = False) -> None:
    """Create ``path`` empty with mode 0600 when it does not exist (SQLite gives its -wal and
    -shm files the database's mode, so a database stays private as it grows). With
    ``tighten``, an existing file of ours that others may read loses those permissions.
    Never follows a symlink at ``path``."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     PRIVATE_FILE_MODE)
    except FileExistsError:
        if tighten:
            st = os.stat(path)
            if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077:
                os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
        return
    os.close(fd)
