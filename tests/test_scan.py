"""`tagger scan` end to end on a real library: every format, a hostile corpus, the catalogue.

One library is scanned once per module (the model is the slow part); the tests then read
what the scan left in the files and in the catalogue.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.audio import encoding_ffmpeg, ffmpeg_run, real_clip
from helpers.library import at_rest

from tagger.cli import main
from tagger.library import tags
from tagger.library.lock import WriterLock

pytestmark = pytest.mark.slow  # every scan runs the model on real audio

REPO = Path(__file__).resolve().parent.parent
QUERIES = REPO / "docs" / "queries.md"
EMOJI_NAME = "🎵 Ünïcödé — 日本 (live).ogg"


def file_states(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def library(tmp_path_factory, format_files, hostile_files):
    """A mixed-format library of real music plus everything a real library throws at us."""
    root = tmp_path_factory.mktemp("library") / "Music"
    formats = root / "Formats"
    formats.mkdir(parents=True)
    for name, path in format_files.items():
        shutil.copy(path, formats / f"vibe_ace_{name}{path.suffix}")
    # files with no genre of their own, so the default policy (if_empty) writes one
    classical = root / "Classical" / "Brahms"
    classical.mkdir(parents=True)
    hungarian = classical / "hungarian_dance.ogg"
    shutil.copy(real_clip(
        "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg"), hungarian)
    nexuiz = root / "Electronic" / "brainsukker.ogg"
    nexuiz.parent.mkdir()
    shutil.copy(real_clip("nexuiz_brainsukker_excerpt.ogg"), nexuiz)
    for path in (hungarian, nexuiz, *formats.iterdir()):
        path.chmod(0o644)
        tags.write_genres(path, [], None)  # no genre: a file the user never tagged

    hostile = root / "Hostile"
    hostile.mkdir()
    shutil.copy(hostile_files["truncated_mp3"], hostile / "truncated.mp3")
    shutil.copy(hostile_files["empty_flac"], hostile / "zero_bytes.flac")
    shutil.copy(hostile_files["text_as_mp3"], hostile / "readme.mp3")
    one_second = hostile / "one_second.ogg"
    ffmpeg_run(encoding_ffmpeg("libvorbis"), "-t", "1", "-i",
               str(real_clip("sorohanro_-_solo-trumpet-06.ogg")), "-c:a", "libvorbis",
               str(one_second))
    shutil.copy(real_clip("sorohanro_-_solo-trumpet-06.ogg"), hostile / EMOJI_NAME)
    deep = hostile.joinpath(*[f"level{i}" for i in range(25)])
    deep.mkdir(parents=True)
    shutil.copy(real_clip("sorohanro_-_solo-trumpet-06.ogg"), deep / "deep.ogg")
    read_only = hostile / "read_only.ogg"
    shutil.copy(real_clip("sorohanro_-_solo-trumpet-06.ogg"), read_only)
    tags.write_genres(read_only, [], None)
    read_only.chmod(0o444)
    linked = hostile / "linked_a.ogg"
    shutil.copy(real_clip("sorohanro_-_solo-trumpet-06.ogg"), linked)
    tags.write_genres(linked, [], None)
    os.link(linked, hostile / "linked_b.ogg")
    os.symlink(root, hostile / "loop")  # a symlink cycle back to the root
    for path in (one_second, hostile / EMOJI_NAME, deep / "deep.ogg"):
        path.chmod(0o644)
    at_rest(root)
    return root


@pytest.fixture(scope="module")
def scanned(library, tmp_path_factory):
    """Scan the library once with the CLI; returns (db url, state dir, files before)."""
    state = tmp_path_factory.mktemp("state")
    db = f"sqlite:///{state / 'catalogue.sqlite'}"
    before = file_states(library)
    os.environ["XDG_STATE_HOME"] = str(state)
    try:
        code = main(["scan", "--db", db, str(library)])
    finally:
        del os.environ["XDG_STATE_HOME"]
    return db, state, before, code


def rows(db: str, sql: str, *params):
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        return conn.execute(sql, params).fetchall()


def status_of(db: str) -> dict[str, tuple[str, str | None]]:
    return {p: (s, e) for p, s, e in rows(db, "select path, status, error from tracks")}


def test_every_format_is_classified_and_tagged(scanned, library):
    db, _, _, code = scanned
    assert code == 1  # the hostile files failed, the rest went on
    status = status_of(db)
    for path in (library / "Formats").iterdir():
        assert status[str(path)] == ("done", None), path
        assert tags.read_genres(path), path  # a genre was written into the file itself
    genres = dict(rows(db, "select path, genre from track_genres"))
    assert genres[str(library / "Classical/Brahms/hungarian_dance.ogg")] == "classical"
    assert genres[str(library / "Electronic/brainsukker.ogg")] == "electronic"
    assert tags.read_genres(library / "Classical/Brahms/hungarian_dance.ogg") == ["Classical"]


def test_hostile_corpus_is_recorded_with_clear_reasons(scanned, library):
    db, _, before, _ = scanned
    status = status_of(db)
    hostile = library / "Hostile"
    expected = {
        "truncated.mp3": ("failed", ""),
        "zero_bytes.flac": ("failed", "empty"),
        "readme.mp3": ("failed", "not an audio file"),
        "one_second.ogg": ("skipped", "too short"),
        "read_only.ogg": ("failed", "read-only"),
        "linked_a.ogg": ("failed", "hard link"),
        "linked_b.ogg": ("failed", "hard link"),
    }
    for name, (state, fragment) in expected.items():
        got_state, error = status[str(hostile / name)]
        assert got_state == state, (name, error)
        assert error and fragment in error and "\n" not in error, (name, error)
        # nothing was done to the file
        assert (hostile / name).read_bytes() == before[str(hostile / name)], name
    assert status[str(hostile / EMOJI_NAME)][0] == "done"
    deep = hostile.joinpath(*[f"level{i}" for i in range(25)], "deep.ogg")
    assert status[str(deep)][0] == "done"
    # the symlink loop was not followed into a second copy of the library
    assert not any("/loop/" in path for path in status)
    assert (hostile / "read_only.ogg").stat().st_mode & 0o777 == 0o444


def test_catalogue_holds_votes_segments_and_tag_writes(scanned, library):
    db, _, _, _ = scanned
    path = str(library / "Classical/Brahms/hungarian_dance.ogg")
    [(genre, confidence, votes, segments, tie)] = rows(db, """
        select p.genre, p.confidence, p.votes, p.segment_count, p.tie
        from predictions p join tracks t on t.id = p.track_id where t.path = ?""", path)
    assert genre == "classical" and 0.5 < confidence <= 1 and segments == 10 and tie == 0
    assert votes == rows(db, """select count(*) from prediction_segments s
        join predictions p on p.id = s.prediction_id join tracks t on t.id = p.track_id
        where t.path = ? and s.genre = 'classical'""", path)[0][0]
    [(scores,)] = rows(db, """select s.scores from prediction_segments s
        join predictions p on p.id = s.prediction_id join tracks t on t.id = p.track_id
        where t.path = ? and s.segment_index = 0""", path)
    assert json.loads(scores)["classical"] > 0.5  # the genre scores the segment voted with
    writes = rows(db, "select field, old_value, new_value from tag_writes where path = ?", path)
    assert ("GENRE", None, '["Classical"]') in writes  # written in title case
    assert rows(db, "select content_id, size, mtime_ns from tracks where path = ?", path)[0][0]


def test_documented_queries_run_on_the_scanned_library(scanned):
    db, _, _, _ = scanned
    queries = re.findall(r"```sql\n(.*?)```", QUERIES.read_text(encoding="utf-8"), re.S)
    assert len(queries) >= 10
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        results = [conn.execute(q).fetchall() for q in queries]
    assert sum(1 for r in results if r) >= 6  # most of them find something in a real library
    counts = dict(rows(db, "select genre, tracks from genre_counts"))
    assert counts["classical"] >= 1 and counts["electronic"] >= 1


def test_unchanged_rescan_classifies_nothing(scanned, library, capsys):
    db, state, _, _ = scanned
    os.environ["XDG_STATE_HOME"] = str(state)
    try:
        capsys.readouterr()
        assert main(["scan", "--db", db, "--json", str(library)]) == 0
    finally:
        del os.environ["XDG_STATE_HOME"]
    summary = capsys.readouterr().out
    assert '"classified": 0' in summary and '"failed": 0' in summary


def test_show_and_stats(scanned, library, capsys):
    db, _, _, _ = scanned
    path = library / "Classical/Brahms/hungarian_dance.ogg"
    assert main(["show", "--db", db, str(path)]) == 0
    out = capsys.readouterr().out
    assert "classical" in out and "segments:" in out and "GENRE" in out
    assert main(["stats", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "classical" in out and "not classified" in out and "too short" in out


def test_dry_run_writes_nothing(library, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    small = tmp_path / "lib"
    shutil.copytree(library / "Formats", small)
    at_rest(small)  # tagged by the module's scan a moment ago, copied with those times
    before = file_states(small)
    db = tmp_path / "never.sqlite"
    assert main(["scan", "--dry-run", "--force", "--db", f"sqlite:///{db}", str(small)]) == 0
    out = capsys.readouterr().out
    assert "->" in out and "jazz" in out
    assert file_states(small) == before
    assert not db.exists() and not (tmp_path / "state").exists()


def test_deleted_file_is_missing_and_emptied_root_pauses(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    lib = tmp_path / "lib"
    lib.mkdir()
    for i in range(3):
        shutil.copy(real_clip("sorohanro_-_solo-trumpet-06.ogg"), lib / f"t{i}.ogg")
        (lib / f"t{i}.ogg").chmod(0o644)
    at_rest(lib)
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    assert main(["scan", "--db", db, str(lib)]) == 0
    (lib / "t0.ogg").unlink()
    assert main(["scan", "--db", db, str(lib)]) == 0
    assert status_of(db)[str(lib / "t0.ogg")][0] == "missing"
    for path in lib.iterdir():  # the "NAS" is unmounted: the folder is there, but empty
        path.unlink()
    assert main(["scan", "--db", db, str(lib)]) == 0
    status = status_of(db)
    assert status[str(lib / "t1.ogg")][0] == "done" and status[str(lib / "t2.ogg")][0] == "done"


def tag_fields(path: Path) -> dict:
    import mutagen

    audio = mutagen.File(path)
    return {k: list(v) if isinstance(v, list) else v for k, v in (audio.tags or {}).items()}


def test_revert_all_restores_the_original_tags(tmp_path, format_files, monkeypatch, capsys):
    """write = always overwrites the user's genres; revert --all gives every one back."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    lib = tmp_path / "lib"
    lib.mkdir()
    for name, path in format_files.items():
        shutil.copy(path, lib / f"{name}{path.suffix}")
        (lib / f"{name}{path.suffix}").chmod(0o644)
    # the user's own genres, multi-valued on some
    tags.write_genres(lib / "mp3.mp3", ["Acid Jazz", "Lounge"], None)
    tags.write_genres(lib / "flac.flac", ["Nu Jazz"], None)
    tags.write_genres(lib / "wav.wav", [], None)
    at_rest(lib)
    originals = {p.name: (tag_fields(p), tags.read_genres(p)) for p in lib.iterdir()}
    config = tmp_path / "tagger.toml"
    config.write_text('[tags]\nwrite = "always"\non_tie = "all"\n', encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    assert main(["--config", str(config), "scan", "--db", db, str(lib)]) == 0
    changed = [p.name for p in lib.iterdir() if tags.read_genres(p) != originals[p.name][1]]
    assert "mp3.mp3" in changed and "flac.flac" in changed and "wav.wav" in changed
    assert main(["revert", "--db", db, "--all"]) == 0
    for path in lib.iterdir():
        assert tag_fields(path) == originals[path.name][0], path.name
    assert all(r[0] for r in rows(db, "select reverted_at from tag_writes"))
    # the catalogue says what the files hold again: the user's genres, theirs
    held = {os.path.basename(path): (json.loads(file or "[]"), json.loads(user or "[]"))
            for path, file, user in rows(db, "select path, file_genres, user_genres from tracks")}
    assert held["mp3.mp3"] == (["Acid Jazz", "Lounge"], ["Acid Jazz", "Lounge"])
    assert held["flac.flac"] == (["Nu Jazz"], ["Nu Jazz"])
    assert held["wav.wav"] == ([], [])


def test_second_writer_is_refused_clearly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    lib = tmp_path / "lib"
    lib.mkdir()
    from tagger.config import Config

    with WriterLock(Config().state_path, db, "tagger watch"):
        assert main(["scan", "--db", db, str(lib)]) == 3
    err = capsys.readouterr().err
    assert "tagger watch" in err and "one writer" in err


def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for i in range(24):  # three inference batches: a stop after the first leaves work
        shutil.copy(real_clip("Kevin_MacLeod_-_Vibe_Ace.ogg"), lib / f"track{i:02}.ogg")
        (lib / f"track{i:02}.ogg").chmod(0o644)
        tags.write_genres(lib / f"track{i:02}.ogg", [], None)
    at_rest(lib)
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "tagger", "scan", "--db", db, "--workers", "1", str(lib)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # wait until the first results are committed
        try:  # (the tracks are done once their album is decided, after the stop)
            if rows(db, "select count(*) from predictions")[0][0] >= 1:
                break
        except sqlite3.OperationalError:  # no file or no schema yet
            pass
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    done = rows(db, "select count(*) from tracks where status = 'done'")[0][0]
    assert 1 <= done < 24
    # every file marked done really carries its genre: nothing half-written
    for (path,) in rows(db, "select path from tracks where status = 'done'"):
        assert tags.read_genres(path)
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert rows(db, "select count(*) from tracks where status = 'done'")[0][0] == 24
    assert rows(db, "select count(*) from predictions")[0][0] == 24  # one each, no repeats
    assert f"{24 - done} classified" in rerun.stdout


def test_revert_leaves_a_genre_the_user_changed_since(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("kept.ogg", "edited.ogg"):
        shutil.copy(real_clip("sorohanro_-_solo-trumpet-06.ogg"), lib / name)
        (lib / name).chmod(0o644)
        tags.write_genres(lib / name, ["Trumpet Loops"], None)
    at_rest(lib)
    config = tmp_path / "tagger.toml"
    config.write_text('[tags]\nwrite = "always"\n', encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    assert main(["--config", str(config), "scan", "--db", db, str(lib)]) == 0
    assert tags.read_genres(lib / "edited.ogg") == ["Jazz"]
    tags.write_genres(lib / "edited.ogg", ["Bebop"], None)  # the user's own later edit
    assert main(["revert", "--db", db, "--all"]) == 1
    assert "changed after tagger wrote it" in caplog.text
    assert tags.read_genres(lib / "kept.ogg") == ["Trumpet Loops"]
    assert tags.read_genres(lib / "edited.ogg") == ["Bebop"]
    assert main(["revert", "--db", db, "--all", "--force"]) == 0
    assert tags.read_genres(lib / "edited.ogg") == ["Trumpet Loops"]


def test_a_worker_process_killed_mid_scan_does_not_stop_the_scan(tmp_path):
    """An OOM-killed or crashed decoder: the files it held are retried in a fresh pool."""
    from helpers.crashing import kill_a_worker_soon

    from tagger.config import Config
    from tagger.library.catalogue import open_catalogue
    from tagger.library.discover import walk
    from tagger.service.engine import Engine
    from tagger.service.recorder import Summary

    lib = tmp_path / "lib"
    lib.mkdir()
    for i in range(6):
        shutil.copy(real_clip("Kevin_MacLeod_-_Vibe_Ace.ogg"), lib / f"t{i}.ogg")
        (lib / f"t{i}.ogg").chmod(0o644)
    at_rest(lib)
    config = Config()
    with open_catalogue(f"sqlite:///{tmp_path / 'c.sqlite'}") as catalogue:
        engine = Engine(config, catalogue, workers=2)
        killer, killed = kill_a_worker_soon(engine.worker_pids)
        summary = engine.process(walk([str(lib)], config.library), Summary())
        killer.join()
        engine.close()
    assert killed
    assert summary.classified == 6 and summary.failed == 0


def test_workers_start_with_the_decode_stack_loaded_and_warm():
    """Workers fork from a server that already ran the feature path once, so no worker
    loads the decode stack on its first file; a stack without librosa, scipy or numba (their
    imports cost a new process 3-5 s of CPU); and each runs BLAS on one thread, the pool
    being the parallelism."""
    from tagger.config import Config
    from tagger.service.engine import Engine

    engine = Engine(Config(), None, workers=1)
    try:
        engine.start()
        probe = ("(sorted({'av', 'soxr', 'librosa', 'scipy', 'numba'} & set(__import__('sys')"
                 ".modules)), [p['num_threads'] for p in __import__('threadpoolctl')"
                 ".threadpool_info() if p['user_api'] == 'blas'])")
        loaded, blas_threads = engine.submit(eval, probe).result(timeout=60)
    finally:
        engine.close()
    assert loaded == ["av", "soxr"]
    assert blas_threads and set(blas_threads) == {1}


def test_the_scanning_process_never_loads_the_decode_stack(tmp_path):
    """Decoding and log-mel run in the workers only: the scanning process (the model and the
    one writer) must not carry librosa, numba, scipy or FFmpeg's libraries too, which cost it
    ~70 MB of resident memory for nothing."""
    from helpers.apart import run_cli_apart

    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(real_clip("Kevin_MacLeod_-_Vibe_Ace.ogg"), lib / "vibe.ogg")
    (lib / "vibe.ogg").chmod(0o644)
    at_rest(lib)
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    code, loaded, _, stderr = run_cli_apart(["scan", "--db", db, "--workers", "1", str(lib)],
                                            tmp_path / "state")
    assert code == 0, stderr
    assert rows(db, "select count(*) from tracks where status = 'done'")[0][0] == 1
    assert loaded == []
