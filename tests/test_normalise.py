"""Genre normalisation (tagger.library.genres) on real tagged files: each rule is checked on
what tagger.library.tags reads from a real clip (tests/data, encoded by ffmpeg, tagged with
mutagen the way other taggers write), then on the normalised list the scan stores."""

from __future__ import annotations

import struct
from pathlib import Path

import mutagen.flac
import mutagen.mp4
import mutagen.oggvorbis
import pytest
from helpers import tagfiles
from mutagen.id3 import ID3, TCON, TPE1

from tagger.library import tags
from tagger.library.genres import GenreMap, normalise_genres


def clip(tmp_path: Path, fmt: str, name: str | None = None) -> Path:
    """Two untagged seconds of a real recording (Vibe Ace, CC BY) in ``fmt``."""
    if not tagfiles.SOURCE.is_file():
        pytest.skip(f"test music not found: {tagfiles.SOURCE}")
    ext, codec = tagfiles.FORMATS[fmt]
    path = tagfiles.encode(tagfiles.SOURCE, tmp_path / f"{name or fmt}{ext}", codec,
                           seconds=2.0)
    tagfiles.strip_tags(path)
    return path


def id3v23(tmp_path: Path, *texts: str, name: str = "v23") -> Path:
    """An MP3 whose ID3v2.3 TCON frame holds ``texts`` (several: NUL-separated, as v2.3
    taggers that know multi-value write them)."""
    path = clip(tmp_path, "mp3", name)
    tag = ID3()
    tag.add(TPE1(encoding=1, text=["Kevin MacLeod"]))
    tag.add(TCON(encoding=1, text=list(texts)))
    tag.save(path, v2_version=3, v23_sep=None)
    assert ID3(path).version[:2] == (2, 3)
    return path


def id3v1_only(tmp_path: Path, genre_byte: int) -> Path:
    """An MP3 with nothing but an ID3v1 tag, its genre byte set."""
    path = clip(tmp_path, "mp3", f"v1-{genre_byte}")
    block = (b"TAG" + b"Vibe Ace".ljust(30, b"\0") + b"Kevin MacLeod".ljust(30, b"\0")
             + b"Jazz Sampler".ljust(30, b"\0") + b"2011" + b"".ljust(30, b"\0")
             + bytes([genre_byte]))
    assert len(block) == 128
    with open(path, "ab") as f:
        f.write(block)
    with pytest.raises(mutagen.id3.ID3NoHeaderError):
        ID3(path, load_v1=False)  # no v2 tag at all: the genre is in the v1 byte only
    return path


# --------------------------------------------------------------------------- ID3v2.3


def test_id3v23_slash_joined_genres_split(tmp_path):
    path = id3v23(tmp_path, "Rock/Pop")  # how v2.3 taggers (and ffmpeg) join genres
    assert tags.read_genres(path) == ["Rock/Pop"]
    assert normalise_genres(tags.read_genres(path)) == ["Rock", "Pop"]


def test_id3v23_nul_separated_genres(tmp_path):
    path = id3v23(tmp_path, "Rock", "Jazz", "rock")
    assert tags.read_genres(path) == ["Rock", "Jazz", "rock"]
    assert normalise_genres(tags.read_genres(path)) == ["Rock", "Jazz"]  # deduped by case


def test_ffmpeg_written_id3v23_genre(tmp_path):
    src = tagfiles.SOURCE
    path = tagfiles.encode(src, tmp_path / "ffmpeg.mp3", tagfiles.FORMATS["mp3"][1],
                           seconds=2.0, extra=["-id3v2_version", "3",
                                               "-metadata", "genre=Electronic; Ambient"])
    assert normalise_genres(tags.read_genres(path)) == ["Electronic", "Ambient"]


# --------------------------------------------------------------------------- ID3v1 numeric


def test_id3v1_genre_byte(tmp_path):
    assert normalise_genres(tags.read_genres(id3v1_only(tmp_path, 17))) == ["Rock"]
    assert normalise_genres(tags.read_genres(id3v1_only(tmp_path, 8))) == ["Jazz"]
    assert normalise_genres(tags.read_genres(id3v1_only(tmp_path, 255))) == []  # "none"


@pytest.mark.parametrize(("tcon", "want"), [
    ("(17)", ["Rock"]),
    ("17", ["Rock"]),
    ("(17)Rock", ["Rock"]),
    ("(4)Eurodisco", ["Disco", "Eurodisco"]),  # a reference refined by text
    ("(17)(8)", ["Rock", "Jazz"]),
    ("(RX)", ["Remix"]),
    ("CR", ["Cover"]),
    ("((Live)", ["(Live)"]),  # "((" escapes a parenthesis
    ("255", []),  # ID3v1's "none"
    ("(999)", []),  # no such genre
])
def test_id3_numeric_tcon(tmp_path, tcon, want):
    path = id3v23(tmp_path, tcon)
    assert ID3(path, translate=False).getall("TCON")[0].text == [tcon]  # as taggers store it
    assert normalise_genres(tags.read_genres(path)) == want


def test_numbers_outside_id3_are_the_genres_they_say(tmp_path):
    """A Vorbis comment is free text: "(17)" and "32" there are what they say (issue #24:
    reading them as ID3v1 numbers turned a user's "17" into Rock on Ogg). Only an ID3 tag's
    TCON holds ID3v1 references (test_id3_numeric_tcon)."""
    path = clip(tmp_path, "ogg")
    f = mutagen.oggvorbis.OggVorbis(path)
    f["GENRE"] = ["(17)", "32"]
    f.save()
    assert normalise_genres(tags.read_genres(path)) == ["(17)", "32"]


