"""Genre tags: reading, writing the exact fields, restoring, and each format's details.

Real files in every format (see tests/helpers/tagfiles.py); no mocks. The safety of the write
(refusals, failures mid-write, a full disk, stale temporary files) is in test_safe_write.py.
"""

from __future__ import annotations

import errno
import os
import stat

import mutagen
import pytest
from helpers import tagfiles
from helpers.rawtags import id3_tags, others, raw_field, raw_mp4_gen, temp_files
from helpers.tagfiles import ALL, CONF_FIELD, FAMILY, GENRE_FIELD

from tagger.audio.identity import content_id
from tagger.errors import ReadError, WriteError
from tagger.library.tags import TagChange, read_genres, restore, supported, write_genres


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return tagfiles.media(tmp_path_factory)


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize("fmt", ALL)
def test_read_genres_of_each_variant(media, fmt):
    assert read_genres(media.path(fmt, "full")) == ["Jazz"]
    assert read_genres(media.path(fmt, "empty")) == []
    assert read_genres(media.path(fmt, "partial")) == []
    with pytest.raises(ReadError) as err:
        read_genres(media.path(fmt, "corrupt"))
    assert err.value.path == str(media.path(fmt, "corrupt"))
    assert "\n" not in str(err.value)


def test_read_genres_errors(tmp_path):
    with pytest.raises(ReadError, match="vanished"):
        read_genres(tmp_path / "missing.mp3")
    with pytest.raises(ReadError):
        read_genres(tmp_path)
    text = tmp_path / "notes.flac"
    text.write_text("not audio at all\n" * 100)
    with pytest.raises(ReadError, match="not a supported"):
        read_genres(text)
    empty = tmp_path / "empty.m4a"
    empty.write_bytes(b"")
    with pytest.raises(ReadError):
        read_genres(empty)


def test_supported():
    for name in ("a.mp3", "B.FLAC", "c.ogg", "d.opus", "e.oga", "f.m4a", "g.wav", "h.aif",
                 "i.aiff", "j.wma", "k.mp4"):
        assert supported(name), name
    for name in ("a.txt", "b.aac", "c", ".tagger-0123456789abcdef.tmp", "d.jpg"):
        assert not supported(name), name


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize("fmt", ALL)
def test_write_and_restore_full_file(media, fmt, tmp_path):
    family = FAMILY[fmt]
    g, c = GENRE_FIELD[family], CONF_FIELD[family]
    p = media.copy(fmt, "full", tmp_path)
    before_others = others(p, fmt)
    before_id = content_id(p)
    before_pcm = tagfiles.decode(p)

    changes = write_genres(p, ["Electronic", "Ambient"], 0.25)

    assert changes == [
        TagChange(str(p), g, ("Jazz",), ("Electronic", "Ambient")),
        TagChange(str(p), c, None, ("0.250",)),
    ]
    assert raw_field(p, fmt, g) == ("Electronic", "Ambient")
    assert raw_field(p, fmt, c) == ("0.250",)
    assert read_genres(p) == ["Electronic", "Ambient"]
    assert others(p, fmt) == before_others
    assert mutagen.File(p) is not None
    assert content_id(p) == before_id
    assert tagfiles.decode(p) == before_pcm
    assert temp_files(tmp_path) == []

    restore(p, changes)

    assert raw_field(p, fmt, g) == ("Jazz",)
    assert raw_field(p, fmt, c) is None
    assert read_genres(p) == ["Jazz"]
    assert others(p, fmt) == before_others
    assert content_id(p) == before_id
    assert tagfiles.decode(p) == before_pcm


@pytest.mark.parametrize("refusal", ["EXDEV", "ENOSYS", "missing"])
def test_copy_falls_back_when_the_kernel_will_not_copy(media, refusal, tmp_path, monkeypatch):
    """copy_file_range refused (another filesystem, an old kernel) or absent: the same result
    through the read/write loop."""
    expected_dir, fallback_dir = tmp_path / "kernel", tmp_path / "fallback"
    expected_dir.mkdir()
    fallback_dir.mkdir()
    expected = media.copy("flac", "full", expected_dir)
    write_genres(expected, ["Electronic"], 0.5)
    p = media.copy("flac", "full", fallback_dir)
    if refusal == "missing":
        monkeypatch.delattr(os, "copy_file_range")
    else:
        code = getattr(errno, refusal)

        def refuse(*args):
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(os, "copy_file_range", refuse)

    write_genres(p, ["Electronic"], 0.5)

    assert p.read_bytes() == expected.read_bytes()
    assert temp_files(fallback_dir) == []


