"""ASF attribute genre tags, for WMA.

Fields: ``WM/Genre`` (several attributes of that name when there are several genres; mutagen
moves multi-valued attributes into the Metadata Library Object) and a
``TAGGER_GENRE_CONFIDENCE`` unicode attribute. Other attributes are left as they are.
``WM/GenreID`` (a legacy numeric companion some encoders write) is not read or touched.
"""

from __future__ import annotations

from typing import BinaryIO

import mutagen.asf

from tagger.library.tags.base import BaseEditor

GENRE = "WM/Genre"
CONFIDENCE = "TAGGER_GENRE_CONFIDENCE"
FIELDS = (GENRE, CONFIDENCE)


class Editor(BaseEditor):
    """The ASF attributes of one open WMA file."""

    FORMAT = "ASF"
    GENRE = GENRE
    CONFIDENCE = CONFIDENCE
    FIELDS = FIELDS
    ARTIST = ("Author", "WM/AlbumArtist")
    ALBUM = ("WM/AlbumTitle",)

    def __init__(self, fileobj: BinaryIO, kind: str = "asf"):
        self._audio = mutagen.asf.ASF(fileobj)
        if self._audio.tags is None:  # pragma: no cover - mutagen always creates ASFTags
            self._audio.add_tags()
        self.tags = self._audio.tags

    def get(self, field: str) -> tuple[str, ...] | None:
        if field not in self.tags:
            return None
        return tuple(str(attr.value) for attr in self.tags[field])

    def set(self, field: str, values: tuple[str, ...] | None) -> None:
        if field in self.tags:
            del self.tags[field]
        if values is not None:
            self.tags[field] = [mutagen.asf.ASFUnicodeAttribute(v) for v in values]

