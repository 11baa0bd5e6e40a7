"""Reading and safely writing genre tags, one module per tag format (after mutagen's layout).

==========================  ==========  ======================================================
container                   module      fields: genre, then confidence
==========================  ==========  ======================================================
MP3, WAV, AIFF              ``id3``     ``TCON``, ``TXXX:TAGGER_GENRE_CONFIDENCE``
FLAC, Ogg Vorbis/Opus/FLAC  ``vorbis``  ``GENRE``, ``TAGGER_GENRE_CONFIDENCE``
M4A/MP4                     ``mp4``     ``©gen`` (legacy ``gnre`` read, and removed on write),
                                        ``----:com.apple.iTunes:TAGGER_GENRE_CONFIDENCE``
WMA                         ``asf``     ``WM/Genre``, ``TAGGER_GENRE_CONFIDENCE``
==========================  ==========  ======================================================

The container is recognised by content (:func:`tagger.audio.identity.detect_format`), not by the
file name; :func:`supported` is a cheap name-only pre-check for scanners.

Safety. Every write goes through :func:`_safe_rewrite`: the original is never opened for
writing. It is copied to ``.tagger-<16 hex>.tmp`` in the same directory, mutagen edits the
copy, the copy is checked (its audio payload identity must be unchanged), fsynced, given the
original's mode, owner (when permitted) and extended attributes, and renamed over the
original with ``os.replace``, after which the directory is fsynced. A SIGKILL at any instant
therefore leaves either the untouched original or the complete new file, plus at worst a
stale temp file that :func:`sweep_stale_temp_files` removes. The write is refused, and
nothing is touched, when the path is not a regular file, is read-only (by its mode bits:
``os.access`` says yes to root for everything), has more than one hard link (the rename would
split it from its other names), or when the file changes on disk (size, mtime, ctime or inode)
between the copy and the rename. A symlink is followed: the file it points to is replaced
and the link keeps pointing at it.

Every failure surfaces as :class:`~tagger.errors.ReadError` (from :func:`read_genres`) or
:class:`~tagger.errors.WriteError` (from :func:`write_genres` and :func:`restore`) with a
one-line reason; the original file is then byte-identical to what it was.

mtime: a write that changes something replaces the file, so its mtime (and inode) change;
a caller that tracks files by stat must re-``stat`` the path after a write that returned
changes. A write that changes nothing does not touch the file at all.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import re
import secrets
import shutil
import stat
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator, Sequence, TypeVar

from tagger import formats
from tagger.audio import identity
from tagger.errors import ReadError, TaggerError, WriteError
from tagger.library.tags import asf, id3, mp4, vorbis

__all__ = [
    "TagChange",
    "read_genres",
    "write_genres",
    "restore",
    "supported",
    "sweep_stale_temp_files",
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
]

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tagger-"
TEMP_SUFFIX = ".tmp"
_TEMP_RE = re.compile(r"\A\.tagger-[0-9a-f]{16}\.tmp\Z")

SUPPORTED_EXTENSIONS = frozenset("." + ext for ext in formats.EXTENSIONS)  # tagger/formats.py

T = TypeVar("T")


@dataclass(frozen=True)
class TagChange:
    """One field's change in one file: ``old`` -> ``new`` (None: the field is absent)."""

    path: str
    field: str
    old: tuple[str, ...] | None
    new: tuple[str, ...] | None


# --------------------------------------------------------------------------- public API


def supported(path: str | os.PathLike[str]) -> bool:
    """Whether tagger can tag a file of this name (by extension; no I/O).

    The content still decides at read/write time: a ``.ogg`` holding Speex or Theora, or a
    file whose content is not what its name says, fails there with a ReadError/WriteError.
    """
    return os.path.splitext(os.fspath(path))[1].lower() in SUPPORTED_EXTENSIONS


def read_genres(path: str | os.PathLike[str]) -> list[str]:
    """The file's existing genre values, in order; [] when it has none.

    MP3: the ID3v1 genre counts when there is no ID3v2 ``TCON``; MP4: the legacy ``gnre``
    atom counts when there is no ``©gen``. Raises ReadError when the file is missing,
    unreadable, not a supported container, or its tags cannot be parsed.
    """
    spath = os.fspath(path)
    try:
        with identity.open_regular(spath) as f:  # never blocks on a FIFO
            return _open_editor(f, spath).existing_genres()
    except ReadError:
        raise
    except OSError as exc:
        raise ReadError(_describe_oserror(exc, reading=True), spath) from None


