"""ID3v2 genre tags, for MP3, WAV (``id3 `` chunk) and AIFF (``ID3 `` chunk).

Fields: ``TCON`` (one frame, several NUL-separated values when there are several genres) and
``TXXX:TAGGER_GENRE_CONFIDENCE`` (a user text frame). What ``TCON`` stores in the legacy
numeric form (``17``, ``(4)Eurodisco``) is read as the ID3v1 genres it names
(:func:`tcon_genres`); no other tag format's genre is read as a number.

Version policy. A file whose tag is ID3v2.3 stays ID3v2.3 when tagger saves it; only a file
with no ID3v2 tag at all (or an ID3v2.4 one) gets ID3v2.4. Upgrading would rewrite every
other frame of the user's tag (TYER/TDAT/TIME folded into TDRC, frames that v2.3 readers do
not know, UTF-8 text that some v2.3-only players, Windows Explorer among them, cannot show),
which is not ours to do. So the tag is loaded *without* mutagen's v2.4 translation
(``translate=False``): the other frames keep exactly their loaded form and are written back
in the version they came in. ID3v2.2 tags cannot be written by mutagen; they are converted
to ID3v2.3, the closest version (this is the one case where frames are translated).
In a v2.3 tag several genres are written NUL-separated (mutagen's ``v23_sep=None``) rather
than joined with "/": the values then read back as the same list, and frames of the user's
tag that already held NUL-separated values are written back unchanged rather than joined.

ID3v1 (MP3 only): an ID3v1 genre byte counts as the existing genre when there is no v2
``TCON``; the ID3v1 tag itself is never modified -- its bytes (and anything after the
ID3v2 tag, i.e. the audio, APEv2, Lyrics3) are verified to be identical after the save.
"""

from __future__ import annotations

from typing import BinaryIO

import mutagen.aiff
import mutagen.mp3
import mutagen.wave
from mutagen.id3 import ID3, TCON, TXXX, Encoding, Frame, ID3NoHeaderError, ID3v1SaveOptions

from tagger.audio.identity import AIFF, MP3, WAV
from tagger.library.genres import id3_references
from tagger.library.tags.base import BaseEditor, FieldKeys, TagFormatError

GENRE = "TCON"

_TAIL_CHECK = 4096  # bytes at the end of an MP3 verified unchanged by the save


class Editor(BaseEditor):
    """The ID3v2 tag of one open file (MP3, WAV or AIFF)."""

    KEYS = FieldKeys("ID3v2", genre=GENRE, confidence="TXXX:TAGGER_GENRE_CONFIDENCE",
                     artist=("TPE1", "TPE2"), album=("TALB",), album_artist=("TPE2",),
                     mb_album_id=("TXXX:MusicBrainz Album Id",), compilation=("TCMP",))

    def __init__(self, fileobj: BinaryIO, container: str):
        self.container = container
        self._audio = None
        self.v1_genre: str | None = None
        if container == MP3:
            mutagen.mp3.MP3(fileobj)  # validates the MPEG stream; raises if there is none
            fileobj.seek(0)
            try:
                self.tags = ID3(fileobj, translate=False, load_v1=False)
            except ID3NoHeaderError:
                self.tags = ID3()
            self.v1_genre = _id3v1_genre(fileobj)
        elif container in (WAV, AIFF):
            cls = mutagen.wave.WAVE if container == WAV else mutagen.aiff.AIFF
            self._attach(cls(fileobj, translate=False, load_v1=False))
            if container == WAV:  # a genre set by a WAV tool counts as the user's (if_empty)
                self.v1_genre = _riff_info_genre(fileobj)
        else:  # pragma: no cover - dispatch guarantees the container
            raise ValueError(container)
        loaded = tuple(self.tags.version[:2]) if getattr(self.tags, "_header", None) else None
        if loaded is not None and loaded < (2, 3):
            self.tags.update_to_v23()  # v2.2 frames cannot be written; v2.3 is the nearest
            self.version = 3
        elif loaded == (2, 3):
            self.version = 3
        else:
            self.version = 4

    # ---------------------------------------------------------------- reading

    def existing_genres(self) -> list[str]:
        frame = self.tags.get(GENRE)
        if frame is not None:
            genres = tcon_genres(frame.text)
            if genres:
                return genres
        if self.v1_genre:
            return [self.v1_genre]
        return []

    def _decode(self, field: str, stored: Frame) -> tuple[str, ...]:
        return tuple(str(t) for t in stored.text)

    # ---------------------------------------------------------------- writing

    def set(self, field: str, values: tuple[str, ...] | None) -> None:
        old = self.tags.get(field)
        self.tags.delall(field)
        if values is None:
            return
        encoding = self._encoding(values, getattr(old, "encoding", None))
        if field == GENRE:
            self.tags.add(TCON(encoding=encoding, text=list(values)))
        elif field.startswith("TXXX:"):
            self.tags.add(TXXX(encoding=encoding, desc=field[5:], text=list(values)))
        else:  # pragma: no cover - guarded by KEYS.fields
            raise ValueError(field)

    def _encoding(self, values: tuple[str, ...], keep: Encoding | None = None) -> Encoding:
        """UTF-8 in v2.4, else Latin-1 when it can hold the values, else UTF-16; but the
        encoding of the frame being replaced when it can hold them (so that a restore puts
        the user's frame back byte for byte)."""
        if keep is not None and (self.version == 4 or keep != Encoding.UTF8):
            try:
                if keep == Encoding.LATIN1:
                    for v in values:
                        v.encode("latin-1")
                return keep
            except UnicodeEncodeError:
                pass
        if self.version == 4:
            return Encoding.UTF8
        try:
            for v in values:
                v.encode("latin-1")
        except UnicodeEncodeError:
            return Encoding.UTF16
        return Encoding.LATIN1

    def padding_now(self) -> int | None:
        if getattr(self.tags, "_header", None) is None:
            return None  # no ID3v2 tag yet: nothing to give back
        padding = getattr(self.tags, "_padding", None)  # mutagen's count after the frames
        return padding if type(padding) is int and padding >= 0 else None

    def save(self, fileobj: BinaryIO) -> None:
        if self.container != MP3:
            self._audio.save(fileobj, v2_version=self.version, v23_sep=None,
                             padding=self.padding)
            return
        _save_mp3(self.tags, fileobj, self.version, self.padding)


