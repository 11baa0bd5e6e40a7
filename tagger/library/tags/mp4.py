"""iTunes-style MP4 genre tags, for M4A/MP4 (AAC and ALAC alike).

Fields:

* ``©gen`` -- the free-text genre, one ``data`` atom per genre.
* ``gnre`` -- the legacy numeric genre (an ID3v1 genre index + 1). It counts as an existing
  genre on read when there is no ``©gen``. Writing the genre removes it (two genre atoms
  that disagree confuse players) and the removal is reported as its own TagChange, the old
  value being the genre's name, so that ``restore`` can put the numeric atom back.
* ``----:com.apple.iTunes:TAGGER_GENRE_CONFIDENCE`` -- a UTF-8 freeform atom.

mutagen folds ``gnre`` into ``©gen`` when it loads a file and drops it when it saves, so
this module reads both atoms raw from the ``ilst`` and hands an unchanged ``gnre`` back to
mutagen as an opaque atom (``MP4Tags._failed_atoms``, the mechanism mutagen itself uses to
write back atoms it cannot parse) -- otherwise any save would silently convert it.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

import mutagen.mp4
from mutagen.id3 import TCON
from mutagen.mp4 import Atom, AtomDataType, Atoms, MP4FreeForm

from tagger.library.tags.base import BaseEditor, FieldKeys, TagFormatError

GENRE = "\xa9gen"
LEGACY_GENRE = "gnre"
CONFIDENCE = "----:com.apple.iTunes:TAGGER_GENRE_CONFIDENCE"

_GENRES = TCON.GENRES


class Editor(BaseEditor):
    """The iTunes metadata (``moov.udta.meta.ilst``) of one open MP4 file."""

    KEYS = FieldKeys("MP4", genre=GENRE, confidence=CONFIDENCE, legacy=(LEGACY_GENRE,),
                     artist=("\xa9ART", "aART"), album=("\xa9alb",), album_artist=("aART",),
                     mb_album_id=("----:com.apple.iTunes:MusicBrainz Album Id",),
                     compilation=("cpil",))

    def __init__(self, fileobj: BinaryIO, kind: str = "mp4"):
        self._attach(mutagen.mp4.MP4(fileobj))
        if not hasattr(self.tags, "_failed_atoms"):  # pragma: no cover - mutagen internals
            raise TagFormatError("this mutagen version cannot preserve the gnre atom")
        gen, gnre_raw = _read_raw_genres(fileobj)
        # undo mutagen's folding of gnre into ©gen: ©gen is what the ©gen atoms say
        if gen is None:
            self.tags.pop(GENRE, None)
        else:
            self.tags[GENRE] = list(gen)
        self.tags._failed_atoms.pop(LEGACY_GENRE, None)
        if gnre_raw is not None:
            self.tags._failed_atoms[LEGACY_GENRE] = [gnre_raw]  # written back unchanged

    def get(self, field: str) -> tuple[str, ...] | None:
        if field == LEGACY_GENRE:
            raw = self.tags._failed_atoms.get(LEGACY_GENRE)
            return _decode_gnre(b"".join(raw)) if raw else None
        return super().get(field)

    def padding_now(self) -> int | None:
        """The ``free`` atom beside the ``ilst`` as mutagen counts it (0: none; mutagen then
        writes an empty one, 8 bytes, so only a file that had one comes back byte for
        byte)."""
        padding = getattr(self.tags, "_padding", None)
        return padding if type(padding) is int and padding >= 0 else None

    def _decode(self, field: str, stored: list) -> tuple[str, ...] | None:
        if isinstance(stored, bool):  # cpil: a flag, not a list
            return ("1",) if stored else ("0",)
        if field.startswith("----:"):
            return tuple(bytes(v).decode("utf-8", "replace") for v in stored) or None
        return tuple(str(v) for v in stored) or None

    def set(self, field: str, values: tuple[str, ...] | None) -> None:
        if field == LEGACY_GENRE:
            self.tags._failed_atoms.pop(LEGACY_GENRE, None)
            if values is not None:
                self.tags._failed_atoms[LEGACY_GENRE] = [_encode_gnre(values)]
            return
        super().set(field, values)

    def _encode(self, field: str, values: tuple[str, ...]) -> list:
        if field.startswith("----:"):
            return [MP4FreeForm(v.encode("utf-8"), dataformat=AtomDataType.UTF8) for v in values]
        return list(values)



def _data_atoms(payload: bytes) -> list[tuple[int, bytes]]:
    """(type flags, value bytes) of the ``data`` atoms inside an ilst item."""
    out = []
    pos = 0
    while pos + 16 <= len(payload):
        length = struct.unpack(">I", payload[pos:pos + 4])[0]
        if length < 16 or pos + length > len(payload):
            break
        if payload[pos + 4:pos + 8] == b"data":
            flags = struct.unpack(">I", payload[pos + 8:pos + 12])[0] & 0xFFFFFF
            out.append((flags, payload[pos + 16:pos + length]))
        pos += length
    return out


def _read_raw_genres(fileobj: BinaryIO) -> tuple[tuple[str, ...] | None, bytes | None]:
    """The ©gen values and the raw gnre item payload, read straight from the ilst atom."""
    fileobj.seek(0)
    atoms = Atoms(fileobj)
    try:
        ilst = atoms.path(b"moov", b"udta", b"meta", b"ilst")[-1]
    except KeyError:
        return None, None
    gen: list[str] = []
    gnre: bytes | None = None
    for child in ilst.children or ():
        if child.name not in (b"\xa9gen", b"gnre"):
            continue
        ok, data = child.read(fileobj)
        if not ok:
            raise TagFormatError("truncated genre atom")
        if child.name == b"gnre":
            gnre = (gnre or b"") + data
            continue
        for flags, value in _data_atoms(data):
            if flags == AtomDataType.UTF16:
                gen.append(value.decode("utf-16-be", "replace"))
            else:
                gen.append(value.decode("utf-8", "replace"))
    return (tuple(gen) if gen else None), gnre


def _decode_gnre(payload: bytes) -> tuple[str, ...] | None:
    values = []
    for _flags, value in _data_atoms(payload):
        if len(value) != 2:
            values.append(value.hex())
            continue
        number = struct.unpack(">H", value)[0]
        if 1 <= number <= len(_GENRES):
            values.append(_GENRES[number - 1])
        else:
            values.append(str(number))
    return tuple(values) or None


def _encode_gnre(values: tuple[str, ...]) -> bytes:
    out = []
    for v in values:
        if v in _GENRES:
            number = _GENRES.index(v) + 1
        elif v.isdigit() and int(v) < 1 << 16:
            number = int(v)
        else:
            raise TagFormatError(f"{v!r} is not an ID3v1 genre; cannot store it in gnre")
        out.append(Atom.render(b"data", struct.pack(">2I", 0, 0) + struct.pack(">H", number)))
    return b"".join(out)