def write_genres(
    path: str | os.PathLike[str],
    genres: Sequence[str],
    confidence: float | None,
    *,
    dry_run: bool = False,
) -> list[TagChange]:
    """Set the file's genre (and confidence, when not None); return what changed.

    ``genres``: the values to write, in order (surrounding whitespace stripped, empty ones
    and duplicates dropped; a single ``str`` is one genre). An empty sequence removes the
    genre field. ``confidence`` is written as a decimal with 3 places (``"0.873"``); None
    leaves any existing confidence field as it is.

    Returns one :class:`TagChange` per field whose value differs, old -> new; [] when the
    file already says exactly this, in which case it is not touched at all. Otherwise the
    file is replaced atomically (see the module docstring), so its mtime changes.
    ``dry_run=True`` runs every check and computes the same list without writing anything.

    Raises WriteError (one-line reason; the file left byte-identical) on any failure;
    ValueError/TypeError for invalid arguments (a non-finite confidence, a non-str genre).
    """
    spath = os.fspath(path)
    want_genres = _normalise_genres(genres)
    want_conf = _format_confidence(confidence)

    def plan(editor) -> list[TagChange]:
        return _plan(spath, editor, editor.desired(want_genres, want_conf))

    return _edit(spath, plan, dry_run=dry_run)


def restore(path: str | os.PathLike[str], changes: Sequence[TagChange]) -> None:
    """Put back the ``old`` values of ``changes`` (deleting fields whose old was None).

    Same safety as :func:`write_genres`. ``TagChange.path`` is not consulted (the file may
    have been renamed since); ``path`` is the file. When a field occurs more than once, its
    first occurrence wins (changes recorded oldest first restore to the oldest value).
    Raises WriteError on failure, including a field that does not belong to the file's tag
    format (e.g. ``TCON`` changes applied to a FLAC file).
    """
    spath = os.fspath(path)
    want: dict[str, tuple[str, ...] | None] = {}
    for change in changes:
        want.setdefault(change.field, None if change.old is None else tuple(change.old))
    if not want:
        return

    def plan(editor) -> list[TagChange]:
        unknown = [f for f in want if f not in editor.FIELDS]
        if unknown:
            raise WriteError(
                f"cannot restore field {unknown[0]!r}: not a {editor.FORMAT} field tagger writes",
                spath,
            )
        return _plan(spath, editor, want)

    _edit(spath, plan, dry_run=False)


