"""Where each container keeps its audio: the format sniffed from a file's content, and the
extents (offset, length) of its audio payload, tags and metadata left out. These are the
readers behind :func:`tagger.audio.identity.content_id`, which hashes what they locate:

=========  =================================================================================
format     payload hashed
=========  =================================================================================
MP3        the bytes between the leading ID3v2 tag(s) (plus any NUL padding after them) and
           the trailing APEv2 / Lyrics3v2 / ID3v1 tags (any order, any number of them)
FLAC       the frames after the last metadata block (an ID3v2 prefix and trailing
           ID3v1/APEv2 tags are skipped too)
Ogg        the packet data of every audio packet of every logical stream, i.e. all packets
           after each stream's header packets (Vorbis 3, Opus 2, Speex 2+extra, Theora 3,
           FLAC: the metadata-block packets). Page headers are *not* hashed: when a comment
           header is rewritten the pages are re-paginated, which renumbers every later page
           and changes its CRC, while the packet bytes stay the same
MP4/M4A    the contents of every top-level ``mdat`` atom, in file order (``moov``/``udta``/
           ``free`` changes move ``mdat`` but leave its contents alone)
WAV        the contents of the ``data`` chunk (RF64 via its ``ds64`` chunk)
AIFF/AIFC  the contents of the ``SSND`` chunk
ASF/WMA    the data packets of the Data Object (after its 50-byte object header)
=========  =================================================================================

A layout that is not what its magic promised raises :class:`LayoutError`.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from tagger.errors import TaggerError

# the kinds detect_format() returns: the containers of the one registry, tagger/formats.py
from tagger.formats import AIFF, ASF, FLAC, MP3, MP4, OGG, WAV, extensions_of

_ASF_HEADER_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
_ASF_DATA_GUID = bytes.fromhex("3626b2758e66cf11a6d900aa0062ce6c")

_MP4_TOP_LEVEL = {
    b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"meta", b"moof",
    b"mfra", b"pdin", b"styp", b"sidx", b"junk", b"PICT",
}

Extent = tuple[int, int]  # (offset, length) of a run of payload bytes in the file


class LayoutError(TaggerError):
    """The file's layout is not what its magic promised (the content id reports it as a
    ReadError)."""


def payload_extents(f: BinaryIO, kind: str, size: int) -> list[Extent]:
    """The extents of the audio payload of an open file of container ``kind`` (one of
    :func:`detect_format`'s answers) and ``size`` bytes, in file order."""
    return _EXTENT_READERS[kind](f, size)


def content_format(path: str) -> str | None:
    """The container ``path``'s first bytes name (:func:`detect_format` by content only, never
    the extension); None when they name none or the file cannot be read."""
    try:
        with open(path, "rb") as f:
            return detect_format(f)  # no name given: no fallback to the extension
    except OSError:
        return None


def detect_format(f: BinaryIO, path: str = "") -> str | None:
    """Sniff the container of an open binary file (content first, extension as a fallback).

    Returns one of ``mp3 flac ogg mp4 wav aiff asf`` or None. Leaves the position at 0.
    """
    f.seek(0)
    head = f.read(64)
    f.seek(0)
    ext = os.path.splitext(path)[1].lower()
    if head[:4] == b"OggS":
        return OGG
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return WAV
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return AIFF
    if head[:16] == _ASF_HEADER_GUID:
        return ASF
    if head[4:8] == b"ftyp" or (head[4:8] in _MP4_TOP_LEVEL and ext[1:] in extensions_of(MP4)):
        return MP4
    if head[:4] == b"fLaC":
        return FLAC
    start = _skip_id3v2(f)
    f.seek(start)
    after = f.read(4)
    f.seek(0)
    if after[:4] == b"fLaC":
        return FLAC
    if _is_mpeg_sync(after) or (start > 0 and ext != ".aac") or ext == ".mp3":
        return MP3
    return None


def ogg_codec(f: BinaryIO) -> str | None:
    """The codec of the first logical stream of an Ogg file: vorbis, opus, flac, speex, theora."""
    f.seek(0)
    head = f.read(27 + 255 + 16)
    f.seek(0)
    if head[:4] != b"OggS" or len(head) < 28:
        return None
    body = head[27 + head[26]:]
    return _ogg_codec_of(body)


#: what the first packet of an Ogg logical stream starts with, for each codec
_OGG_CODECS = (
    (b"\x01vorbis", "vorbis"),
    (b"OpusHead", "opus"),
    (b"\x7fFLAC", "flac"),
    (b"Speex   ", "speex"),
    (b"\x80theora", "theora"),
    (b"fishead\x00", "skeleton"),
)


def _ogg_codec_of(packet_start: bytes) -> str | None:
    return next((codec for magic, codec in _OGG_CODECS if packet_start.startswith(magic)), None)


def _read_at(f: BinaryIO, offset: int, n: int) -> bytes:
    f.seek(offset)
    return f.read(n)


# --------------------------------------------------------------------------- MP3 / FLAC


def _is_mpeg_sync(b: bytes) -> bool:
    # 11-bit frame sync; layer bits 00 are reserved for MPEG audio (ADTS AAC uses them)
    return len(b) >= 2 and b[0] == 0xFF and (b[1] & 0xE0) == 0xE0 and (b[1] >> 1) & 3 != 0


def _skip_id3v2(f: BinaryIO, start: int = 0) -> int:
    """Offset just past any ID3v2 tags (and NUL padding written after them) at ``start``."""
    pos = start
    while True:
        h = _read_at(f, pos, 10)
        if len(h) == 10 and h[:3] == b"ID3" and h[3] != 0xFF and all(b < 0x80 for b in h[6:10]):
            size = (h[6] << 21) | (h[7] << 14) | (h[8] << 7) | h[9]
            pos += 10 + size + (10 if h[5] & 0x10 else 0)
            continue
        break
    if pos > start:
        # some writers leave padding outside the tag's declared size; other tag editors
        # may absorb it, so it is not part of the payload
        scanned = 0
        while scanned < 1 << 20:
            chunk = _read_at(f, pos, 4096)
            if not chunk:
                break
            stripped = chunk.lstrip(b"\0")
            pos += len(chunk) - len(stripped)
            scanned += len(chunk)
            if stripped:
                break
    return pos


def _strip_trailing_tags(f: BinaryIO, start: int, end: int) -> int:
    """New end of the payload after removing trailing ID3v1, APEv2 and Lyrics3v2 tags."""
    while end > start:
        if end - start >= 128 and _read_at(f, end - 128, 3) == b"TAG":
            end -= 128
            continue
        if end - start >= 32:
            footer = _read_at(f, end - 32, 32)
            if footer[:8] == b"APETAGEX":
                tag_size, _count, flags = struct.unpack("<III", footer[12:24])
                total = tag_size + (32 if flags & 0x80000000 else 0)
                if 32 <= total <= end - start:
                    end -= total
                    continue
        if end - start >= 15:
            tail = _read_at(f, end - 15, 15)
            if tail[6:] == b"LYRICS200" and tail[:6].isdigit():
                total = int(tail[:6]) + 15
                if total <= end - start:
                    end -= total
                    continue
        break
    return end


def _mp3_extents(f: BinaryIO, size: int) -> list[Extent]:
    start = _skip_id3v2(f)
    end = _strip_trailing_tags(f, start, size)
    if end <= start:
        raise LayoutError("no MPEG audio data between the tags")
    return [(start, end - start)]


def _flac_extents(f: BinaryIO, size: int) -> list[Extent]:
    start = _skip_id3v2(f)
    if _read_at(f, start, 4) != b"fLaC":
        raise LayoutError("no fLaC marker")
    pos = start + 4
    while True:
        h = _read_at(f, pos, 4)
        if len(h) != 4:
            raise LayoutError("metadata blocks run past the end of the file")
        pos += 4 + int.from_bytes(h[1:4], "big")
        if pos > size:
            raise LayoutError("metadata block runs past the end of the file")
        if h[0] & 0x80:
            break
    end = _strip_trailing_tags(f, pos, size)
    return [(pos, end - pos)] if end > pos else []


# --------------------------------------------------------------------------- Ogg


class _OggStream:
    __slots__ = ("codec", "headers", "completed", "in_header", "packet_open", "audio_started")

    def __init__(self, codec: str | None, headers: int | None):
        self.codec = codec
        self.headers = headers  # number of header packets (None: decided per packet)
        self.completed = 0  # packets completed so far
        self.in_header = True  # the packet now being read is a header packet
        self.packet_open = False  # a packet is in progress (continues on the next page)
        self.audio_started = False


def _ogg_header_count(codec: str | None, first_packet: bytes) -> int | None:
    if codec == "vorbis" or codec == "theora":
        return 3
    if codec == "opus":
        return 2
    if codec == "speex":
        if len(first_packet) >= 72:
            return 2 + struct.unpack("<I", first_packet[68:72])[0]
        return 2
    if codec == "flac":
        return None  # metadata-block packets, recognised by content (audio frames start 0xFF)
    if codec == "skeleton":
        return 1 << 62  # every packet is metadata
    raise LayoutError("Ogg stream with an unknown codec")


def _ogg_extents(f: BinaryIO, size: int) -> list[Extent]:
    streams: dict[int, _OggStream] = {}
    extents: list[Extent] = []
    pos = 0
    pages = 0
    while pos < size:
        hdr = _read_at(f, pos, 27)
        if len(hdr) < 27 or hdr[:4] != b"OggS":
            if pages == 0:
                raise LayoutError("no Ogg page at the start")
            break  # trailing junk (e.g. a stray ID3v1 tag) is not audio
        if hdr[4] != 0:
            raise LayoutError("unsupported Ogg page version")
        flags = hdr[5]
        serial = struct.unpack("<I", hdr[14:18])[0]
        nseg = hdr[26]
        lacing = _read_at(f, pos + 27, nseg)
        if len(lacing) != nseg:
            break  # truncated last page
        body = pos + 27 + nseg
        body_len = sum(lacing)
        if body + body_len > size:
            break  # truncated last page
        stream = streams.get(serial)
        if stream is None or flags & 0x02:
            first = _read_at(f, body, min(body_len, 128))
            codec = _ogg_codec_of(first)
            stream = _OggStream(codec, _ogg_header_count(codec, first))
            streams[serial] = stream
        offset = body
        for lv in lacing:
            if not stream.packet_open:
                # a new packet starts at this segment: header or audio?
                if stream.audio_started:
                    stream.in_header = False
                elif stream.headers is not None:
                    stream.in_header = stream.completed < stream.headers
                else:  # Ogg FLAC: metadata blocks never start with 0xFF, audio frames do
                    stream.in_header = lv == 0 or _read_at(f, offset, 1) != b"\xff"
                if not stream.in_header:
                    stream.audio_started = True
                stream.packet_open = True
            if not stream.in_header and lv:
                if extents and extents[-1][0] + extents[-1][1] == offset:
                    extents[-1] = (extents[-1][0], extents[-1][1] + lv)
                else:
                    extents.append((offset, lv))
            offset += lv
            if lv < 255:
                stream.completed += 1
                stream.packet_open = False
        pos = body + body_len
        pages += 1
    return extents


# --------------------------------------------------------------------------- MP4


def _mp4_extents(f: BinaryIO, size: int) -> list[Extent]:
    extents: list[Extent] = []
    pos = 0
    while pos + 8 <= size:
        h = _read_at(f, pos, 16)
        atom_size = int.from_bytes(h[0:4], "big")
        name = h[4:8]
        header = 8
        if atom_size == 1:
            if len(h) < 16:
                raise LayoutError("truncated 64-bit atom header")
            atom_size = int.from_bytes(h[8:16], "big")
            header = 16
        elif atom_size == 0:
            atom_size = size - pos
        if atom_size < header:
            raise LayoutError(f"invalid atom size at offset {pos}")
        if pos == 0 and name not in _MP4_TOP_LEVEL:
            raise LayoutError("not an MP4 atom at the start")
        if name == b"mdat":
            length = min(atom_size, size - pos) - header
            if length > 0:
                extents.append((pos + header, length))
        pos += atom_size
    if not extents:
        raise LayoutError("no mdat atom")
    return extents


# --------------------------------------------------------------------------- WAV / AIFF


def _wav_extents(f: BinaryIO, size: int) -> list[Extent]:
    rf64 = _read_at(f, 0, 4) == b"RF64"
    data_size64 = None
    pos = 12
    while pos + 8 <= size:
        h = _read_at(f, pos, 8)
        cid, csize = h[:4], struct.unpack("<I", h[4:8])[0]
        if cid == b"ds64" and rf64:
            ds = _read_at(f, pos + 8, 16)
            if len(ds) == 16:
                data_size64 = struct.unpack("<Q", ds[8:16])[0]
        if cid == b"data":
            if csize == 0xFFFFFFFF and data_size64 is not None:
                csize = data_size64
            length = min(csize, size - pos - 8)
            return [(pos + 8, length)]
        pos += 8 + csize + (csize & 1)
    raise LayoutError("no data chunk")


def _aiff_extents(f: BinaryIO, size: int) -> list[Extent]:
    pos = 12
    while pos + 8 <= size:
        h = _read_at(f, pos, 8)
        cid, csize = h[:4], struct.unpack(">I", h[4:8])[0]
        if cid == b"SSND":
            length = min(csize, size - pos - 8)
            return [(pos + 8, length)]
        pos += 8 + csize + (csize & 1)
    raise LayoutError("no SSND chunk")


# --------------------------------------------------------------------------- ASF


def _asf_extents(f: BinaryIO, size: int) -> list[Extent]:
    h = _read_at(f, 0, 24)
    header_size = struct.unpack("<Q", h[16:24])[0]
    if header_size < 30 or header_size >= size:
        raise LayoutError("invalid ASF header object size")
    d = _read_at(f, header_size, 24)
    if len(d) != 24 or d[:16] != _ASF_DATA_GUID:
        raise LayoutError("no ASF data object after the header object")
    data_size = struct.unpack("<Q", d[16:24])[0]
    start = header_size + 50  # object header (24) + file id (16) + packet count (8) + reserved (2)
    end = header_size + data_size if data_size >= 50 else size
    end = min(end, size)
    if end <= start:
        raise LayoutError("empty ASF data object")
    return [(start, end - start)]


_EXTENT_READERS = {
    MP3: _mp3_extents,
    FLAC: _flac_extents,
    OGG: _ogg_extents,
    MP4: _mp4_extents,
    WAV: _wav_extents,
    AIFF: _aiff_extents,
    ASF: _asf_extents,
}