@pytest.mark.parametrize("variant", ["empty", "partial"])
@pytest.mark.parametrize("fmt", ALL)
def test_write_to_untagged_genre(media, fmt, variant, tmp_path):
    family = FAMILY[fmt]
    g, c = GENRE_FIELD[family], CONF_FIELD[family]
    p = media.copy(fmt, variant, tmp_path)
    before_others = others(p, fmt)
    before_id = content_id(p)

    changes = write_genres(p, ["Jazz"], None)  # no confidence: that field is not touched

    assert changes == [TagChange(str(p), g, None, ("Jazz",))]
    assert raw_field(p, fmt, g) == ("Jazz",)
    assert raw_field(p, fmt, c) is None
    assert others(p, fmt) == before_others
    assert content_id(p) == before_id

    restore(p, changes)
    assert raw_field(p, fmt, g) is None
    assert read_genres(p) == []
    assert others(p, fmt) == before_others
    assert content_id(p) == before_id


@pytest.mark.parametrize("fmt", ALL)
def test_multi_value_round_trip(media, fmt, tmp_path):
    g = GENRE_FIELD[FAMILY[fmt]]
    p = media.copy(fmt, "partial", tmp_path)
    genres = ["Jazz", "Bossa Nova", "Électronique"]
    write_genres(p, genres, 0.5)
    assert read_genres(p) == genres
    assert raw_field(p, fmt, g) == tuple(genres)
    if FAMILY[fmt] == "vorbis":  # one GENRE comment per value
        assert [v for k, v in mutagen.File(p).tags if k.upper() == "GENRE"] == genres
    if FAMILY[fmt] == "id3":  # one TCON frame holding several values
        assert len(id3_tags(p).getall("TCON")) == 1


@pytest.mark.parametrize("fmt", ALL)
def test_dry_run_writes_nothing(media, fmt, tmp_path):
    p = media.copy(fmt, "full", tmp_path)
    before = p.read_bytes()
    st = p.stat()
    planned = write_genres(p, ["Rock", "Pop"], 0.75, dry_run=True)
    assert p.read_bytes() == before
    assert p.stat().st_mtime_ns == st.st_mtime_ns and p.stat().st_ino == st.st_ino
    assert temp_files(tmp_path) == []
    assert planned == write_genres(p, ["Rock", "Pop"], 0.75)
    assert planned  # it did have something to do


@pytest.mark.parametrize("fmt", ALL)
def test_unchanged_write_does_not_touch_the_file(media, fmt, tmp_path):
    p = media.copy(fmt, "full", tmp_path)
    assert write_genres(p, ["Jazz"], 0.5) != []
    st = p.stat()
    before = p.read_bytes()
    assert write_genres(p, [" Jazz ", "Jazz", ""], 0.5) == []  # normalised to ("Jazz",)
    assert write_genres(p, "Jazz", None) == []
    assert p.read_bytes() == before
    assert (p.stat().st_mtime_ns, p.stat().st_ino) == (st.st_mtime_ns, st.st_ino)


def test_write_changes_mtime_and_keeps_mode_and_owner(media, tmp_path):
    p = media.copy("flac", "full", tmp_path)
    os.chmod(p, 0o640)
    if os.geteuid() == 0:
        os.chown(p, 1234, 2345)
    os.utime(p, ns=(1_000_000_000, 1_000_000_000))
    write_genres(p, ["Rock"], 0.5)
    st = p.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_mtime_ns != 1_000_000_000  # the content changed, so does the mtime
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1234, 2345)


