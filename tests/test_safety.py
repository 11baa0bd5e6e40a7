"""A hostile library and a hostile machine (issue #9): nothing written outside the library,
no original tag lost, no hang, no bypassed lock, no crash on absurd settings, private state."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import real_clip

from tagger.cli import main
from tagger.library import tags

CLIP = "sorohanro_-_solo-trumpet-06.ogg"  # 5.3 s of real trumpet: the quickest real track


def rows(db: str, sql: str, *params):
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A library folder, a catalogue URL and a private state dir."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    lib = tmp_path / "lib"
    lib.mkdir()
    return lib, f"sqlite:///{tmp_path / 'state' / 'c.sqlite'}", tmp_path


def add_track(path: Path, genre: list[str] | None = None) -> Path:
    shutil.copy(real_clip(CLIP), path)
    path.chmod(0o644)
    tags.write_genres(path, genre or [], None)
    return path


def always(tmp_path: Path) -> str:
    config = tmp_path / "always.toml"
    config.write_text('[tags]\nwrite = "always"\nmin_confidence = 0.0\n', encoding="utf-8")
    return str(config)


# ------------------------------------------------------------------ 2. the journal survives


def test_a_copy_moved_back_over_the_original_keeps_its_tag_history(env, capsys):
    lib, db, tmp = env
    track = add_track(lib / "a.ogg", ["Rock"])
    config = always(tmp)
    assert main(["--config", config, "scan", "--db", db, str(lib)]) == 0
    assert tags.read_genres(track) != ["Rock"]
    backup = lib / "a (backup).ogg"
    shutil.copy(track, backup)  # a plain cp: a new mtime
    st = track.stat()
    os.utime(backup, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert main(["--config", config, "scan", "--db", db, str(lib)]) == 0
    os.replace(backup, track)
    assert main(["--config", config, "scan", "--db", db, str(lib)]) == 0
    capsys.readouterr()
    assert main(["show", "--db", db, str(track)]) == 0
    assert "Rock" in capsys.readouterr().out
    assert main(["revert", "--db", db, str(track)]) == 0
    assert tags.read_genres(track) == ["Rock"]


def test_the_journal_outlives_a_deleted_track_row(env):
    """tag_writes is append-only: even a row deleted by hand leaves the history, by path."""
    lib, db, tmp = env
    track = add_track(lib / "a.ogg", ["Rock"])
    assert main(["--config", always(tmp), "scan", "--db", db, str(lib)]) == 0
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("DELETE FROM tracks")
    assert rows(db, "select count(*) from tag_writes where track_id is null")[0][0] >= 1
    assert main(["revert", "--db", db, str(track)]) == 0
    assert tags.read_genres(track) == ["Rock"]


# ------------------------------------------------------------------ 4. one writer, however named


def test_the_writer_lock_holds_for_any_spelling_of_the_url_and_any_state_dir(env, capsys,
                                                                              monkeypatch):
    from tagger.config import Config
    from tagger.library.lock import WriterLock

    lib, db, tmp = env
    add_track(lib / "a.ogg")
    path = db.removeprefix("sqlite:///")
    with WriterLock(Config().state_path, db, "tagger watch"):
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp / "elsewhere"))
        for spelling in (f"sqlite:///{path.replace('/c.sqlite', '//c.sqlite')}",
                         f"sqlite:///{path.replace('/state/', '/state/./')}", db):
            assert main(["scan", "--db", spelling, str(lib)]) == 3, spelling
            assert "one writer" in capsys.readouterr().err
        os.symlink(tmp / "state", tmp / "link")
        assert main(["scan", "--db", f"sqlite:///{tmp}/link/c.sqlite", str(lib)]) == 3
    assert not Path(path).exists() or not rows(db, "select * from tracks")


# ------------------------------------------------------------------ 9, 10. the state dir


def test_state_dir_catalogue_lock_and_status_are_private(env):
    lib, _, tmp = env
    add_track(lib / "a.ogg")
    os.umask(0o022)
    assert main(["scan", str(lib)]) == 0  # the default catalogue, in the state dir
    state = tmp / "state" / "tagger"
    assert (state.stat().st_mode & 0o777) == 0o700
    made = [p for p in state.iterdir()]
    assert any(p.name == "catalogue.sqlite" for p in made)
    assert any(p.name.endswith(".lock") for p in made)
    for p in made:
        assert p.stat().st_mode & 0o077 == 0, f"{p.name} is {p.stat().st_mode & 0o777:o}"


def test_an_existing_open_state_dir_is_made_private(env):
    lib, _, tmp = env
    state = tmp / "state" / "tagger"
    state.mkdir(parents=True, mode=0o755)
    state.chmod(0o755)
    assert main(["scan", str(lib)]) == 0
    assert (state.stat().st_mode & 0o777) == 0o700


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_a_state_dir_that_is_a_file_is_one_line_and_exit_3(env, capsys, monkeypatch):
    lib, _, tmp = env
    add_track(lib / "a.ogg")
    (tmp / "state").write_text("not a folder")
    assert main(["scan", str(lib)]) == 3
    assert "state" in _one_error_line(capsys)


def test_a_state_dir_under_proc_is_one_line_and_exit_3(env, capsys, monkeypatch):
    lib, _, tmp = env
    add_track(lib / "a.ogg")
    monkeypatch.setenv("XDG_STATE_HOME", "/proc/self")
    assert main(["scan", str(lib)]) == 3
    _one_error_line(capsys)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_a_full_disk_under_the_state_dir_is_one_line_and_exit_3(env, capsys, monkeypatch):
    import subprocess

    lib, _, tmp = env
    add_track(lib / "a.ogg")
    full = tmp / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], check=True)
    try:
        (full / "tagger").mkdir()
        fd = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        monkeypatch.setenv("XDG_STATE_HOME", str(full))
        assert main(["scan", str(lib)]) == 3
        assert "full" in _one_error_line(capsys)
    finally:
        subprocess.run(["umount", "-l", str(full)], check=True)
