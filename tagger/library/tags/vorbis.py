"""Vorbis comment genre tags, for FLAC, Ogg Vorbis, Ogg Opus and Ogg FLAC.

Fields: ``GENRE`` (one comment per genre when there are several) and
``TAGGER_GENRE_CONFIDENCE``. Vorbis comment names are case-insensitive: an existing
``genre=`` or ``Genre=`` comment is the genre field. A write edits the field in place: the
field's comments take the new values in order, each where it was and with its name spelled
as it was; values beyond them follow the last one, comments beyond the values go, and a field
the tag did not have is added at the end as ``GENRE``. Other comments keep their order and
values. A FLAC file without a VORBIS_COMMENT block gets one; an ID3v2 tag some taggers prepend
to FLAC files is left in place.

Restore. The comment list is ordered and its names keep their case, so the old values alone
cannot give a file back byte for byte: :meth:`Editor.layout` records, with them, each comment's
place in the list and its name, and the padding after the comment (FLAC's PADDING block, the
bytes after an Ogg comment packet); :meth:`Editor.place` puts them back there.
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
    """The Vorbis comment of one open file: ``tags`` is mutagen's list of (name, value)."""

    KEYS = FieldKeys("Vorbis comment", genre="GENRE", confidence="TAGGER_GENRE_CONFIDENCE",
                     artist=("ARTIST", "ALBUMARTIST"), album=("ALBUM",),
                     album_artist=("ALBUMARTIST", "ALBUM ARTIST"),
                     mb_album_id=("MUSICBRAINZ_ALBUMID",), compilation=("COMPILATION",))

    def __init__(self, fileobj: BinaryIO, kind: str):
        self._attach(_CLASSES[kind](fileobj))
        self._placed: dict[str, list[tuple[int, str]]] = {}  # field -> (place, name) per value
        self._pending: list[tuple[int, str, str]] = []  # (place, name, value) to insert

    def _places(self, field: str) -> list[int]:
        """The places of the field's comments in the list (names compared as Vorbis does)."""
        name = field.lower()
        return [i for i, (key, _) in enumerate(self.tags) if key.lower() == name]

    # ---------------------------------------------------------------- where values sit

    def layout(self, field: str) -> dict:
        name = field.lower()
        return {"at": [[i, key] for i, (key, _) in enumerate(self.tags) if key.lower() == name],
                "padding": self.padding_now()}

    def padding_now(self) -> int | None:
        if isinstance(self._audio, mutagen.flac.FLAC):
            blocks = [b for b in self._audio.metadata_blocks
                      if isinstance(b, mutagen.flac.Padding)]
            # mutagen writes them as one block: the others' headers become padding
            return sum(b.length for b in blocks) + 4 * (len(blocks) - 1) if blocks else None
        padding = getattr(self.tags, "_padding", None)  # mutagen's count after an Ogg comment
        return padding if type(padding) is int and padding >= 0 else None

    def place(self, layouts: dict[str, dict | None]) -> None:
        super().place(layouts)
        for field, layout in layouts.items():
            at = layout.get("at") if isinstance(layout, dict) else None
            if isinstance(at, list) and all(
                    isinstance(p, list) and len(p) == 2 and type(p[0]) is int and p[0] >= 0
                    and isinstance(p[1], str) and p[1].lower() == field.lower() for p in at):
                self._placed[field.lower()] = [(i, name) for i, name in at]

    # ---------------------------------------------------------------- writing

    def set(self, field: str, values: tuple[str, ...] | None) -> None:
        values = list(values or ())
        # mutagen's list of (name, value), edited as a plain list (its [] takes names)
        comments = list(self.tags)
        places = self._places(field)
        placed = self._placed.get(field.lower())
        if placed is not None and len(placed) == len(values):
            # a restore: out now, back at their places when every field is out (save)
            comments = [c for i, c in enumerate(comments) if i not in places]
            self._pending += [(i, name, v) for (i, name), v in zip(placed, values)]
        elif not places:
            comments += [(field, v) for v in values]
        else:
            for i, value in zip(places, values):  # in place, the name as it was spelled
                comments[i] = (comments[i][0], value)
            name, after = comments[places[-1]][0], places[-1] + 1
            # values beyond the comments follow the last one; comments beyond the values go
            comments[after:after] = [(name, v) for v in values[len(places):]]
            gone = set(places[len(values):])
            comments = [c for i, c in enumerate(comments) if i not in gone]
        self.tags[:] = comments

    def save(self, fileobj: BinaryIO) -> None:
        comments = list(self.tags)
        # ascending: each comment lands where it was, the ones before it being back already
        for i, name, value in sorted(self._pending):
            comments.insert(i, (name, value))
        self.tags[:] = comments
        self._pending = []
        super().save(fileobj)
