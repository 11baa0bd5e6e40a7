"""Real audio files in every taggable format, with full / empty / partial / corrupt tags.

Made from the real recordings in ``tests/data/`` (attribution in tests/data/ATTRIBUTION.md;
falling back to ``shared/music`` beside the repository, or $TAGGER_TEST_MUSIC): 8 s of Kevin
MacLeod, "Vibe Ace" (CC BY 3.0), and, as the "different audio" clip, Mihai Sorohan's 5.3 s
jazz trumpet loop (CC BY 3.0). Encoded with imageio-ffmpeg's bundled ffmpeg, so no system
ffmpeg is needed. Tags are then set with mutagen, like beets' test files.

Import as ``helpers.tagfiles`` (``tests`` is on pytest's pythonpath);
``media(tmp_path_factory)`` builds the set once per test session (cached under the session's
base temp directory).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import imageio_ffmpeg
import mutagen
import mutagen.aiff
import mutagen.asf
import mutagen.flac
import mutagen.mp4
import mutagen.wave
from mutagen.id3 import APIC, COMM, ID3, TALB, TCON, TDRC, TIT2, TPE1, TRCK, TXXX

_HERE = Path(__file__).resolve().parent
_FOLDERS = [
    *([Path(os.environ["TAGGER_TEST_MUSIC"])] if os.environ.get("TAGGER_TEST_MUSIC") else []),
    _HERE.parent / "data",  # tests/data
    _HERE.parents[2] / "shared" / "music",  # shared/music beside the repository
]


def find_clip(name: str) -> Path:
    """A real recording by file name (the first folder that has it; may not exist)."""
    for folder in _FOLDERS:
        if (folder / name).is_file():
            return folder / name
    return _FOLDERS[-1] / name


SOURCE = find_clip("Kevin_MacLeod_-_Vibe_Ace.ogg")
OTHER_SOURCE = find_clip("sorohanro_-_solo-trumpet-06.ogg")

# name -> (file extension, ffmpeg codec arguments)
FORMATS: dict[str, tuple[str, list[str]]] = {
    "mp3": (".mp3", ["-c:a", "libmp3lame", "-b:a", "128k"]),
    "flac": (".flac", ["-c:a", "flac"]),
    "ogg": (".ogg", ["-c:a", "libvorbis", "-q:a", "3"]),
    "opus": (".opus", ["-c:a", "libopus", "-b:a", "64k"]),
    "oggflac": (".oga", ["-c:a", "flac"]),
    "m4a": (".m4a", ["-c:a", "aac", "-b:a", "128k"]),
    "alac": (".m4a", ["-c:a", "alac"]),
    "wav": (".wav", ["-c:a", "pcm_s16le"]),
    "aiff": (".aiff", ["-c:a", "pcm_s16be"]),
    "wma": (".wma", ["-c:a", "wmav2", "-b:a", "128k"]),
}
ALL = tuple(FORMATS)
VARIANTS = ("full", "empty", "partial", "corrupt")

FAMILY = {
    "mp3": "id3", "wav": "id3", "aiff": "id3",
    "flac": "vorbis", "ogg": "vorbis", "opus": "vorbis", "oggflac": "vorbis",
    "m4a": "mp4", "alac": "mp4", "wma": "asf",
}
GENRE_FIELD = {"id3": "TCON", "vorbis": "GENRE", "mp4": "\xa9gen", "asf": "WM/Genre"}
CONF_FIELD = {
    "id3": "TXXX:TAGGER_GENRE_CONFIDENCE",
    "vorbis": "TAGGER_GENRE_CONFIDENCE",
    "mp4": "----:com.apple.iTunes:TAGGER_GENRE_CONFIDENCE",
    "asf": "TAGGER_GENRE_CONFIDENCE",
}

_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def ffmpeg() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def encode(src: Path, dst: Path, codec: list[str], start: float = 10.0, seconds: float = 8.0,
           extra: list[str] | None = None) -> Path:
    cmd = [ffmpeg(), "-v", "error", "-nostdin", "-y", "-ss", str(start), "-t", str(seconds),
           "-i", str(src), "-map", "0:a", "-map_metadata", "-1", *codec, *(extra or []), str(dst)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return dst


def decode(path: str | os.PathLike[str]) -> bytes:
    """The decoded PCM of a file (s16le, native rate and channels)."""
    cmd = [ffmpeg(), "-v", "error", "-nostdin", "-i", os.fspath(path), "-map", "0:a",
           "-f", "s16le", "-"]
    return subprocess.run(cmd, check=True, capture_output=True, timeout=120).stdout


# --------------------------------------------------------------------------- tagging


def strip_tags(path: Path) -> None:
    """Leave the file with no tag values at all (MP3: no ID3v2 and no ID3v1 tag)."""
    f = mutagen.File(path)
    if f is not None and f.tags is not None:
        f.delete()


def set_tags(path: Path, fmt: str, *, genre: str | None) -> None:
    """Title/artist/album/date/track/comment (+ picture, + a custom field) and maybe genre."""
    family = FAMILY[fmt]
    if family == "id3":
        f = mutagen.File(path)
        if fmt == "mp3":
            try:
                tags = ID3(path)
            except mutagen.id3.ID3NoHeaderError:
                tags = ID3()
        else:
            if f.tags is None:
                f.add_tags()
            tags = f.tags
        tags.add(TIT2(encoding=3, text=["Vibe Ace"]))
        tags.add(TPE1(encoding=3, text=["Kevin MacLeod"]))
        tags.add(TALB(encoding=3, text=["Free Music Archive sampler"]))
        tags.add(TDRC(encoding=3, text=["2011-03-04"]))
        tags.add(TRCK(encoding=3, text=["3/12"]))
        tags.add(COMM(encoding=3, lang="eng", desc="", text=["a comment"]))
        tags.add(TXXX(encoding=3, desc="MusicBrainz Album Id", text=["abc-123"]))
        tags.add(APIC(encoding=3, mime="image/png", type=3, desc="cover", data=_PNG))
        if genre is not None:
            tags.add(TCON(encoding=3, text=[genre]))
        if fmt == "mp3":
            tags.save(path)
        else:
            f.save()
    elif family == "vorbis":
        f = mutagen.File(path)
        if f.tags is None:
            f.add_tags()
        f.tags["TITLE"] = "Vibe Ace"
        f.tags["ARTIST"] = "Kevin MacLeod"
        f.tags["ALBUM"] = "Free Music Archive sampler"
        f.tags["DATE"] = "2011"
        f.tags["TRACKNUMBER"] = "3"
        f.tags["COMMENT"] = "a comment"
        f.tags["MUSICBRAINZ_ALBUMID"] = "abc-123"
        if genre is not None:
            f.tags["GENRE"] = genre
        if fmt == "flac":
            pic = mutagen.flac.Picture()
            pic.type, pic.mime, pic.desc, pic.data = 3, "image/png", "cover", _PNG
            f.add_picture(pic)
        f.save()
    elif family == "mp4":
        f = mutagen.mp4.MP4(path)
        if f.tags is None:
            f.add_tags()
        f.tags["\xa9nam"] = ["Vibe Ace"]
        f.tags["\xa9ART"] = ["Kevin MacLeod"]
        f.tags["\xa9alb"] = ["Free Music Archive sampler"]
        f.tags["\xa9day"] = ["2011"]
        f.tags["trkn"] = [(3, 12)]
        f.tags["\xa9cmt"] = ["a comment"]
        f.tags["----:com.apple.iTunes:MusicBrainz Album Id"] = [
            mutagen.mp4.MP4FreeForm(b"abc-123")]
        f.tags["covr"] = [mutagen.mp4.MP4Cover(_PNG, imageformat=mutagen.mp4.MP4Cover.FORMAT_PNG)]
        if genre is not None:
            f.tags["\xa9gen"] = [genre]
        f.save()
    elif family == "asf":
        f = mutagen.asf.ASF(path)
        f.tags["Title"] = ["Vibe Ace"]
        f.tags["Author"] = ["Kevin MacLeod"]
        f.tags["WM/AlbumTitle"] = ["Free Music Archive sampler"]
        f.tags["WM/Year"] = ["2011"]
        f.tags["WM/TrackNumber"] = [mutagen.asf.ASFDWordAttribute(3)]
        f.tags["Description"] = ["a comment"]
        f.tags["MusicBrainz/Album Id"] = ["abc-123"]
        if genre is not None:
            f.tags["WM/Genre"] = [genre]
        f.save()


def add_mp4_gnre(path: Path, number: int) -> None:
    """Give an MP4 file a legacy numeric ``gnre`` atom (and no ©gen), the way old iTunes did."""
    f = mutagen.mp4.MP4(path)
    if f.tags is None:
        f.add_tags()
    f.tags.pop("\xa9gen", None)
    data = mutagen.mp4.Atom.render(b"data", struct.pack(">2I", 0, 0) + struct.pack(">H", number))
    f.tags._failed_atoms["gnre"] = [data]
    f.save()


def mp4_item_payloads(path: Path, name: bytes) -> list[bytes] | None:
    """The payloads of the ``ilst`` items called ``name``, read straight from the atom tree
    (None: the file has no ``ilst``)."""
    with open(path, "rb") as fh:
        atoms = mutagen.mp4.Atoms(fh)
        try:
            ilst = atoms.path(b"moov", b"udta", b"meta", b"ilst")[-1]
        except KeyError:
            return None
        payloads = []
        for child in ilst.children:
            if child.name == name:
                ok, data = child.read(fh)
                assert ok
                payloads.append(data)
        return payloads


def raw_gnre(path: Path) -> list[int] | None:
    """Numbers in the file's ``gnre`` atom, read straight from the atom tree (None: absent)."""
    payloads = mp4_item_payloads(path, b"gnre")
    if not payloads:
        return None
    return [struct.unpack(">H", payloads[0][16:18])[0]]


