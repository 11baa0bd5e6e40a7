"""Safe tag writes: the edit goes to a copy in the same folder (checked: audio payload
unchanged, owner, mode and xattrs kept, no holes lost), fsynced, then renamed over the original;
any failure leaves the original byte-identical and one line that says why."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
import stat
from typing import BinaryIO, Callable, Iterator, TypeVar

from tagger.audio import identity
from tagger.errors import ReadError, TaggerError, WriteError
from tagger.library.motion import FileInMotion, open_for_writing
from tagger.results import FailureKind

log = logging.getLogger("tagger.library.tags")
T = TypeVar("T")

TEMP_PREFIX = ".tagger-"
TEMP_SUFFIX = ".tmp"
TEMP_RE = re.compile(r"\A\.tagger-[0-9a-f]{16}\.tmp\Z")


def _signature(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def check_target(path: str) -> tuple[str, os.stat_result]:
    """Resolve symlinks and refuse what must not be replaced; (real path, its stat)."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise WriteError("file vanished (no such file)", path) from None
    except OSError as exc:
        raise WriteError(describe_oserror(exc), path) from None
    if not stat.S_ISREG(st.st_mode):
        raise WriteError("not a regular file; refusing to write tags", path)
    if st.st_mode & 0o222 == 0:
        raise WriteError(
            f"file is read-only (mode {stat.S_IMODE(st.st_mode):04o}); not writing tags", path
        )
    if st.st_nlink > 1:
        raise WriteError(
            f"file has {st.st_nlink} hard links; replacing it would break them, not writing tags",
            path,
        )
    if _has_holes(real, st.st_size):
        raise WriteError(
            "sparse file (it has holes); not writing tags: the rewrite would fill them in", path
        )
    if os.geteuid() != 0:  # os.access is truthful for ordinary users
        if not os.access(real, os.W_OK):
            raise WriteError("permission denied: the file is not writable by this user", path)
        if not os.access(os.path.dirname(real) or ".", os.W_OK | os.X_OK):
            raise WriteError("permission denied: cannot create files in its directory", path)
    return real, st


def _has_holes(path: str, size: int) -> bool:
    """Whether the file has a hole before its end (SEEK_HOLE; a file system that cannot say
    reports none). Its copy would be dense: a 2 GB sparse WAV would take 2 GB more."""
    if not hasattr(os, "SEEK_HOLE") or size == 0:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False  # the open that follows says why
    try:
        return os.lseek(fd, 0, os.SEEK_HOLE) < size
    except OSError:
        return False
    finally:
        os.close(fd)


def _create_temp(directory: str) -> tuple[int, str]:
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0)
    for _ in range(16):
        name = f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
        tmp = os.path.join(directory, name)
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise WriteError("cannot create a temporary file (name collisions)", directory)


def _copy_owner_and_xattrs(src_fd: int, dst_fd: int, st: os.stat_result) -> None:
    # the owner first: a chown clears the setuid and setgid bits the chmod then restores
    if hasattr(os, "fchown"):
        for uid, gid in ((st.st_uid, st.st_gid), (-1, st.st_gid)):
            try:
                os.fchown(dst_fd, uid, gid)
                break
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EINVAL, errno.ENOTSUP):
                    raise
    os.fchmod(dst_fd, stat.S_IMODE(st.st_mode))
    if hasattr(os, "listxattr"):
        try:
            names = os.listxattr(src_fd)
        except OSError:
            names = []
        for name in names:
            try:
                os.setxattr(dst_fd, name, os.getxattr(src_fd, name))
            except OSError:
                pass  # best effort (security.* labels need privileges)


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        log.warning("cannot open %s to fsync it: %s", directory, exc)
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # e.g. EINVAL on filesystems without directory fsync
        log.debug("fsync of directory %s failed: %s", directory, exc)
    finally:
        os.close(fd)


def _payload_id(f: BinaryIO, path: str) -> str | None:
    try:
        return identity.content_id_fileobj(f, path)
    except ReadError:
        return None


@contextlib.contextmanager
def as_write_error(path: str, *, unexpected: bool = False) -> Iterator[None]:
    """Re-raise a failed tag edit as one WriteError with a one-line reason.

    ``unexpected=True`` also converts any other exception (mutagen raises many kinds).
    """
    try:
        yield
    except WriteError:
        raise
    except ReadError as exc:
        raise WriteError(exc.message, path) from None
    except OSError as exc:
        raise WriteError(describe_oserror(exc), path) from None
    except Exception as exc:
        if not unexpected:
            raise
        oserr = find_oserror(exc)
        if oserr is not None:
            raise WriteError(describe_oserror(oserr), path) from None
        raise WriteError(f"cannot write tags: {exc_text(exc)}", path) from None


