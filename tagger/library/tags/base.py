"""What every format's tag editor shares: the genre and confidence fields and how they are
asked for."""

from __future__ import annotations

from typing import BinaryIO

from tagger.errors import TaggerError


class TagFormatError(TaggerError):
    """A format's tag cannot be read or saved the way it must be (raised before anything is
    written); the caller turns it into a ReadError or WriteError naming the file."""


class BaseEditor:
    """A format module's ``Editor`` names its fields and implements ``get``/``set``."""

    GENRE: str
    CONFIDENCE: str
    ARTIST: tuple[str, ...] = ()  # fields naming the artist, best first (album artist last)
    ALBUM: tuple[str, ...] = ()
    _audio: object

    def get(self, field: str) -> tuple[str, ...] | None:
        raise NotImplementedError

    def existing_genres(self) -> list[str]:
        return [g for g in (self.get(self.GENRE) or ()) if g]

    def first_text(self, fields: tuple[str, ...]) -> str | None:
        """The first non-blank value of the first of ``fields`` that has one (read only)."""
        for name in fields:
            try:
                values = self.get(name)
            except (KeyError, ValueError, TypeError):  # a field of an unexpected shape
                continue
            for value in values or ():
                if value and value.strip():
                    return value.strip()
        return None

    def desired(self, genres: tuple[str, ...] | None, confidence: str | None) -> dict:
        """The value each field should end with (None: absent); confidence None: untouched."""
        want: dict[str, tuple[str, ...] | None] = {self.GENRE: genres}
        if confidence is not None:
            want[self.CONFIDENCE] = (confidence,)
        return want

    def save(self, fileobj: BinaryIO) -> None:
        self._audio.save(fileobj)
