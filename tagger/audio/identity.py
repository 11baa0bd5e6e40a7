"""Content identity: a digest of a file's audio payload that tag edits cannot change.

``content_id(path)`` locates the audio payload of the file by parsing its container and
hashes only that, so the identity stays the same when tags are added, removed, resized or
rewritten (by tagger or by any other tag editor), and differs when the audio differs. What
the payload of each format is, and how it is found, is :mod:`tagger.audio.containers`'s part.

Speed: the payload can be large (a WAV of an album is a gigabyte), so the digest covers the
payload *length* plus at most three 256 KiB samples of it -- its start, its middle and its
end -- rather than every byte; payloads up to 768 KiB are hashed completely. Two files whose
payloads have the same length and the same bytes at those three places get the same id; for
real encoded audio that does not happen short of the same recording. The digest is
``blake2b`` (20-byte digest, 40 hex characters), keyed by the format family and a scheme
version so that ids from different layouts never collide by construction.

A file whose layout cannot be understood raises :class:`~tagger.errors.ReadError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import struct
from typing import BinaryIO

# detect_format, ogg_codec and the container kinds are named here too: the tag readers and
# writers sniff a file through this module
from tagger.audio.containers import Extent, LayoutError, detect_format, ogg_codec, payload_extents
from tagger.errors import ReadError
from tagger.formats import AIFF, ASF, FLAC, MP3, MP4, OGG, WAV

__all__ = [
    "AIFF", "ASF", "DIGEST_SIZE", "FLAC", "MP3", "MP4", "OGG", "SAMPLE_SIZE", "SCHEME", "WAV",
    "audio_payload", "content_id", "content_id_fileobj", "detect_format", "ogg_codec",
    "open_regular",
]

SAMPLE_SIZE = 256 * 1024
DIGEST_SIZE = 20
SCHEME = b"tagger-content-id-v1"


def content_id(path: str | os.PathLike[str]) -> str:
    """Hex digest of the audio payload of ``path``; unchanged by any tag edit.

    Raises ReadError when the file is missing, unreadable, or not a layout we can parse.
    """
    path = os.fspath(path)
    try:
        with open_regular(path) as f:
            return content_id_fileobj(f, path)
    except ReadError:
        raise
    except OSError as exc:
        raise ReadError(_oserror_text(exc), path) from None


def open_regular(path: str) -> BinaryIO:
    """Open a file for reading without ever blocking on it: ``O_NONBLOCK`` (a FIFO swapped in
    after a type check would otherwise hang the open), then refuse anything but a regular file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ReadError("not a regular file (a FIFO, socket or device); not read", path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=64 * 1024)
    except BaseException:
        os.close(fd)
        raise


def content_id_fileobj(f: BinaryIO, path: str = "") -> str:
    """:func:`content_id` of an open binary file; ``path`` names it in errors and its
    extension is the fallback when the content alone is ambiguous."""
    with _layout_errors(path):
        kind, extents = _locate_payload(f, path)
        return _digest(f, kind, extents)


def audio_payload(path: str | os.PathLike[str]) -> bytes:
    """The whole audio payload of ``path``, tags excluded: the bytes :func:`content_id`
    samples (for checks and tools; it reads the whole payload). Raises ReadError as
    :func:`content_id` does."""
    path = os.fspath(path)
    try:
        with open_regular(path) as f, _layout_errors(path):
            _, extents = _locate_payload(f, path)
            return _read_logical(f, extents, 0, sum(length for _, length in extents))
    except ReadError:
        raise
    except OSError as exc:
        raise ReadError(_oserror_text(exc), path) from None


def _locate_payload(f: BinaryIO, path: str) -> tuple[str, list[Extent]]:
    size = os.fstat(f.fileno()).st_size
    kind = detect_format(f, path)
    if kind is None:
        raise ReadError("content id: not a recognised audio container", path or None)
    return kind, payload_extents(f, kind, size)


@contextlib.contextmanager
def _layout_errors(path: str):
    """Every way a payload walk fails, as one ReadError."""
    try:
        yield
    except ReadError:
        raise
    except LayoutError as exc:
        message = f"content id: cannot locate the audio payload: {exc}"
        raise ReadError(message, path or None) from None
    except OSError as exc:
        raise ReadError(_oserror_text(exc), path or None) from None
    except (struct.error, ValueError, IndexError) as exc:  # defensive: malformed numbers
        raise ReadError(f"content id: malformed container ({exc})", path or None) from None


def _oserror_text(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "content id: file vanished (no such file)"
    if isinstance(exc, IsADirectoryError):
        return "content id: is a directory"
    if isinstance(exc, PermissionError):
        return "content id: permission denied"
    return f"content id: {exc.strerror or exc}"


# --------------------------------------------------------------------------- hashing


def _digest(f: BinaryIO, kind: str, extents: list[Extent]) -> str:
    total = sum(length for _, length in extents)
    h = hashlib.blake2b(digest_size=DIGEST_SIZE, person=b"tagger-cid")
    h.update(SCHEME + b"\0" + kind.encode() + b"\0" + total.to_bytes(8, "big"))
    if total <= 3 * SAMPLE_SIZE:
        windows = [(0, total)]
    else:
        mid = total // 2 - SAMPLE_SIZE // 2
        windows = [(0, SAMPLE_SIZE), (mid, SAMPLE_SIZE), (total - SAMPLE_SIZE, SAMPLE_SIZE)]
    for start, length in windows:
        h.update(_read_logical(f, extents, start, length))
    return h.hexdigest()


def _read_logical(f: BinaryIO, extents: list[Extent], start: int, length: int) -> bytes:
    """Read ``length`` bytes at logical offset ``start`` of the payload made of ``extents``."""
    out = bytearray()
    logical = 0
    end = start + length
    for offset, size in extents:
        if logical + size <= start:
            logical += size
            continue
        if logical >= end:
            break
        lo = max(start, logical) - logical
        hi = min(end, logical + size) - logical
        f.seek(offset + lo)
        chunk = f.read(hi - lo)
        if len(chunk) != hi - lo:
            raise LayoutError("payload runs past the end of the file")
        out += chunk
        logical += size
    return bytes(out)
