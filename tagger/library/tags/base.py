"""What every format's tag editor shares: the table of the fields it reads and writes, how
they are read, replaced and asked for, and where their values sit (for a restore that gives
a file back byte for byte). A format module gives its keys and the few conversions between
its stored values and plain strings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO

from tagger.errors import TaggerError

MAX_PADDING = 1 << 24  # more than any tag's padding; a recorded value past it is not used
#: how a yes/no field (the compilation flag) says yes
TRUE_TEXTS = frozenset({"1", "true", "yes"})


class TagFormatError(TaggerError):
    """A format's tag cannot be read or saved the way it must be (raised before anything is
    written); the caller turns it into a ReadError or WriteError naming the file."""


@dataclass(frozen=True)
class FieldKeys:
    """One tag format's names for the fields tagger reads and writes."""

    format: str  # the tag format's name, for messages ("ID3v2")
    genre: str
    confidence: str
    # older genre fields (MP4's numeric ``gnre``): read when ``genre`` has no value, removed
    # when the genre is written
    legacy: tuple[str, ...] = ()
    artist: tuple[str, ...] = ()  # fields naming the artist, best first (album artist last)
    album: tuple[str, ...] = ()
    # what identifies the album (read only, as Picard writes them): the album artist, the
    # MusicBrainz release id, and the compilation flag
    album_artist: tuple[str, ...] = ()
    mb_album_id: tuple[str, ...] = ()
    compilation: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields tagger writes, and so may restore."""
        return (self.genre, *self.legacy, self.confidence)


class BaseEditor:
    """The tag of one open file; a format module's ``Editor`` sets ``KEYS``, opens the file
    (usually with :meth:`_attach`) and converts values where its tag does not store plain
    lists of strings (:meth:`_decode`, :meth:`_encode`, or ``get``/``set`` themselves)."""

    KEYS: FieldKeys
    tags: Any  # the mutagen tag object the fields live in
    _audio: Any  # the mutagen file object that saves them
    #: the padding the tag had before a restore's values were first replaced (see
    #: :meth:`place`); None: mutagen's own choice
    restore_padding: int | None = None

    def _attach(self, audio: Any) -> None:
        """Edit ``audio``'s tag, giving it an empty one when it has none."""
        self._audio = audio
        if audio.tags is None:
            audio.add_tags()
        self.tags = audio.tags

    # ---------------------------------------------------------------- reading

    def get(self, field: str) -> tuple[str, ...] | None:
        """The field's values; None when the tag does not have it."""
        if field not in self.tags:
            return None
        return self._decode(field, self.tags[field])

    def _decode(self, field: str, stored: Any) -> tuple[str, ...] | None:
        """The values of what the tag stores for a field it has."""
        return tuple(stored)

    def existing_genres(self) -> list[str]:
        for field in (self.KEYS.genre, *self.KEYS.legacy):
            genres = [g for g in (self.get(field) or ()) if g]
            if genres:
                return genres
        return []

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

    def flag(self, fields: tuple[str, ...]) -> bool:
        """Whether the first of ``fields`` the tag has says yes ("1", "true", "yes"; read
        only): the compilation flag."""
        for name in fields:
            try:
                values = self.get(name)
            except (KeyError, ValueError, TypeError):  # a field of an unexpected shape
                continue
            if values:
                return values[0].strip().lower() in TRUE_TEXTS
        return False

    # ---------------------------------------------------------------- writing

    def desired(self, genres: tuple[str, ...] | None, confidence: str | None,
                drop_confidence: bool = False) -> dict:
        """The value each field should end with (None: absent); confidence None: untouched,
        unless ``drop_confidence``: removed."""
        want: dict[str, tuple[str, ...] | None] = {self.KEYS.genre: genres}
        for field in self.KEYS.legacy:
            want[field] = None  # two genre fields that disagree confuse players
        if confidence is not None:
            want[self.KEYS.confidence] = (confidence,)
        elif drop_confidence:
            want[self.KEYS.confidence] = None
        return want

    def set(self, field: str, values: tuple[str, ...] | None) -> None:
        """Replace the field's values; None removes the field."""
        if field in self.tags:
            del self.tags[field]
        if values is not None:
            self.tags[field] = self._encode(field, values)

    def _encode(self, field: str, values: tuple[str, ...]) -> Any:
        """What the tag stores for a field of these values."""
        return list(values)

    # ---------------------------------------------------------------- where values sit

    def layout(self, field: str) -> dict | None:
        """Where the field's values sit in the tag, as JSON-able data, recorded with the old
        values (``TagChange.old_layout``) so that :meth:`place` can put them back exactly.
        The base records the tag's padding only, where :meth:`padding_now` knows it."""
        padding = self.padding_now()
        return None if padding is None else {"padding": padding}

    def padding_now(self) -> int | None:
        """The bytes of padding the tag has now, as mutagen counts them when saving it as
        it is; None where unknown (then a restore lets mutagen choose)."""
        return None

    def place(self, layouts: dict[str, dict | None]) -> None:
        """Follow recorded layouts (field -> :meth:`layout` of its oldest change) in the
        :meth:`set` calls and the :meth:`save` that come next: a restore's. The base gives
        the tag its recorded padding back."""
        for layout in layouts.values():
            padding = layout.get("padding") if isinstance(layout, dict) else None
            if type(padding) is int and 0 <= padding <= MAX_PADDING:
                self.restore_padding = padding
                return

    def padding(self, info) -> int:
        """mutagen's padding function: the recorded padding on a restore, else mutagen's."""
        if self.restore_padding is not None:
            return self.restore_padding
        return info.get_default_padding()

    def save(self, fileobj: BinaryIO) -> None:
        self._audio.save(fileobj, padding=self.padding)
