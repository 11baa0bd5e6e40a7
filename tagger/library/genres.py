"""Genre values as people read them: one list of distinct genres from whatever a file holds.

:func:`normalise_genres` turns the values of a genre field (several frames or comments,
values joined with a separator) into a clean list; :class:`GenreMap` renames genres (the
user's own vocabulary, ``--map`` / ``--genre-map``). The scan stores the result in
``tracks.file_genres`` / ``user_genres``; ``tagger learn`` and ``set-genre`` use the same
rules, so a genre is spelled one way everywhere.

ID3's genre numbers (``(17)``, ``17``, ``(4)Eurodisco``: ID3v1 references in ``TCON``) are
resolved by the ID3 reader (:mod:`tagger.library.tags.id3`), for what an ID3 tag stores and
nothing else: a Vorbis comment, an MP4 or ASF genre, or a genre the user types that says
``17`` is the genre "17".

The rules, in order, for each value:

1. The value is Unicode-normalised to NFC (a genre typed on a Mac, or read from a tag written
   there, is one label with the same genre typed elsewhere).
2. NUL splits values (ID3v2.4 and mutagen's v2.3 multi-value frames).
3. The text is split on ``;``, ``/``, ``,``, ``|`` (" & " is not a separator: "Drum & Bass"),
   except a value that is itself an ID3v1 genre name ("Pop/Funk").
4. Blanks are trimmed (inner runs of blanks become one space); empty values go.
5. The genre map renames (case-insensitively; an empty target drops the genre).
6. Values equal but for case, blanks, hyphens and underscores (:func:`genre_key`: "Hip Hop",
   "hip-hop", "HipHop") are one genre: spelled as in the ID3v1 list when it is one of those
   ("hip hop" -> "Hip-Hop"), else as first seen. Order is kept, duplicates go.

A genre the user types (:func:`typed_genre_problem`) is one value: not split (rule 3 is left
out: "R&B/Soul" is one genre), and refused when it holds NUL or another control character
rather than cut short or kept.
"""

from __future__ import annotations

import json
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from mutagen.id3 import TCON

from tagger.errors import ConfigError
from tagger.genre_tree import fold

#: the ID3v1 genre list (with Winamp's extensions), as mutagen ships it: index -> name
ID3V1_GENRES: tuple[str, ...] = tuple(TCON.GENRES)
_NO_GENRE = 255  # ID3v1: "no genre"
_KEYWORDS = {"RX": "Remix", "CR": "Cover"}
_CANONICAL = {fold(name): name for name in ID3V1_GENRES}
_ID3V1_NAMES = frozenset(name.casefold() for name in ID3V1_GENRES)  # whole values not split
_REFERENCES = re.compile(r"\((\d+|RX|CR)\)")
_BLANK_CONTROLS = frozenset("\t\n\r\v\f\x1c\x1d\x1e\x1f\x85")  # blanks to rule 4
_SEPARATORS = re.compile(r"[;/,|]")
_BLANKS = re.compile(r"\s+")