def safe_rewrite(
    path: str,
    edit: Callable[[BinaryIO], tuple[T, bool]],
    *,
    checked: tuple[str, os.stat_result] | None = None,
    before_replace: Callable[[str], None] | None = None,
) -> T:
    """Apply ``edit`` to a same-directory copy of ``path`` and rename it over the original.

    ``edit(fileobj)`` returns ``(result, changed)``; when ``changed`` is false the copy is
    discarded and the original left alone. Any failure removes the copy and raises WriteError.
    ``before_replace(temp path)`` runs just before the final check (a hook: tests meddle
    with the file there).
    """
    real, st = checked if checked is not None else check_target(path)
    directory = os.path.dirname(real) or "."
    tmp: str | None = None
    try:
        with as_write_error(path, unexpected=True):
            with identity.open_regular(real) as src:
                src_st = os.fstat(src.fileno())
                if _signature(src_st) != _signature(st):
                    raise _changed("file changed on disk while tagging; not written", path)
                fd, tmp = _create_temp(directory)
                with os.fdopen(fd, "w+b") as dst:
                    _copy_contents(src, dst, st.st_size)
                    if _signature(os.fstat(src.fileno())) != _signature(st):
                        raise _changed("file changed on disk while it was being copied", path)
                    if os.fstat(dst.fileno()).st_size != st.st_size:
                        raise WriteError("short copy of the file; not written", path)
                    before = _payload_id(dst, real)
                    result, changed = edit(dst)
                    if not changed:
                        return result
                    dst.flush()
                    if before is not None and _payload_id(dst, real) != before:
                        raise WriteError(
                            "the tag edit would have altered the audio data; aborted", path
                        )
                    os.fsync(dst.fileno())
                    _copy_owner_and_xattrs(src.fileno(), dst.fileno(), st)
            if before_replace is not None:
                before_replace(tmp)
            try:
                now = os.stat(real)
            except FileNotFoundError:
                raise WriteError("file vanished while tagging; not written", path) from None
            if _signature(now) != _signature(st):
                raise _changed("file changed on disk while tagging; not written", path)
            if open_for_writing(real):  # a writer that opened it and has not written yet
                raise FileInMotion("opened for writing by another program while tagging; "
                                   "not written, left for later", path, FailureKind.BUSY)
            os.replace(tmp, real)
            tmp = None
            _fsync_directory(directory)
            return result
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _changed(message: str, path: str) -> FileInMotion:
    return FileInMotion(message, path, FailureKind.CHANGED)


_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM}


def _copy_contents(src: BinaryIO, dst: BinaryIO, size: int) -> None:
    """Copy ``src`` (at its start) into the empty ``dst``, in the kernel where it can.

    ``copy_file_range`` never brings the data into this process (and shares extents on
    filesystems with reflinks, such as btrfs and XFS), so a 50 MB WAV costs a fraction of a
    read/write loop. A refusal (old kernel, a filesystem pair it does not support) falls back
    to the loop. Leaves ``dst`` flushed and positioned at its start.
    """
    if hasattr(os, "copy_file_range"):
        try:
            copied = 0
            while copied < size:
                step = os.copy_file_range(src.fileno(), dst.fileno(), size - copied)
                if step == 0:
                    break  # the file shrank under us: the size check after the copy says so
                copied += step
            dst.seek(0)
            return
        except OSError as exc:
            if exc.errno not in _NO_KERNEL_COPY:
                raise
            src.seek(0)
            dst.seek(0)
            dst.truncate()
    shutil.copyfileobj(src, dst, 1 << 20)
    dst.flush()
    dst.seek(0)


def find_oserror(exc: BaseException) -> OSError | None:
    """The OSError behind an exception (mutagen wraps I/O errors in its own types)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        for arg in getattr(exc, "args", ()):
            if isinstance(arg, OSError) and arg.errno is not None:
                return arg
        exc = exc.__cause__ or exc.__context__
    return None


# the reason given for an OSError of this errno ({name}: the errno's symbol, e.g. EDQUOT)
_OSERROR_REASONS = {
    errno.ENOSPC: "disk full ({name}); file left unchanged",
    errno.EDQUOT: "disk full ({name}); file left unchanged",
    errno.EFBIG: "file size limit reached (EFBIG); file left unchanged",
    errno.ENOENT: "file vanished (no such file)",
    errno.EACCES: "permission denied ({name})",
    errno.EPERM: "permission denied ({name})",
    errno.EROFS: "read-only file system",
    errno.EISDIR: "is a directory",
}


def describe_oserror(exc: OSError, *, reading: bool = False) -> str:
    """One line saying why an OSError stopped a read (``reading``) or a tag write."""
    code = exc.errno
    name = errno.errorcode.get(code, str(code)) if code is not None else ""
    reason = _OSERROR_REASONS.get(code)
    if reason is not None:
        return reason.format(name=name)
    text = exc.strerror or str(exc)
    verb = "cannot read" if reading else "cannot write tags"
    return f"{verb}: {text} ({name})" if name else f"{verb}: {text}"


def exc_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, TaggerError):
        return exc.message
    where = type(exc).__module__.split(".")[0]
    name = type(exc).__name__ if where == "builtins" else f"{where} {type(exc).__name__}"
    if not text:
        # mutagen turns "ran out of data" into a bare OSError() wrapped in its own error
        inner = exc.__cause__ or exc.__context__
        if isinstance(inner, OSError) and inner.errno is None:
            return f"{name}: truncated or malformed data"
        return f"{name} (no details)"
    return f"{name}: {text}"
