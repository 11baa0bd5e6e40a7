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
between the copy and the rename. Nor is a file in motion written
(:mod:`tagger.library.motion`): one open for writing by any process (checked before the copy
and again right before the rename), modified within the caller's settle time, or no longer the
file the caller read; that refusal is a :class:`~tagger.library.motion.FileInMotion`, a
transient failure to retry later. A symlink is followed: the file it points to is replaced
and the link keeps pointing at it.

Every failure surfaces as :class:`~tagger.errors.ReadError` (from :func:`read_genres`) or
:class:`~tagger.errors.WriteError` (from :func:`write_genres` and :func:`restore`) with a
one-line reason; the original file is then byte-identical to what it was.

mtime: a write that changes something replaces the file, so its mtime (and inode) change;
a caller that tracks files by stat must re-``stat`` the path after a write that returned
changes. A write that changes nothing does not touch the file at all.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import stat
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable, Sequence, TypeVar

from tagger import formats
from tagger.audio import identity
from tagger.errors import ReadError, WriteError
from tagger.library.motion import AtRest
from tagger.library.tags import asf, id3, mp4, vorbis
from tagger.library.tags.safe_write import (
    TEMP_PREFIX,
    TEMP_RE,
    TEMP_SUFFIX,
    as_write_error,
    check_target,
    describe_oserror,
    exc_text,
    find_oserror,
    safe_rewrite,
)

__all__ = [
    "TagChange",
    "TagInfo",
    "read_genres",
    "read_info",
    "write_genres",
    "restore",
    "supported",
    "sweep_stale_temp_files",
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
]


log = logging.getLogger(__name__)


SUPPORTED_EXTENSIONS = frozenset("." + ext for ext in formats.EXTENSIONS)  # tagger/formats.py


T = TypeVar("T")


@dataclass(frozen=True)
class TagChange:
    """One field's change in one file: ``old`` -> ``new`` (None: the field is absent)."""

    path: str
    field: str
    old: tuple[str, ...] | None
    new: tuple[str, ...] | None
    #: where ``old`` sat in the file's tag, in the format's own terms (JSON-able; Vorbis: the
    #: comments' places and names, and the padding): what :func:`restore` needs to give the
    #: file back byte for byte. None where the format records none.
    old_layout: dict | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class TagInfo:
    """What a file's tags say about it, as :func:`read_info` reads them in one open."""

    artist: str | None  # the track artist (the album artist when there is none)
    album: str | None
    genres: list[str]  # as :func:`read_genres` returns them (raw, not normalised)
    # what identifies the album (tagger.library.albums), as Picard and beets write it
    album_artist: str | None = None
    mb_album_id: str | None = None  # MusicBrainz release id
    compilation: bool = False  # TCMP / cpil / COMPILATION / WM/IsCompilation says yes


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
            return open_editor(f, spath).existing_genres()
    except ReadError:
        raise
    except OSError as exc:
        raise ReadError(describe_oserror(exc, reading=True), spath) from None


def read_info(path: str | os.PathLike[str]) -> TagInfo:
    """Artist, album, the genres (as :func:`read_genres`) and what identifies the album
    (album artist, MusicBrainz album id, compilation flag) of a file, in one open; the scan's
    one tag read per track. Raises ReadError as :func:`read_genres` does."""
    spath = os.fspath(path)
    try:
        with identity.open_regular(spath) as f:  # never blocks on a FIFO
            editor = open_editor(f, spath)
            keys = editor.KEYS
            return TagInfo(editor.first_text(keys.artist), editor.first_text(keys.album),
                           editor.existing_genres(),
                           album_artist=editor.first_text(keys.album_artist),
                           mb_album_id=editor.first_text(keys.mb_album_id),
                           compilation=editor.flag(keys.compilation))
    except ReadError:
        raise
    except OSError as exc:
        raise ReadError(describe_oserror(exc, reading=True), spath) from None


