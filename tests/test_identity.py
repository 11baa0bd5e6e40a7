"""Content identity: stable across any tag edit (ours or another tagger's), different for
different audio. Real files in every format; the edits are made with mutagen directly."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import mutagen
import mutagen.apev2
import mutagen.flac
import mutagen.mp4
import mutagen.ogg
import pytest
from helpers import tagfiles
from helpers.tagfiles import ALL, FAMILY, FORMATS
from mutagen.id3 import ID3, TIT2, TXXX

from tagger.audio import identity
from tagger.audio.identity import content_id
from tagger.errors import ReadError
from tagger.library.tags import write_genres

BIG = "x" * 200_000  # large enough to force re-pagination / moov growth / padding overflow


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return tagfiles.media(tmp_path_factory)


def _copy(src: Path, tmp_path: Path, name: str | None = None) -> Path:
    dst = tmp_path / (name or src.name)
    shutil.copyfile(src, dst)
    return dst


def _ogg_pages(path: Path) -> int:
    with open(path, "rb") as fh:
        n = 0
        while True:
            try:
                mutagen.ogg.OggPage(fh)
            except EOFError:
                return n
            n += 1


@pytest.mark.parametrize("fmt", ALL)
def test_id_is_hex_and_same_for_every_tag_variant(media, fmt):
    ids = {v: content_id(media.path(fmt, v)) for v in ("full", "empty", "partial")}
    ids["base"] = content_id(media.base[fmt])
    assert len(set(ids.values())) == 1, ids
    value = ids["base"]
    assert len(value) == 2 * identity.DIGEST_SIZE and int(value, 16) >= 0


@pytest.mark.parametrize("fmt", ALL)
def test_id_differs_between_different_clips(media, fmt):
    assert content_id(media.base[fmt]) != content_id(media.other[fmt])


def test_ids_differ_across_formats_of_the_same_clip(media):
    ids = [content_id(media.base[fmt]) for fmt in ALL]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("fmt", ALL)
def test_id_stable_across_tagger_writes(media, fmt, tmp_path):
    p = _copy(media.path(fmt, "full"), tmp_path)
    before = content_id(p)
    for genres in (["Rock"], ["A very long genre name " * 50] * 1, [f"g{i}" for i in range(300)]):
        write_genres(p, genres, 0.5)
        assert content_id(p) == before


@pytest.mark.parametrize("fmt", ALL)
def test_id_stable_across_foreign_tag_edits(media, fmt, tmp_path):
    """Big tag growth (padding overflows, pages re-paginate, moov grows), then removal."""
    p = _copy(media.path(fmt, "full"), tmp_path)
    before = content_id(p)
    size0 = p.stat().st_size
    f = mutagen.File(p)
    family = FAMILY[fmt]
    if family == "id3":
        f.tags.add(TXXX(encoding=3, desc="big", text=[BIG]))
    elif family == "vorbis":
        f.tags["BIGCOMMENT"] = BIG
    elif family == "mp4":
        f.tags["\xa9lyr"] = [BIG]
    else:
        f.tags["WM/Lyrics"] = [BIG]
    pages0 = _ogg_pages(p) if p.suffix in (".ogg", ".opus", ".oga") else None
    f.save()
    assert p.stat().st_size > size0 + 100_000
    if pages0 is not None:
        assert _ogg_pages(p) > pages0  # re-paginated: every later page renumbered
    assert content_id(p) == before
    f = mutagen.File(p)
    f.delete()
    assert content_id(p) == before


def test_mp3_appended_and_prepended_tags(media, tmp_path):
    p = _copy(media.path("mp3", "empty"), tmp_path)
    before = content_id(p)
    t = ID3()
    t.add(TIT2(encoding=3, text=["title"]))
    t.save(p, v1=2)  # ID3v2 in front, ID3v1 at the end
    assert p.read_bytes()[:3] == b"ID3" and p.read_bytes()[-128:-125] == b"TAG"
    assert content_id(p) == before
    ape = mutagen.apev2.APEv2()
    ape["Title"] = "ape title"
    ape.save(p)  # APEv2 goes before the ID3v1 tag
    assert b"APETAGEX" in p.read_bytes()[-400:]
    assert content_id(p) == before
    # ID3v2 resized with lots of padding
    t = ID3(p)
    t.save(p, padding=lambda info: 50_000)
    assert content_id(p) == before
    # an APEv2 tag *after* the ID3v1 tag, as some broken taggers write it
    blob = tmp_path / "ape.bin"
    blob.write_bytes(b"")
    ape2 = mutagen.apev2.APEv2()
    ape2["Artist"] = "x"
    ape2.save(blob)
    q = tmp_path / "ape-last.mp3"
    q.write_bytes(p.read_bytes() + blob.read_bytes())
    assert q.read_bytes()[-32:-24] == b"APETAGEX"
    assert content_id(q) == before
    # NUL padding written outside the ID3v2 tag's declared size
    r = tmp_path / "zeros.mp3"
    d = bytearray(p.read_bytes())
    size = ID3(p).size
    r.write_bytes(bytes(d[:size]) + b"\x00" * 3000 + bytes(d[size:]))
    assert content_id(r) == before


def test_flac_blocks_padding_and_id3_prefix(media, tmp_path):
    p = _copy(media.path("flac", "full"), tmp_path)
    before = content_id(p)
    f = mutagen.flac.FLAC(p)
    pic = mutagen.flac.Picture()
    pic.data = b"\x89PNG" + b"\x00" * 100_000
    f.add_picture(pic)
    f.save(padding=lambda info: 0)
    assert content_id(p) == before
    f = mutagen.flac.FLAC(p)
    f.clear_pictures()
    f.save(padding=lambda info: 70_000)
    assert content_id(p) == before
    t = ID3()
    t.add(TIT2(encoding=3, text=["an ID3 tag some taggers put in front of FLAC"]))
    t.save(p, v1=2)
    assert p.read_bytes()[:3] == b"ID3"
    assert identity.detect_format(open(p, "rb"), str(p)) == identity.FLAC
    assert content_id(p) == before


@pytest.mark.parametrize("fmt", ["m4a", "alac"])
def test_mp4_faststart_moov_growth_moves_mdat(media, fmt, tmp_path):
    """moov before mdat: growing the tags shifts mdat (and its chunk offsets) down."""
    p = tagfiles.encode(tagfiles.SOURCE, tmp_path / f"fast-{fmt}.m4a", FORMATS[fmt][1],
                        extra=["-movflags", "+faststart"])
    data = p.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    before = content_id(p)
    mdat_at = data.find(b"mdat")
    f = mutagen.mp4.MP4(p)
    f.tags["covr"] = [mutagen.mp4.MP4Cover(b"\x89PNG" + b"\x01" * 150_000)]
    f.save()
    assert p.read_bytes().find(b"mdat") > mdat_at + 100_000
    assert content_id(p) == before
    # and the audio still decodes to the same samples
    assert tagfiles.decode(p) == tagfiles.decode(media.base[fmt])


@pytest.mark.parametrize("fmt", ["ogg", "opus", "oggflac"])
def test_ogg_hashes_exactly_the_audio_packets(media, fmt):
    """Cross-check the packet walk against mutagen's own Ogg packet reassembly."""
    p = media.path(fmt, "full")
    with open(p, "rb") as fh:
        pages = []
        while True:
            try:
                pages.append(mutagen.ogg.OggPage(fh))
            except EOFError:
                break
        packets = mutagen.ogg.OggPage.to_packets(pages, strict=False)
    payload = identity.audio_payload(p)
    if fmt == "ogg":
        audio = packets[3:]
    elif fmt == "opus":
        audio = packets[2:]
    else:
        audio = [pk for pk in packets[1:] if pk[:1] == b"\xff"]
        assert len(packets) - 1 - len(audio) >= 1  # metadata-block packets were skipped
    assert payload == b"".join(audio)


