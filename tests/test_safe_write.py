"""The safety of a tag write: files tagger refuses to touch, failures in the middle of a
write (the original changed or vanished, the edit fails or alters the audio, a full disk), and
the sweep of stale temporary files. A refused or failed write leaves the original
byte-identical and no temporary file behind.

Real files in every format (see tests/helpers/tagfiles.py); no mocks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import tagfiles
from helpers.rawtags import temp_files
from helpers.tagfiles import ALL, FAMILY, GENRE_FIELD

from tagger.errors import ReadError, WriteError
from tagger.library import tags
from tagger.library.tags import TagChange, read_genres, restore, safe_write, write_genres

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return tagfiles.media(tmp_path_factory)


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
