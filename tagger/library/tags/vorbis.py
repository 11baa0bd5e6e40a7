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

from tagger.library.tags.base import BaseEditor, FieldKeys

_CLASSES = {
    "flac": mutagen.flac.FLAC,
    "ogg-vorbis": mutagen.oggvorbis.OggVorbis,
    "ogg-opus": mutagen.oggopus.OggOpus,
    "ogg-flac": mutagen.oggflac.OggFLAC,
}


class Editor(BaseEditor):
    """The Vorbis comment of one open file (values are stored as plain lists of strings)."""

    KEYS = FieldKeys("Vorbis comment", genre="GENRE", confidence="TAGGER_GENRE_CONFIDENCE",
                     artist=("ARTIST", "ALBUMARTIST"), album=("ALBUM",),
                     album_artist=("ALBUMARTIST", "ALBUM ARTIST"),
                     mb_album_id=("MUSICBRAINZ_ALBUMID",), compilation=("COMPILATION",))

    def __init__(self, fileobj: BinaryIO, kind: str):
        self._attach(_CLASSES[kind](fileobj))