def test_write_through_symlink_keeps_the_link(media, tmp_path):
    target = media.copy("ogg", "full", tmp_path / "real")
    link = tmp_path / "link.ogg"
    link.symlink_to(target)
    changes = write_genres(link, ["Rock"], None)
    assert changes[0].path == str(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert read_genres(target) == ["Rock"]
    assert temp_files(target.parent) == [] and temp_files(tmp_path) == []


def test_empty_genre_list_removes_the_field(media, tmp_path):
    p = media.copy("mp3", "full", tmp_path)
    changes = write_genres(p, [], None)
    assert changes == [TagChange(str(p), "TCON", ("Jazz",), None)]
    assert read_genres(p) == []
    restore(p, changes)
    assert read_genres(p) == ["Jazz"]


def test_confidence_format_and_validation(media, tmp_path):
    p = media.copy("flac", "empty", tmp_path)
    write_genres(p, ["Rock"], 0.87654)
    assert raw_field(p, "flac", "TAGGER_GENRE_CONFIDENCE") == ("0.877",)
    with pytest.raises(ValueError):
        write_genres(p, ["Rock"], float("nan"))


def test_restore_rejects_foreign_fields(media, tmp_path):
    p = media.copy("flac", "full", tmp_path)
    before = p.read_bytes()
    with pytest.raises(WriteError, match="'TCON': not a Vorbis comment field"):
        restore(p, [TagChange(str(p), "TCON", None, ("Rock",))])
    assert p.read_bytes() == before
    restore(p, [])  # nothing to do
    assert p.read_bytes() == before


def test_restore_first_occurrence_wins(media, tmp_path):
    p = media.copy("opus", "full", tmp_path)
    first = write_genres(p, ["Rock"], 0.1)
    second = write_genres(p, ["Pop"], 0.2)
    restore(p, first + second)
    assert read_genres(p) == ["Jazz"]
    assert raw_field(p, "opus", "TAGGER_GENRE_CONFIDENCE") is None


# --------------------------------------------------------------------------- format details


def test_mp3_id3v23_stays_v23(media, tmp_path):
    p = media.copy("mp3", "v23", tmp_path)
    t = id3_tags(p)
    assert t.version[:2] == (2, 3)
    before_others = others(p, "mp3")
    before_v1 = p.read_bytes()[-128:]
    assert before_v1[:3] == b"TAG"

    changes = write_genres(p, ["Jazz", "Swing"], 0.5)

    assert changes[0] == TagChange(str(p), "TCON", ("Rock",), ("Jazz", "Swing"))
    data = p.read_bytes()
    assert data[:4] == b"ID3\x03"  # still ID3v2.3
    t = id3_tags(p)
    assert "TYER" in t and "TDRC" not in t  # the user's v2.3 frames were not upgraded
    assert others(p, "mp3") == before_others  # includes the ID3v1 bytes
    assert read_genres(p) == ["Jazz", "Swing"]  # multi-value survives v2.3 (NUL separated)
    restore(p, changes)
    assert raw_field(p, "mp3", "TCON") == ("Rock",)
    assert p.read_bytes()[:4] == b"ID3\x03"
    assert p.read_bytes()[-128:] == before_v1


def test_mp3_id3v1_genre_counts_and_is_left_alone(media, tmp_path):
    p = media.copy("mp3", "v1only", tmp_path)
    assert p.read_bytes()[:3] != b"ID3"
    v1 = p.read_bytes()[-128:]
    assert read_genres(p) == ["Rock"]  # from the ID3v1 genre byte
    before_id = content_id(p)

    changes = write_genres(p, ["Jazz"], 0.5)

    assert changes[0] == TagChange(str(p), "TCON", None, ("Jazz",))
    assert p.read_bytes()[:4] == b"ID3\x04"  # a new tag is ID3v2.4
    assert p.read_bytes()[-128:] == v1  # ID3v1 untouched (still says Rock)
    assert read_genres(p) == ["Jazz"]  # v2 TCON wins over v1
    assert content_id(p) == before_id
    restore(p, changes)
    assert read_genres(p) == ["Rock"]
    assert p.read_bytes()[-128:] == v1


@pytest.mark.parametrize("fmt", ["m4a", "alac"])
def test_mp4_legacy_gnre(media, fmt, tmp_path):
    p = media.copy(fmt, "gnre", tmp_path)
    assert tagfiles.raw_gnre(p) == [9] and raw_mp4_gen(p) is None
    assert read_genres(p) == ["Jazz"]
    before_others = others(p, fmt)

    changes = write_genres(p, ["Rock"], 0.5)

    assert changes == [
        TagChange(str(p), "\xa9gen", None, ("Rock",)),
        TagChange(str(p), "gnre", ("Jazz",), None),
        TagChange(str(p), "----:com.apple.iTunes:TAGGER_GENRE_CONFIDENCE", None, ("0.500",)),
    ]
    assert tagfiles.raw_gnre(p) is None
    assert raw_mp4_gen(p) == ("Rock",)
    assert others(p, fmt) == before_others

    restore(p, changes)
    assert tagfiles.raw_gnre(p) == [9]
    assert raw_mp4_gen(p) is None
    assert read_genres(p) == ["Jazz"]
    assert others(p, fmt) == before_others


def test_mp4_gnre_survives_unrelated_restore(media, tmp_path):
    p = media.copy("m4a", "gnre", tmp_path)
    # a restore that touches only the confidence must not drop the gnre atom
    restore(p, [TagChange(str(p), "----:com.apple.iTunes:TAGGER_GENRE_CONFIDENCE", ("0.1",), None)])
    assert tagfiles.raw_gnre(p) == [9]
    assert raw_mp4_gen(p) is None


def test_vorbis_genre_key_is_case_insensitive(media, tmp_path):
    p = media.copy("flac", "partial", tmp_path)
    f = mutagen.File(p)
    f.tags["genre"] = ["Jazz"]
    f.save()
    assert read_genres(p) == ["Jazz"]
    write_genres(p, ["Rock"], None)
    assert [v for k, v in mutagen.File(p).tags if k.upper() == "GENRE"] == ["Rock"]