def sweep_stale_temp_files(
    directory: str | os.PathLike[str], *, min_age_seconds: float = 0.0
) -> list[str]:
    """Remove temp files a killed write left in ``directory``; return their paths.

    Only regular files named exactly like ours (``.tagger-`` + 16 hex digits + ``.tmp``) are
    removed. Run it when no write to that directory is in progress (e.g. at start-up), or
    pass ``min_age_seconds`` to spare temp files younger than that (a write in progress; a
    write whose temp file is swept fails safely with WriteError, the original untouched).
    """
    removed: list[str] = []
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    except OSError as exc:
        log.warning("cannot list %s for stale temp files: %s", directory, exc)
        return removed
    for entry in entries:
        if not _TEMP_RE.match(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < min_age_seconds:
                continue
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot remove stale temp file %s: %s", entry.path, exc)
            continue
        removed.append(entry.path)
    return removed


# --------------------------------------------------------------------------- planning


def _normalise_genres(genres: Sequence[str]) -> tuple[str, ...] | None:
    if isinstance(genres, str):
        genres = [genres]
    out: list[str] = []
    for g in genres:
        if not isinstance(g, str):
            raise TypeError(f"genre must be str, got {type(g).__name__}")
        g = g.replace("\x00", "").strip()
        if g and g not in out:
            out.append(g)
    return tuple(out) or None


def _format_confidence(confidence: float | None) -> str | None:
    if confidence is None:
        return None
    value = float(confidence)
    if not math.isfinite(value):
        raise ValueError(f"confidence must be a finite number, got {confidence!r}")
    return f"{value:.3f}"


def _plan(path: str, editor, want: dict) -> list[TagChange]:
    changes = []
    for field, new in want.items():
        old = editor.get(field)
        if old != new:
            changes.append(TagChange(path, field, old, new))
    return changes


_KIND_NAMES = {
    identity.MP3: "MP3", identity.FLAC: "FLAC", identity.OGG: "Ogg", identity.MP4: "MP4",
    identity.WAV: "WAV", identity.AIFF: "AIFF", identity.ASF: "ASF/WMA",
}
_OGG_KINDS = {"vorbis": "ogg-vorbis", "opus": "ogg-opus", "flac": "ogg-flac"}


def _open_editor(f: BinaryIO, path: str):
    """The format module's Editor for an open file; ReadError if it is not taggable."""
    kind = identity.detect_format(f, path)
    f.seek(0)  # mutagen reads from the current position
    try:
        if kind in (identity.MP3, identity.WAV, identity.AIFF):
            return id3.Editor(f, kind)
        if kind == identity.FLAC:
            return vorbis.Editor(f, "flac")
        if kind == identity.OGG:
            codec = identity.ogg_codec(f)
            if codec not in _OGG_KINDS:
                raise ReadError(f"Ogg {codec or 'unknown'} streams are not supported", path)
            f.seek(0)
            return vorbis.Editor(f, _OGG_KINDS[codec])
        if kind == identity.MP4:
            return mp4.Editor(f)
        if kind == identity.ASF:
            return asf.Editor(f)
    except ReadError:
        raise
    except OSError:
        raise
    except Exception as exc:  # mutagen raises many types (MutagenError, struct.error, ...)
        oserr = _find_oserror(exc)
        if oserr is not None:
            raise oserr from None
        name = _KIND_NAMES.get(kind, str(kind))
        raise ReadError(f"cannot parse the {name} file: {_exc_text(exc)}", path) from None
    raise ReadError("not a supported audio file (unrecognised content)", path)


def _edit(path: str, plan: Callable[[object], list[TagChange]], *, dry_run: bool):
    real, st = _check_target(path)
    # plan on the original first: nothing to change means nothing to write
    with _as_write_error(path), identity.open_regular(real) as f:
        changes = plan(_open_editor(f, path))
    if dry_run or not changes:
        return changes

    def edit(tmp: BinaryIO) -> tuple[list[TagChange], bool]:
        editor = _open_editor(tmp, path)
        done = plan(editor)
        if not done:
            return done, False
        for change in done:
            editor.set(change.field, change.new)
        tmp.seek(0)  # mutagen reads headers from the current position
        editor.save(tmp)
        return done, True

    return _safe_rewrite(path, edit, checked=(real, st))


# --------------------------------------------------------------------------- the safe write


def _signature(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _check_target(path: str) -> tuple[str, os.stat_result]:
    """Resolve symlinks and refuse what must not be replaced; (real path, its stat)."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise WriteError("file vanished (no such file)", path) from None
    except OSError as exc:
        raise WriteError(_describe_oserror(exc), path) from None
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
    os.fchmod(dst_fd, stat.S_IMODE(st.st_mode))
    if hasattr(os, "fchown"):
        for uid, gid in ((st.st_uid, st.st_gid), (-1, st.st_gid)):
            try:
                os.fchown(dst_fd, uid, gid)
                break
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EINVAL, errno.ENOTSUP):
                    raise
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
def _as_write_error(path: str, *, unexpected: bool = False) -> Iterator[None]:
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
        raise WriteError(_describe_oserror(exc), path) from None
    except Exception as exc:
        if not unexpected:
            raise
        oserr = _find_oserror(exc)
        if oserr is not None:
            raise WriteError(_describe_oserror(oserr), path) from None
        raise WriteError(f"cannot write tags: {_exc_text(exc)}", path) from None


def _safe_rewrite(
    path: str,
    edit: Callable[[BinaryIO], tuple[T, bool]],
    *,
    checked: tuple[str, os.stat_result] | None = None,
    _before_replace: Callable[[str], None] | None = None,
) -> T:
    """Apply ``edit`` to a same-directory copy of ``path`` and rename it over the original.

    ``edit(fileobj)`` returns ``(result, changed)``; when ``changed`` is false the copy is
    discarded and the original left alone. Any failure removes the copy and raises WriteError.
    ``_before_replace`` is a test seam, called with the temp path just before the final check.
    """
    real, st = checked if checked is not None else _check_target(path)
    directory = os.path.dirname(real) or "."
    tmp: str | None = None
    try:
        with _as_write_error(path, unexpected=True):
            with identity.open_regular(real) as src:
                src_st = os.fstat(src.fileno())
                if _signature(src_st) != _signature(st):
                    raise WriteError("file changed on disk while tagging; not written", path)
                fd, tmp = _create_temp(directory)
                with os.fdopen(fd, "w+b") as dst:
                    _copy_contents(src, dst, st.st_size)
                    if _signature(os.fstat(src.fileno())) != _signature(st):
                        raise WriteError("file changed on disk while it was being copied", path)
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
            if _before_replace is not None:
                _before_replace(tmp)
            try:
                now = os.stat(real)
            except FileNotFoundError:
                raise WriteError("file vanished while tagging; not written", path) from None
            if _signature(now) != _signature(st):
                raise WriteError("file changed on disk while tagging; not written", path)
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


# --------------------------------------------------------------------------- error text


def _find_oserror(exc: BaseException) -> OSError | None:
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


def _describe_oserror(exc: OSError, *, reading: bool = False) -> str:
    code = exc.errno
    name = errno.errorcode.get(code, str(code)) if code is not None else ""
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full ({name}); file left unchanged"
    if code == errno.EFBIG:
        return "file size limit reached (EFBIG); file left unchanged"
    if code == errno.ENOENT:
        return "file vanished (no such file)"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied ({name})"
    if code == errno.EROFS:
        return "read-only file system"
    if code == errno.EISDIR:
        return "is a directory"
    text = exc.strerror or str(exc)
    verb = "cannot read" if reading else "cannot write tags"
    return f"{verb}: {text} ({name})" if name else f"{verb}: {text}"


def _exc_text(exc: BaseException) -> str:
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
