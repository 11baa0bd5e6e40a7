"""Genre tags: reading, writing the exact fields, restoring, and the safety of the write.

Real files in every format (see tests/helpers/tagfiles.py); no mocks.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import mutagen
import mutagen.aiff
import mutagen.asf
import mutagen.mp4
import mutagen.wave
import pytest
from helpers import tagfiles
from helpers.tagfiles import ALL, CONF_FIELD, FAMILY, GENRE_FIELD
from mutagen.id3 import ID3, ID3NoHeaderError

from tagger.audio.identity import content_id
from tagger.errors import ReadError, WriteError
from tagger.library import tags
from tagger.library.tags import TagChange, read_genres, restore, safe_write, supported, write_genres

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return tagfiles.media(tmp_path_factory)


# --------------------------------------------------------------------------- raw access
# (straight through mutagen / the atom tree, independent of tagger.library.tags)


def _id3_tags(path: Path):
    if path.suffix == ".mp3":
        try:
            return ID3(path, translate=False, load_v1=False)
        except ID3NoHeaderError:
            return None
    cls = mutagen.wave.WAVE if path.suffix == ".wav" else mutagen.aiff.AIFF
    return cls(path, translate=False, load_v1=False).tags


def _raw_mp4_gen(path: Path) -> tuple[str, ...] | None:
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
        t = _id3_tags(path)
        frame = t.get(field) if t is not None else None
        return tuple(frame.text) if frame is not None else None
    if family == "vorbis":
        values = (mutagen.File(path).tags or {}).get(field)
        return tuple(values) if values else None
    if family == "mp4":
        if field == "\xa9gen":
            return _raw_mp4_gen(path)
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
        t = _id3_tags(path)
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
        assert len(_id3_tags(p).getall("TCON")) == 1


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
    t = _id3_tags(p)
    assert t.version[:2] == (2, 3)
    before_others = others(p, "mp3")
    before_v1 = p.read_bytes()[-128:]
    assert before_v1[:3] == b"TAG"

    changes = write_genres(p, ["Jazz", "Swing"], 0.5)

    assert changes[0] == TagChange(str(p), "TCON", ("Rock",), ("Jazz", "Swing"))
    data = p.read_bytes()
    assert data[:4] == b"ID3\x03"  # still ID3v2.3
    t = _id3_tags(p)
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
    assert tagfiles.raw_gnre(p) == [9] and _raw_mp4_gen(p) is None
    assert read_genres(p) == ["Jazz"]
    before_others = others(p, fmt)

    changes = write_genres(p, ["Rock"], 0.5)

    assert changes == [
        TagChange(str(p), "\xa9gen", None, ("Rock",)),
        TagChange(str(p), "gnre", ("Jazz",), None),
        TagChange(str(p), "----:com.apple.iTunes:TAGGER_GENRE_CONFIDENCE", None, ("0.500",)),
    ]
    assert tagfiles.raw_gnre(p) is None
    assert _raw_mp4_gen(p) == ("Rock",)
    assert others(p, fmt) == before_others

    restore(p, changes)
    assert tagfiles.raw_gnre(p) == [9]
    assert _raw_mp4_gen(p) is None
    assert read_genres(p) == ["Jazz"]
    assert others(p, fmt) == before_others


def test_mp4_gnre_survives_unrelated_restore(media, tmp_path):
    p = media.copy("m4a", "gnre", tmp_path)
    # a restore that touches only the confidence must not drop the gnre atom
    restore(p, [TagChange(str(p), "----:com.apple.iTunes:TAGGER_GENRE_CONFIDENCE", ("0.1",), None)])
    assert tagfiles.raw_gnre(p) == [9]
    assert _raw_mp4_gen(p) is None


def test_vorbis_genre_key_is_case_insensitive(media, tmp_path):
    p = media.copy("flac", "partial", tmp_path)
    f = mutagen.File(p)
    f.tags["genre"] = ["Jazz"]
    f.save()
    assert read_genres(p) == ["Jazz"]
    write_genres(p, ["Rock"], None)
    assert [v for k, v in mutagen.File(p).tags if k.upper() == "GENRE"] == ["Rock"]


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("fmt", ALL)
def test_refuses_read_only_file(media, fmt, tmp_path):
    p = media.copy(fmt, "full", tmp_path)
    os.chmod(p, 0o444)
    before = p.read_bytes()
    with pytest.raises(WriteError, match="read-only") as err:
        write_genres(p, ["Rock"], 0.5)
    assert "\n" not in str(err.value) and err.value.path == str(p)
    with pytest.raises(WriteError, match="read-only"):
        write_genres(p, ["Rock"], 0.5, dry_run=True)
    with pytest.raises(WriteError, match="read-only"):
        restore(p, [TagChange(str(p), GENRE_FIELD[FAMILY[fmt]], None, ("Rock",))])
    assert p.read_bytes() == before
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("fmt", ALL)
def test_refuses_hard_linked_file(media, fmt, tmp_path):
    p = media.copy(fmt, "full", tmp_path)
    other = tmp_path / ("other" + p.suffix)
    os.link(p, other)
    before = p.read_bytes()
    with pytest.raises(WriteError, match="hard link") as err:
        write_genres(p, ["Rock"], 0.5)
    assert "\n" not in str(err.value)
    assert p.read_bytes() == before and other.read_bytes() == before
    assert os.stat(p).st_ino == os.stat(other).st_ino  # still one file
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("fmt", ALL)
def test_vanished_file(media, fmt, tmp_path):
    p = tmp_path / f"gone{media.path(fmt, 'full').suffix}"
    with pytest.raises(WriteError, match="vanished"):
        write_genres(p, ["Rock"], 0.5)
    with pytest.raises(WriteError, match="vanished"):
        restore(p, [TagChange(str(p), GENRE_FIELD[FAMILY[fmt]], None, ("Rock",))])
    with pytest.raises(ReadError, match="vanished"):
        read_genres(p)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ALL)
def test_unparseable_file_is_not_written(media, fmt, tmp_path):
    p = media.copy(fmt, "corrupt", tmp_path)
    before = p.read_bytes()
    with pytest.raises(WriteError) as err:
        write_genres(p, ["Rock"], 0.5)
    assert "\n" not in str(err.value) and err.value.path == str(p)
    with pytest.raises(WriteError):
        write_genres(p, ["Rock"], 0.5, dry_run=True)
    assert p.read_bytes() == before
    assert temp_files(tmp_path) == []


def test_refuses_non_regular_files(tmp_path):
    d = tmp_path / "album.mp3"
    d.mkdir()
    with pytest.raises(WriteError, match="not a regular file"):
        write_genres(d, ["Rock"], None)
    fifo = tmp_path / "pipe.flac"
    os.mkfifo(fifo)
    with pytest.raises(WriteError, match="not a regular file"):
        write_genres(fifo, ["Rock"], None)


def test_unrecognised_content_is_a_write_error(tmp_path):
    p = tmp_path / "fake.ogg"
    p.write_bytes(b"\x00" * 4096)
    with pytest.raises(WriteError, match="not a supported"):
        write_genres(p, ["Rock"], None)
    assert p.read_bytes() == b"\x00" * 4096


# --------------------------------------------------------------------------- failures mid-write


def _edit_genre(tmp, name="x.flac"):
    """An edit for safe_rewrite that sets the genre of the temp copy of a file called name."""
    editor = tags.open_editor(tmp, name)
    editor.set(editor.KEYS.genre, ("Rock",))
    tmp.seek(0)
    editor.save(tmp)
    return "done", True


def test_original_changed_during_write_aborts(media, tmp_path):
    p = media.copy("flac", "full", tmp_path)

    def meddle(tmp_name):
        assert Path(tmp_name).parent == tmp_path and Path(tmp_name).name.startswith(".tagger-")
        with open(p, "ab") as fh:
            fh.write(b"appended by someone else")

    with pytest.raises(WriteError, match="changed on disk"):
        safe_write.safe_rewrite(str(p), _edit_genre, before_replace=meddle)
    assert p.read_bytes().endswith(b"appended by someone else")  # their change, not ours
    assert temp_files(tmp_path) == []


def test_original_vanished_during_write_aborts(media, tmp_path):
    p = media.copy("flac", "full", tmp_path)
    with pytest.raises(WriteError, match="vanished"):
        safe_write.safe_rewrite(str(p), _edit_genre, before_replace=lambda _t: os.unlink(p))
    assert list(tmp_path.iterdir()) == []


def test_edit_that_alters_audio_is_refused(media, tmp_path):
    p = media.copy("flac", "full", tmp_path)
    before = p.read_bytes()

    def clobber(tmp):
        tmp.seek(-1000, os.SEEK_END)
        tmp.write(b"\x55" * 10)
        return None, True

    with pytest.raises(WriteError, match="altered the audio"):
        safe_write.safe_rewrite(str(p), clobber)
    assert p.read_bytes() == before
    assert temp_files(tmp_path) == []


def test_exception_inside_edit_cleans_up(media, tmp_path):
    p = media.copy("wav", "full", tmp_path)
    before = p.read_bytes()

    def boom(tmp):
        raise RuntimeError("simulated failure\nwith two lines")

    with pytest.raises(WriteError) as err:
        safe_write.safe_rewrite(str(p), boom)
    assert "\n" not in str(err.value) and "simulated failure" in str(err.value)
    assert p.read_bytes() == before
    assert temp_files(tmp_path) == []


_FSIZE_CHILD = r"""
import json, resource, signal, sys
from tagger.errors import WriteError
from tagger.library.tags import write_genres
path, limit, genres = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    write_genres(path, genres, 0.5)
    print(json.dumps({"ok": True}))
