"""Raw access to the tag fields of the test files, straight through mutagen and the MP4 atom
tree: independent of tagger.library.tags, so the tests check tagger's writes against it."""

from __future__ import annotations

from pathlib import Path

import mutagen
import mutagen.aiff
import mutagen.asf
import mutagen.mp4
import mutagen.wave
from mutagen.id3 import ID3, ID3NoHeaderError

from helpers import tagfiles
from helpers.tagfiles import CONF_FIELD, FAMILY, GENRE_FIELD


def id3_tags(path: Path):
    if path.suffix == ".mp3":
        try:
            return ID3(path, translate=False, load_v1=False)
        except ID3NoHeaderError:
            return None
    cls = mutagen.wave.WAVE if path.suffix == ".wav" else mutagen.aiff.AIFF
    return cls(path, translate=False, load_v1=False).tags


def raw_mp4_gen(path: Path) -> tuple[str, ...] | None:
    values = []
    for data in tagfiles.mp4_item_payloads(path, b"\xa9gen") or []:
        pos = 0
        while pos < len(data):  # one "data" atom per value
            n = int.from_bytes(data[pos:pos + 4], "big")
            values.append(data[pos + 16:pos + n].decode("utf-8"))
            pos += n
    return tuple(values) or None


def raw_field(path: Path, fmt: str, field: str) -> tuple[str, ...] | None:
    family = FAMILY[fmt]
    if family == "id3":
        t = id3_tags(path)
        frame = t.get(field) if t is not None else None
        return tuple(frame.text) if frame is not None else None
    if family == "vorbis":
        values = (mutagen.File(path).tags or {}).get(field)
        return tuple(values) if values else None
    if family == "mp4":
        if field == "\xa9gen":
            return raw_mp4_gen(path)
        t = mutagen.mp4.MP4(path).tags
        if t is None or field not in t:
            return None
        return tuple(bytes(v).decode() for v in t[field])
    t = mutagen.asf.ASF(path).tags
    return tuple(str(a.value) for a in t[field]) if field in t else None


def others(path: Path, fmt: str):
    """Every tag value except the two fields tagger owns (and ©gen/gnre for MP4)."""
    family = FAMILY[fmt]
    skip_upper = {GENRE_FIELD[family].upper(), CONF_FIELD[family].upper()}
    if family == "id3":
        t = id3_tags(path)
        out = sorted((k, repr(v)) for k, v in (t.items() if t is not None else [])
                     if k.upper() not in skip_upper)
        if path.suffix == ".mp3":
            data = path.read_bytes()
            out.append(("ID3v1", data[-128:] if data[-128:-125] == b"TAG" else None))
        return out
    f = mutagen.File(path)
    if family == "vorbis":
        out = [(k, v) for k, v in (f.tags or []) if k.upper() not in skip_upper]
        if fmt == "flac":
            out.append(("pictures", [(p.type, p.mime, p.data) for p in f.pictures]))
        return out
    if family == "mp4":
        return sorted((k, repr(v)) for k, v in (f.tags or {}).items()
                      if k.upper() not in skip_upper)
    return [(k, repr(v)) for k, v in f.tags if k.upper() not in skip_upper]


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".tagger-"))
