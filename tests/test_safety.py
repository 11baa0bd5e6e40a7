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
