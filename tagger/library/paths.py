"""Where tagger may write, and how: the private state directory, private files in it, and the
rule for symlinks in the library (followed only when they stay inside a library root)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from tagger.errors import WriteError
from tagger.private import (  # noqa: F401  (the library's names for them, as always)
    PRIVATE_DIR_MODE,
    PRIVATE_FILE_MODE,
    create_private_file,
)


def _why(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return "it (or a folder above it) is not a folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return exc.strerror or str(exc)


def private_dir(path: str | os.PathLike[str], what: str = "state directory") -> Path:
    """Create ``path`` (mode 0700) or tighten it to 0700 when it is ours, and check that
    files can really be written there (a probe of one block, removed at once).

    Raises WriteError with one line (exit 3) when it cannot be used: a regular file in the
    way, a full disk, a read-only or pseudo file system such as /proc.
    """
    path = Path(path).expanduser()
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        st = os.stat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")
        if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != PRIVATE_DIR_MODE:
            os.chmod(path, PRIVATE_DIR_MODE)
        probe = path / f".tagger-probe-{os.getpid()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                     PRIVATE_FILE_MODE)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            try:
                os.unlink(probe)
            except OSError:
                pass
    except OSError as exc:
        raise WriteError(f"cannot use the {what} {path}: {_why(exc)}") from None
    return path


# ------------------------------------------------------------------ symlinks and file types


def real_roots(roots) -> tuple[str, ...]:
    """The library roots with every symlink resolved (what "inside the library" is)."""
    return tuple(os.path.realpath(os.path.abspath(r)) for r in roots)


def is_inside(path: str, roots: tuple[str, ...]) -> bool:
    """Whether ``path``, symlinks resolved, lies in one of the (already resolved) ``roots``.

    With no roots known, only a path reached without any symlink counts as inside."""
    real = os.path.realpath(path)
    if not roots:
        return real == os.path.normpath(os.path.abspath(path))
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


OUTSIDE_LINK = "a symlink to outside the library"


def outside_reason(path: str) -> str:
    """Why a path leading outside the roots is not followed, for the log and the catalogue."""
    return f"{OUTSIDE_LINK} ({os.path.realpath(path)}); not followed (library.follow_symlinks)"


def special_file_reason(path: str) -> str | None:
    """None for a regular file (symlinks followed); else why it must not be opened at all:
    a FIFO blocks whoever opens it, a device may be anything."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # the open that follows says why
    if stat.S_ISREG(mode):
        return None
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else
            "a socket" if stat.S_ISSOCK(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
            "a folder" if stat.S_ISDIR(mode) else "not a regular file")
    return f"{kind}, not an audio file; not opened"


def printable_name(path: str) -> str:
    """A path whose name is not valid UTF-8, as text the catalogue can hold (bad bytes as
    ``\\xNN``): it names the file in the log and the catalogue; it cannot be tagged."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