except WriteError as exc:
    print(json.dumps({"error": "WriteError", "message": str(exc)}))
except BaseException as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""

BIG_GENRES = [f"Genre number {i:05d} with a long descriptive name" for i in range(2000)]


@pytest.mark.parametrize("when", ["copy", "edit"])
@pytest.mark.parametrize("fmt", ALL)
def test_full_disk_leaves_original_intact(media, fmt, when, tmp_path):
    """RLIMIT_FSIZE in a child process stands in for a full disk (EFBIG like ENOSPC)."""
    p = media.copy(fmt, "full", tmp_path)
    before = p.read_bytes()
    # 'copy': the temp copy itself cannot be made; 'edit': the copy fits, the grown tag does not
    limit = len(before) // 2 if when == "copy" else len(before) + 1024
    out = subprocess.run(
        [sys.executable, "-c", _FSIZE_CHILD, str(p), str(limit), json.dumps(BIG_GENRES)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # the child imports this checkout's tagger
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result.get("error") == "WriteError", result
    assert "file size limit" in result["message"] or "disk full" in result["message"], result
    assert "\n" not in result["message"]
    assert p.read_bytes() == before
    assert temp_files(tmp_path) == []
    assert read_genres(p) == ["Jazz"]


# --------------------------------------------------------------------------- stale temp files


def test_sweep_stale_temp_files(tmp_path):
    ours = [tmp_path / ".tagger-0123456789abcdef.tmp", tmp_path / ".tagger-fedcba9876543210.tmp"]
    keep = [
        tmp_path / ".tagger-0123456789ABCDEF.tmp",
        tmp_path / ".tagger-xyz.tmp",
        tmp_path / ".tagger-0123456789abcdef.tmp.bak",
        tmp_path / "tagger-0123456789abcdef.tmp",
        tmp_path / "song.tmp",
        tmp_path / "song.mp3",
    ]
    for p in ours + keep:
        p.write_bytes(b"x")
    d = tmp_path / ".tagger-00000000000000aa.tmp"
    d.mkdir()
    link = tmp_path / ".tagger-00000000000000bb.tmp"
    link.symlink_to(tmp_path / "song.mp3")

    young = tags.sweep_stale_temp_files(tmp_path, min_age_seconds=3600)
    assert young == [] and all(p.exists() for p in ours)

    removed = tags.sweep_stale_temp_files(tmp_path)
    assert sorted(removed) == sorted(str(p) for p in ours)
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in keep) and d.is_dir() and link.is_symlink()
    assert tags.sweep_stale_temp_files(tmp_path / "missing") == []


def test_temp_file_name_matches_the_sweep_pattern(media, tmp_path):
    p = media.copy("ogg", "full", tmp_path)
    seen = []
    safe_write.safe_rewrite(str(p), lambda tmp: _edit_genre(tmp, "x.ogg"),
                            before_replace=seen.append)
    assert len(seen) == 1
    name = Path(seen[0]).name
    assert safe_write.TEMP_RE.match(name) and name.startswith(".")
    assert read_genres(p) == ["Rock"]