def write_genres(
    path: str | os.PathLike[str],
    genres: Sequence[str],
    confidence: float | None,
    *,
    dry_run: bool = False,
    at_rest: AtRest = AtRest(),
    drop_confidence: bool = False,
) -> list[TagChange]:
    """Set the file's genre (and confidence, when not None); return what changed.

    ``genres``: the values to write, in order (surrounding whitespace stripped, empty ones
    and duplicates dropped; a single ``str`` is one genre). An empty sequence removes the
    genre field. ``confidence`` is written as a decimal with 3 places (``"0.873"``); None
    leaves any existing confidence field as it is, or with ``drop_confidence`` removes it
    (a genre the user gave is no prediction).

    Returns one :class:`TagChange` per field whose value differs, old -> new; [] when the
    file already says exactly this, in which case it is not touched at all. Otherwise the
    file is replaced atomically (see the module docstring), so its mtime changes.
    ``dry_run=True`` runs every check and computes the same list without writing anything.
    ``at_rest``: what the file must be to be written (:class:`tagger.library.motion.AtRest`;
    by default only: not open for writing by any process).

    Raises FileInMotion (a WriteError: busy or changed, try again later) when the file is not
    at rest; WriteError (one-line reason; the file left byte-identical) on any failure;
    ValueError/TypeError for invalid arguments (a non-finite confidence, a non-str genre).
    """
    spath = os.fspath(path)
    want_genres = _normalise_genres(genres)
    want_conf = _format_confidence(confidence)

    def plan(editor) -> list[TagChange]:
        return _plan(spath, editor, editor.desired(want_genres, want_conf, drop_confidence))

    return _edit(spath, plan, dry_run=dry_run, at_rest=at_rest)


def restore(path: str | os.PathLike[str], changes: Sequence[TagChange], *,
            at_rest: AtRest = AtRest()) -> None:
    """Put back the ``old`` values of ``changes`` (deleting fields whose old was None).

    Same safety as :func:`write_genres`. ``TagChange.path`` is not consulted (the file may
    have been renamed since); ``path`` is the file. When a field occurs more than once, its
    first occurrence wins (changes recorded oldest first restore to the oldest value), with
    its ``old_layout``: the values go back where and as they were, and the tag's padding
    with them, so that a file tagger wrote and nobody touched since is the original byte
    for byte (Vorbis comments; ID3 tags whose frames are in the order mutagen writes; MP4
    tags that had a ``free`` atom).
    Raises WriteError on failure, including a field that does not belong to the file's tag
    format (e.g. ``TCON`` changes applied to a FLAC file).
    """
    spath = os.fspath(path)
    want: dict[str, tuple[str, ...] | None] = {}
    layouts: dict[str, dict | None] = {}
    for change in changes:
        want.setdefault(change.field, None if change.old is None else tuple(change.old))
        layouts.setdefault(change.field, getattr(change, "old_layout", None))
    if not want:
        return

    def plan(editor) -> list[TagChange]:
        keys = editor.KEYS
        unknown = [f for f in want if f not in keys.fields]
        if unknown:
            raise WriteError(
                f"cannot restore field {unknown[0]!r}: not a {keys.format} field tagger writes",
                spath,
            )
        editor.place(layouts)  # the old values go back where, and as, they were
        return _plan(spath, editor, want)

    _edit(spath, plan, dry_run=False, at_rest=at_rest)


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
        if not TEMP_RE.match(entry.name):
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
            changes.append(TagChange(path, field, old, new, editor.layout(field)))
    return changes


_KIND_NAMES = {
    identity.MP3: "MP3", identity.FLAC: "FLAC", identity.OGG: "Ogg", identity.MP4: "MP4",
    identity.WAV: "WAV", identity.AIFF: "AIFF", identity.ASF: "ASF/WMA",
}


_OGG_KINDS = {"vorbis": "ogg-vorbis", "opus": "ogg-opus", "flac": "ogg-flac"}


def open_editor(f: BinaryIO, path: str):
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
        oserr = find_oserror(exc)
        if oserr is not None:
            raise oserr from None
        name = _KIND_NAMES.get(kind, str(kind))
        raise ReadError(f"cannot parse the {name} file: {exc_text(exc)}", path) from None
    raise ReadError("not a supported audio file (unrecognised content)", path)


def _edit(path: str, plan: Callable[[object], list[TagChange]], *, dry_run: bool,
          at_rest: AtRest):
    real, st = check_target(path)
    at_rest.check(path, st)
    # plan on the original first: nothing to change means nothing to write
    with as_write_error(path), identity.open_regular(real) as f:
        changes = plan(open_editor(f, path))
    if dry_run or not changes:
        return changes

    def edit(tmp: BinaryIO) -> tuple[list[TagChange], bool]:
        editor = open_editor(tmp, path)
        done = plan(editor)
        if not done:
            return done, False
        for change in done:
            editor.set(change.field, change.new)
        tmp.seek(0)  # mutagen reads headers from the current position
        editor.save(tmp)
        return done, True

    return safe_rewrite(path, edit, checked=(real, st))