def test_changed_audio_changes_the_id(media, tmp_path):
    p = _copy(media.path("mp3", "full"), tmp_path)  # ~128 KB payload: hashed completely
    before = content_id(p)
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    assert content_id(p) != before


def test_large_payload_is_sampled(media, tmp_path):
    """WAV payload ~3.5 MB > 3 samples: start, middle and end are hashed, plus the length."""
    p = tagfiles.encode(tagfiles.SOURCE, tmp_path / "long.wav", FORMATS["wav"][1],
                        seconds=20, extra=["-ac", "2", "-ar", "44100"])
    before = content_id(p)
    data = p.read_bytes()
    start = data.find(b"data") + 8
    payload_len = struct.unpack("<I", data[start - 4:start])[0]
    assert payload_len > 3 * identity.SAMPLE_SIZE

    def flipped(offset: int) -> str:
        d = bytearray(data)
        d[start + offset] ^= 0xFF
        q = tmp_path / "flip.wav"
        q.write_bytes(bytes(d))
        return content_id(q)

    assert flipped(10) != before  # in the first sample
    assert flipped(payload_len // 2) != before  # in the middle sample
    assert flipped(payload_len - 10) != before  # in the last sample
    # documented trade-off: a byte between the samples is not covered
    assert flipped(identity.SAMPLE_SIZE + 1000) == before
    # and tags do not move it
    write_genres(p, ["Rock"], 0.5)
    assert content_id(p) == before


def test_unknown_layouts_are_read_errors(tmp_path):
    cases = {
        "text.mp3": b"",  # empty
        "text.flac": b"hello world\n" * 100,
        "noaudio.mp4": struct.pack(">I4s", 16, b"ftyp") + b"M4A \x00\x00\x00\x00",  # no mdat
        "nodata.wav": b"RIFF\x04\x00\x00\x00WAVE",
        "bad.ogg": b"OggS" + b"\x01" * 60,  # bad page version
        "speex.ogg": b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\x40" + b"Nonsense" + b"\x00" * 56,
    }
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(ReadError) as err:
            content_id(p)
        assert err.value.path == str(p) and "\n" not in str(err.value), name
    with pytest.raises(ReadError, match="vanished"):
        content_id(tmp_path / "missing.ogg")
    with pytest.raises(ReadError):
        content_id(tmp_path)