# --------------------------------------------------------------------------- Vorbis


@pytest.mark.parametrize("fmt", ["ogg", "flac", "opus"])
def test_vorbis_multi_value_comments(tmp_path, fmt):
    path = clip(tmp_path, fmt)
    f = mutagen.File(path)
    f["GENRE"] = ["Jazz", "hip-hop", "Drum & Bass", "jazz"]
    f["ARTIST"] = ["Kevin MacLeod"]
    f["ALBUM"] = ["Jazz Sampler"]
    f.save()
    assert tags.read_genres(path) == ["Jazz", "hip-hop", "Drum & Bass", "jazz"]
    # the ID3v1 spelling of a known genre wins; " & " is not a separator; duplicates go
    assert normalise_genres(tags.read_genres(path)) == ["Jazz", "Hip-Hop", "Drum & Bass"]
    info = tags.read_info(path)
    assert (info.artist, info.album, info.genres) == ("Kevin MacLeod", "Jazz Sampler",
                                                       tags.read_genres(path))


def test_vorbis_separators_in_one_comment(tmp_path):
    path = clip(tmp_path, "flac")
    f = mutagen.flac.FLAC(path)
    f["GENRE"] = ["Chiptune ;  Video Game Music| electronic,Ambient / Pop/Funk"]
    f.save()
    # blanks trimmed and collapsed; "Pop/Funk" is an ID3v1 genre of its own, kept whole
    assert normalise_genres(tags.read_genres(path)) == [
        "Chiptune", "Video Game Music", "Electronic", "Ambient", "Pop", "Funk"]


# --------------------------------------------------------------------------- MP4


@pytest.mark.parametrize("fmt", ["m4a", "alac"])
def test_mp4_gnre_numeric_atom(tmp_path, fmt):
    path = clip(tmp_path, fmt)
    tagfiles.add_mp4_gnre(path, 18)  # gnre holds the ID3v1 number + 1: 18 is Rock (17)
    assert tagfiles.raw_gnre(path) == [18]
    assert normalise_genres(tags.read_genres(path)) == ["Rock"]


def test_mp4_gen_multi_value_wins_over_gnre(tmp_path):
    path = clip(tmp_path, "m4a")
    f = mutagen.mp4.MP4(path)
    if f.tags is None:
        f.add_tags()
    f.tags["\xa9gen"] = ["Synthpop", "synthpop", "Electronic/Dance"]
    f.tags["\xa9ART"] = ["Someone"]
    f.tags["aART"] = ["Various Artists"]
    f.tags["\xa9alb"] = ["Album"]
    f.tags._failed_atoms["gnre"] = [mutagen.mp4.Atom.render(  # both atoms, as old iTunes left
        b"data", struct.pack(">2I", 0, 0) + struct.pack(">H", 9))]
    f.save()
    assert struct.unpack(">H", tagfiles.mp4_item_payloads(path, b"gnre")[0][16:18]) == (9,)
    assert normalise_genres(tags.read_genres(path)) == ["Synthpop", "Electronic", "Dance"]
    info = tags.read_info(path)
    assert (info.artist, info.album) == ("Someone", "Album")


def test_mp4_album_artist_when_no_track_artist(tmp_path):
    path = clip(tmp_path, "m4a")
    f = mutagen.mp4.MP4(path)
    if f.tags is None:
        f.add_tags()
    f.tags["aART"] = ["Kevin MacLeod"]
    f.save()
    assert tags.read_info(path).artist == "Kevin MacLeod"
    assert tags.read_info(path).album is None and tags.read_info(path).genres == []


# --------------------------------------------------------------------------- the genre map


def test_genre_map_on_a_real_file(tmp_path):
    path = id3v23(tmp_path, "Electronica/Speech/Rock")
    genre_map = GenreMap.parse(["electronica=Electronic", "SPEECH="])
    assert normalise_genres(tags.read_genres(path), genre_map) == ["Electronic", "Rock"]
    assert normalise_genres(tags.read_genres(path), {"rock": "Electronic"}) == [
        "Electronica", "Speech", "Electronic"]  # a target equal to another value dedupes
    assert normalise_genres(["rock", "Chiptune"], {"rock": "chiptune"}) == ["chiptune"]
    # a known genre is spelled the ID3v1 way, whatever the map says
    assert normalise_genres(["rock"], {"rock": "electronic"}) == ["Electronic"]


def test_genre_map_moved_to_the_library_keeps_the_old_import():
    from tagger.learn.datasets import GenreMap as OldName

    assert OldName is GenreMap


def test_read_info_on_every_format(tmp_path_factory):
    media = tagfiles.media(tmp_path_factory)
    for fmt in tagfiles.ALL:
        info = tags.read_info(media.path(fmt, "full"))
        assert (info.artist, info.album, info.genres) == (
            "Kevin MacLeod", "Free Music Archive sampler", ["Jazz"]), fmt
        empty = tags.read_info(media.path(fmt, "empty"))
        assert (empty.artist, empty.album, empty.genres) == (None, None, []), fmt


def test_plain_values():
    assert normalise_genres(None) == [] and normalise_genres("  ") == []
    assert normalise_genres("Rock") == ["Rock"]
    # numbers are ID3's business (tagger.library.tags.id3), not plain values
    assert normalise_genres(["(999)", "255", "1990s"]) == ["(999)", "255", "1990s"]
    with pytest.raises(TypeError):
        normalise_genres([17])
