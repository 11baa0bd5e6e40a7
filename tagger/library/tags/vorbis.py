"""Vorbis comment genre tags, for FLAC, Ogg Vorbis, Ogg Opus and Ogg FLAC.

Fields: ``GENRE`` (one comment per genre when there are several) and
``TAGGER_GENRE_CONFIDENCE``. Vorbis comment names are case-insensitive: an existing
``genre=`` or ``Genre=`` comment is the genre field, and is replaced (not duplicated) on
write. Other comments keep their order and values. A FLAC file without a VORBIS_COMMENT
block gets one; an ID3v2 tag some taggers prepend to FLAC files is left in place.
"""

from __future__ import annotations

from typing import BinaryIO

import mutagen.flac
import mutagen.oggflac
import mutagen.oggopus
import mutagen.oggvorbis

from tagger.library.tags.base import BaseEditor

GENRE = "GENRE"
CONFIDENCE = "TAGGER_GENRE_CONFIDENCE"
FIELDS = (GENRE, CONFIDENCE)

_CLASSES = {
    "flac": mutagen.flac.FLAC,
    "ogg-vorbis": mutagen.oggvorbis.OggVorbis,
    "ogg-opus": mutagen.oggopus.OggOpus,
    "ogg-flac": mutagen.oggflac.OggFLAC,
}


class Editor(BaseEditor):
    """The Vorbis comment of one open file."""

    FORMAT = "Vorbis comment"
    GENRE = GENRE
    CONFIDENCE = CONFIDENCE
    FIELDS = FIELDS
    ARTIST = ("ARTIST", "ALBUMARTIST")
    ALBUM = ("ALBUM",)

    def __init__(self, fileobj: BinaryIO, kind: str):
        self._audio = _CLASSES[kind](fileobj)
        if self._audio.tags is None:
            self._audio.add_tags()
        self.tags = self._audio.tags

    def get(self, field: str) -> tuple[str, ...] | None:
        values = self.tags.get(field)
        return tuple(values) if values else None

    def set(self, field: str, values: tuple[str, ...] | None) -> None:
        if field in self.tags:
            del self.tags[field]
        if values is not None:
            self.tags[field] = list(values)