def corrupt(path: Path, fmt: str) -> None:
    """Break the file's header so mutagen cannot parse it."""
    data = bytearray(path.read_bytes())

    def replace(old: bytes, new: bytes, nth: int = 0) -> None:
        i = -1
        for _ in range(nth + 1):
            i = data.find(old, i + 1)
            assert i >= 0, (fmt, old)
        data[i:i + len(old)] = new

    if fmt == "mp3":
        assert data[:3] == b"ID3"
        data[6:10] = b"\x7f\x7f\x7f\x7f"  # tag size far beyond the end of the file
    elif fmt == "flac":
        assert data[:4] == b"fLaC"
        data[5:8] = b"\xff\xff\xff"  # STREAMINFO length beyond the end of the file
    elif fmt in ("ogg", "opus", "oggflac"):
        replace(b"OggS", b"OggX", nth=1)  # second page (comment header) unreadable
    elif fmt in ("m4a", "alac"):
        i = data.find(b"moov")
        data[i - 4:i] = struct.pack(">I", 0x7FFFFFF0)
    elif fmt == "wav":
        replace(b"fmt ", b"fmX ")
    elif fmt == "aiff":
        replace(b"COMM", b"COMX")
    elif fmt == "wma":
        data[24:28] = struct.pack("<I", 9999)  # number of header objects
    else:  # pragma: no cover
        raise ValueError(fmt)
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- the set