class GenreMap:
    """Case-insensitive relabelling: ``{source: target}``, target ``""`` drops the label."""

    def __init__(self, mapping: Mapping[str, str] | None = None):
        self.mapping = {genre_key(k): _nfc(v).strip() for k, v in (mapping or {}).items()}

    @classmethod
    def parse(cls, pairs: Sequence[str] = (), file: str | None = None) -> GenreMap:
        """From ``SRC=DST`` pairs (command line) and a TOML or JSON table file."""
        mapping: dict[str, str] = {}
        if file:
            try:
                text = Path(file).expanduser().read_text(encoding="utf-8")
                data = json.loads(text) if file.endswith(".json") else tomllib.loads(text)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot read the genre map: {exc}", file) from None
            if not isinstance(data, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
                raise ConfigError("the genre map must be a table of strings", file)
            mapping.update(data)
        for pair in pairs:
            source, sep, target = pair.partition("=")
            if not sep or not source.strip():
                raise ConfigError(f"genre map entry {pair!r} is not SRC=DST")
            mapping[source] = target
        return cls(mapping)

    def __call__(self, value: str) -> str | None:
        value = _nfc(value).strip()
        target = self.mapping.get(genre_key(value), value)
        return target or None

    def __bool__(self) -> bool:
        return bool(self.mapping)

    def __repr__(self) -> str:
        return f"GenreMap({self.mapping!r})"


def id3_genre(number: int) -> str | None:
    """The ID3v1 genre ``number`` (0 = Blues), or None for 255 ("none") and unknown numbers."""
    if 0 <= number < len(ID3V1_GENRES) and number != _NO_GENRE:
        return ID3V1_GENRES[number]
    return None


def id3_references(value: str) -> list[str]:
    """What one ``TCON`` value of an ID3 tag names (ID3v2.3 spec, 4.2.1): ``(17)`` is genre 17
    of the ID3v1 list ("Rock"), several may follow each other (``(17)(4)``), and a text after
    them refines them (``(4)Eurodisco`` is Disco, then Eurodisco; ``(17)Rock`` is just Rock);
    ``(RX)`` is Remix, ``(CR)`` is Cover, ``((`` escapes a literal parenthesis. A value that is
    only a number (``17``, as ID3v1-minded taggers write TCON) is that genre; 255 means
    "none". Bare ``RX`` / ``CR`` are Remix / Cover (what mutagen, and so most taggers, read).
    Only for what an ID3 tag stores (:mod:`tagger.library.tags.id3`)."""
    if value.isdecimal():
        number = int(value)
        if number == _NO_GENRE:
            return []
        name = id3_genre(number)
        return [name] if name else [value]
    if value in _KEYWORDS:
        return [_KEYWORDS[value]]
    names: list[str] = []
    pos = 0
    while match := _REFERENCES.match(value, pos):
        ref = match.group(1)
        name = _KEYWORDS.get(ref) or id3_genre(int(ref))
        if name:
            names.append(name)
        pos = match.end()
    rest = value[pos:]
    if pos and rest.startswith("(("):  # an escaped "(" after references
        rest = rest[1:]
    elif not pos and value.startswith("(("):
        rest = value[1:]
    return names + ([rest] if rest.strip() else [])


def _split(value: str) -> list[str]:
    """Rule 3: separators, unless the whole value is an ID3v1 genre name."""
    if value.strip().casefold() in _ID3V1_NAMES:
        return [value]
    return _SEPARATORS.split(value)


def normalise_genres(values: Iterable[str] | str | None,
                     genre_map: GenreMap | Mapping[str, str] | None = None, *,
                     split: bool = True) -> list[str]:
    """The distinct genres in the raw ``values`` of a genre field, in order, NFC (see the
    module docstring for the rules); ``genre_map`` (a :class:`GenreMap` or a plain mapping)
    renames or drops them. A single ``str`` is one value; None or no values give [].
    ``split=False`` leaves out rule 3: each value is one genre (a genre the user typed:
    "R&B/Soul")."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    if genre_map is not None and not isinstance(genre_map, GenreMap):
        genre_map = GenreMap(genre_map)
    out: dict[str, str] = {}  # genre_key -> spelling, in first-seen order
    for raw in values:
        if not isinstance(raw, str):
            raise TypeError(f"genre must be str, got {type(raw).__name__}")
        for part in _nfc(raw).split("\x00"):
            for piece in _split(part) if split else [part]:
                genre = _BLANKS.sub(" ", piece).strip()
                if genre and genre_map:
                    genre = genre_map(genre) or ""
                if not genre:
                    continue
                key = genre_key(genre)
                out.setdefault(key, _CANONICAL.get(key, genre))
    return list(out.values())


def typed_genre_problem(genre: str) -> str | None:
    """Why a genre the user typed (``tagger set-genre``, the review page) cannot be taken as
    it is, or None: NUL would cut it short in a tag, other control characters (ESC, DEL)
    have no place in one. Blanks (tab, newline) are trimmed and collapsed as rule 4 says."""
    for char in genre:
        if char == "\x00":
            return "a genre cannot hold NUL (\\x00): tags would cut it short there"
        if unicodedata.category(char) == "Cc" and char not in _BLANK_CONTROLS:
            return f"a genre cannot hold the control character {char!r}"
    return None


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def genre_key(genre: str) -> str:
    """What two spellings of one genre share (:func:`tagger.genre_tree.fold`): NFC, case,
    blanks, hyphens and underscores ignored ("Hip Hop" = "hip-hop" = "HipHop")."""
    return _nfc(fold(genre))


def display_genre(genre: str, case: str = "title") -> str:
    """The form written into files: title case (``Hip-Hop``, ``R&B/Soul``) by default, as
    beets' lastgenre does; a genre spelled with capitals already is kept as given
    (``case`` other than "title": always as given)."""
    if case != "title" or genre != genre.lower():
        return genre
    return re.sub(r"(^|[\s\-/&(])([a-z])", lambda m: m.group(1) + m.group(2).upper(), genre)


def same_genre(a: str | None, b: str | None) -> bool:
    """Two genres are the same when they are equal but for case, blanks, hyphens,
    underscores and Unicode normalisation (NFC and NFD spellings)."""
    if a is None or b is None:
        return False
    return genre_key(a) == genre_key(b)
