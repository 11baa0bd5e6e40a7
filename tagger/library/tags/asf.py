"""ASF attribute genre tags, for WMA.

Fields: ``WM/Genre`` (several attributes of that name when there are several genres; mutagen
moves multi-valued attributes into the Metadata Library Object) and a
``TAGGER_GENRE_CONFIDENCE`` unicode attribute. Other attributes are left as they are.
``WM/GenreID`` (a legacy numeric companion some encoders write) is not read or touched.
"""

from __future__ import annotations

from typing import BinaryIO

import mutagen.asf

from tagger.library.tags.base import BaseEditor, FieldKeys


class Editor(BaseEditor):
    """The ASF attributes of one open WMA file."""

    KEYS = FieldKeys("ASF", genre="WM/Genre", confidence="TAGGER_GENRE_CONFIDENCE",
                     artist=("Author", "WM/AlbumArtist"), album=("WM/AlbumTitle",),
                     album_artist=("WM/AlbumArtist",), mb_album_id=("MusicBrainz/Album Id",),
                     compilation=("WM/IsCompilation",))

    def __init__(self, fileobj: BinaryIO, kind: str = "asf"):
        self._attach(mutagen.asf.ASF(fileobj))

    def _decode(self, field: str, stored: list) -> tuple[str, ...]:
        return tuple(str(attr.value) for attr in stored)

    def _encode(self, field: str, values: tuple[str, ...]) -> list:
        return [mutagen.asf.ASFUnicodeAttribute(v) for v in values]