class Media:
    def __init__(self, root: Path):
        self.root = root
        self.base: dict[str, Path] = {}  # untagged clip A per format
        self.other: dict[str, Path] = {}  # untagged clip B (different audio) per format
        self.files: dict[tuple[str, str], Path] = {}  # (format, variant) -> file

    def path(self, fmt: str, variant: str) -> Path:
        return self.files[(fmt, variant)]

    def copy(self, fmt: str, variant: str, dst_dir: Path, name: str | None = None) -> Path:
        src = self.files[(fmt, variant)]
        dst_dir.mkdir(parents=True, exist_ok=True)
        dst = dst_dir / (name or f"{fmt}-{variant}{src.suffix}")
        shutil.copyfile(src, dst)
        return dst


def build(root: Path) -> Media:
    media = Media(root)
    root.mkdir(parents=True, exist_ok=True)
    for fmt, (ext, codec) in FORMATS.items():
        base = encode(SOURCE, root / f"base-{fmt}{ext}", codec)
        strip_tags(base)
        media.base[fmt] = base
        other = encode(OTHER_SOURCE, root / f"other-{fmt}{ext}", codec, start=0.0)
        strip_tags(other)
        media.other[fmt] = other
        for variant in VARIANTS:
            dst = root / f"{fmt}-{variant}{ext}"
            shutil.copyfile(base, dst)
            if variant == "full":
                set_tags(dst, fmt, genre="Jazz")
            elif variant == "partial":
                set_tags(dst, fmt, genre=None)
            elif variant == "corrupt":
                set_tags(dst, fmt, genre="Jazz")
                corrupt(dst, fmt)
            media.files[(fmt, variant)] = dst
    # MP3 extras: an ID3v2.3 tag as ffmpeg writes it (with an ID3v1 tag), and ID3v1 only
    v23 = encode(SOURCE, root / "mp3-v23.mp3", FORMATS["mp3"][1], extra=[
        "-id3v2_version", "3", "-write_id3v1", "1", "-metadata", "title=Vibe Ace",
        "-metadata", "artist=Kevin MacLeod", "-metadata", "date=2011", "-metadata", "genre=Rock",
        "-metadata", "album=Sampler"])
    media.files[("mp3", "v23")] = v23
    v1 = root / "mp3-v1only.mp3"
    shutil.copyfile(v23, v1)
    ID3(v1).delete(v1, delete_v1=False, delete_v2=True)
    media.files[("mp3", "v1only")] = v1
    # MP4 with a legacy numeric genre (gnre 9 = ID3v1 genre 8 = "Jazz"), plus other tags
    for fmt in ("m4a", "alac"):
        g = root / f"{fmt}-gnre.m4a"
        shutil.copyfile(media.files[(fmt, "partial")], g)
        add_mp4_gnre(g, 9)
        media.files[(fmt, "gnre")] = g
    return media


_CACHE: dict[str, Media] = {}


def media(tmp_path_factory) -> Media:
    """The session's media set (built on first use)."""
    import pytest

    for src in (SOURCE, OTHER_SOURCE):
        if not src.is_file():
            pytest.skip(f"test music not found: {src} (set TAGGER_TEST_MUSIC)")
    root = tmp_path_factory.getbasetemp() / "tagger-media"
    key = str(root)
    if key not in _CACHE:
        if root.exists():
            shutil.rmtree(root)
        _CACHE[key] = build(root)
    return _CACHE[key]