def tcon_genres(texts) -> list[str]:
    """The genres a ``TCON`` frame's values name: its ID3v1 references resolved
    (:func:`tagger.library.genres.id3_references`: ``17`` and ``(17)`` are Rock). The ID3 tag
    is the one place a genre is read as a number."""
    return [g for text in texts for g in id3_references(str(text)) if g]


def _id3v2_region(fileobj: BinaryIO) -> int:
    """Size of the ID3v2 tag at the start of the file as mutagen counts it (0 if none)."""
    fileobj.seek(0)
    h = fileobj.read(10)
    if len(h) == 10 and h[:3] == b"ID3":
        return 10 + ((h[6] << 21) | (h[7] << 14) | (h[8] << 7) | h[9])
    return 0


def _save_mp3(tags: ID3, fileobj: BinaryIO, version: int, padding=None) -> None:
    """Save the v2 tag only: everything after it (audio, APE, ID3v1) must stay byte-identical.

    mutagen's ID3.save either regenerates an existing ID3v1 tag from the v2 frames or removes
    it; there is no "leave it alone". So save with REMOVE and put the exact bytes back.
    """
    fileobj.seek(0, 2)
    old_total = fileobj.tell()
    old_v2 = _id3v2_region(fileobj)
    tail_len = max(0, min(_TAIL_CHECK, old_total - old_v2))
    fileobj.seek(old_total - tail_len)
    tail = fileobj.read(tail_len)

    fileobj.seek(0)
    tags.save(fileobj, v1=ID3v1SaveOptions.REMOVE, v2_version=version, v23_sep=None,
              padding=padding)

    fileobj.seek(0, 2)
    new_total = fileobj.tell()
    new_v2 = _id3v2_region(fileobj)
    expected = old_total - old_v2 + new_v2
    missing = expected - new_total
    if missing < 0 or missing > tail_len:
        raise TagFormatError("ID3 save changed the data after the tag unexpectedly")
    if missing:
        fileobj.seek(new_total)
        fileobj.write(tail[tail_len - missing:])
    fileobj.flush()
    fileobj.seek(expected - tail_len)
    if fileobj.read(tail_len) != tail:
        raise TagFormatError("ID3 save changed the data after the tag unexpectedly")


def _riff_info_genre(fileobj: BinaryIO) -> str | None:
    """The ``IGNR`` entry of a WAV's ``LIST/INFO`` chunk (mutagen reads only the ID3 chunk)."""
    fileobj.seek(0, 2)
    size = fileobj.tell()
    fileobj.seek(0)
    header = fileobj.read(12)
    if len(header) < 12 or header[:4] not in (b"RIFF", b"RF64") or header[8:12] != b"WAVE":
        return None
    offset = 12
    for _ in range(4096):  # chunks; a damaged file must not loop
        fileobj.seek(offset)
        head = fileobj.read(8)
        if len(head) < 8:
            return None
        chunk_id, length = head[:4], int.from_bytes(head[4:], "little")
        if chunk_id == b"LIST" and length >= 4 and fileobj.read(4) == b"INFO":
            body = fileobj.read(min(length - 4, 1 << 20))
            pos = 0
            while pos + 8 <= len(body):
                sub, sub_len = body[pos:pos + 4], int.from_bytes(body[pos + 4:pos + 8], "little")
                if sub == b"IGNR":
                    raw = body[pos + 8:pos + 8 + sub_len].split(b"\0")[0].strip()
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        text = raw.decode("latin-1")
                    return text or None
                pos += 8 + sub_len + (sub_len & 1)
            return None
        offset += 8 + length + (length & 1)
        if offset >= size or length == 0xFFFFFFFF:
            return None
    return None


def _id3v1_genre(fileobj: BinaryIO) -> str | None:
    fileobj.seek(0, 2)
    size = fileobj.tell()
    if size < 128:
        return None
    fileobj.seek(size - 128)
    block = fileobj.read(128)
    if block[:3] != b"TAG":
        return None
    index = block[127]
    if index < len(TCON.GENRES):
        return TCON.GENRES[index]
    return None  # 255: no genre
