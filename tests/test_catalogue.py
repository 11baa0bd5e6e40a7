"""The catalogue: migrations, SQLite settings, the API the scan engine uses, the SQL views and
every query of docs/queries.md, on real SQLite files."""

from __future__ import annotations

import io
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from tagger.config import Config
from tagger.errors import ConfigError, ReadError, WriteError
from tagger.library import catalogue as cat_mod
from tagger.library.catalogue import Catalogue, current, downgrade, head, open_catalogue, upgrade
from tagger.model.vote import vote
from tagger.results import ModelInfo, NotWritten, SegmentResult, TrackResult

QUERIES_MD = Path(__file__).resolve().parent.parent / "docs" / "queries.md"
GENRES = ("rock", "pop", "jazz", "blues")
MODEL_A = ModelInfo("musicnn", "a" * 64, GENRES)
MODEL_B = ModelInfo("trained", "b" * 64, GENRES)
TABLES = {"tracks", "models", "predictions", "prediction_candidates", "prediction_segments",
          "tag_writes", "corrections", "adoptions", "calibrations"}
VIEWS = {"track_genres", "genre_counts", "genre_check"}
HEAD = "0006_review"  # newest schema revision


@dataclass(frozen=True)
class Change:  # the shape of the tag writer's change objects
    path: str
    field: str
    old: tuple[str, ...] | None
    new: tuple[str, ...] | None


def result_for(path, rows, model=MODEL_A, descriptors=None, duration=30.0):
    """A TrackResult from a (segments, genres) score matrix, voted by tagger.model.vote.vote()."""
    scores = np.asarray(rows, dtype=np.float64)
    v = vote(GENRES, scores)
    segments = tuple(
        SegmentResult(3.0 * i, v.segment_winners[i],
                      {f"msd:{g}": float(x) for g, x in zip(GENRES, row, strict=True)}
                      | {"mtt:guitar": 0.25},
                      {g: float(x) for g, x in zip(GENRES, row, strict=True)})
        for i, row in enumerate(scores)
    )
    return TrackResult(path=path, model=model, vote=v, segments=segments,
                       descriptors=descriptors or {}, duration_s=duration)


# rock wins 3 of 4 segments
CLEAR_ROCK = [[0.9, 0.1, 0.0, 0.0], [0.8, 0.2, 0.0, 0.0], [0.7, 0.1, 0.1, 0.1],
              [0.2, 0.6, 0.1, 0.1]]
# rock and pop win 2 segments each; rock has the higher mean score
TIE_ROCK_POP = [[0.6, 0.3, 0.05, 0.05], [0.7, 0.2, 0.05, 0.05], [0.3, 0.4, 0.2, 0.1],
                [0.25, 0.35, 0.2, 0.2]]
# jazz wins with a low mean score
WEAK_JAZZ = [[0.1, 0.1, 0.3, 0.2], [0.1, 0.1, 0.25, 0.2], [0.2, 0.1, 0.1, 0.15]]
CLEAR_POP = [[0.1, 0.8, 0.1, 0.0], [0.1, 0.9, 0.0, 0.0]]


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "state" / "catalogue.sqlite"


@pytest.fixture
def url(db_path) -> str:
    return f"sqlite:///{db_path}"


@pytest.fixture
def cat(url):
    catalogue = Catalogue(url)
    yield catalogue
    catalogue.close()


def rows(catalogue, sql, **params):
    with catalogue.engine.connect() as conn:
        return conn.execute(sa.text(sql), params).mappings().all()


def objects(db_path, kind):
    con = sqlite3.connect(db_path)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = ?", (kind,))}
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# migrations
# ---------------------------------------------------------------------------------------------


def test_migrations_create_schema_from_empty(url, db_path):
    assert not db_path.parent.exists()
    assert current(url) is None and not db_path.exists()  # current() creates nothing
    assert head() == HEAD
    assert upgrade(url) == (None, HEAD)
    assert db_path.is_file()
    assert current(url) == head()
    assert TABLES | {"alembic_version"} <= objects(db_path, "table")
    assert objects(db_path, "view") == VIEWS
    assert upgrade(url) == (HEAD, HEAD)  # nothing to do
    assert not list(db_path.parent.glob("*.bak-*"))


def test_orm_models_match_migrations(cat):
    with cat.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), cat_mod.Base.metadata)
    assert diff == []


def test_downgrade_base_then_upgrade_again(cat, url, db_path):
    cat.record_result(result_for("/music/a.mp3", CLEAR_ROCK), size=1, mtime_ns=1)
    cat.close()
    downgrade(url, "base")
    assert current(url) is None
    assert objects(db_path, "table") <= {"alembic_version"}
    assert objects(db_path, "view") == set()
    assert upgrade(url, backup=False) == (None, HEAD)
    assert TABLES <= objects(db_path, "table") and objects(db_path, "view") == VIEWS
    downgrade(url, "0001")
    assert current(url) == "0001" and objects(db_path, "view") == set()
    with Catalogue(url) as again:
        assert again.upgraded_from == "0001" and again.revision == HEAD


def test_migrations_render_for_postgresql():
    out = io.StringIO()
    cfg = cat_mod.alembic_config()
    cfg.output_buffer = out
    cfg.set_main_option("sqlalchemy.url", "postgresql://user:secret@localhost/tagger")
    command.upgrade(cfg, "head", sql=True)
    sql = out.getvalue()
    assert "CREATE TABLE tracks" in sql and "BIGINT" in sql and "BOOLEAN" in sql
    assert "CREATE VIEW track_genres" in sql and "CREATE VIEW genre_counts" in sql


def test_automatic_upgrade_backs_up_an_older_database(url, db_path):
    assert upgrade(url, revision="0001") == (None, "0001")
    con = sqlite3.connect(db_path)
    con.execute("INSERT INTO tracks (path, folder, status, attempts, first_seen, updated_at) "
                "VALUES ('/music/old.mp3', '/music', 'pending', 0, '2024-01-01 00:00:00', "
                "'2024-01-01 00:00:00')")
    con.commit()
    con.close()

    with Catalogue(url) as catalogue:
        assert (catalogue.upgraded_from, catalogue.revision) == ("0001", HEAD)
        assert catalogue.known_files() == {"/music/old.mp3": (None, None, "pending")}
    backups = list(db_path.parent.glob("catalogue.sqlite.bak-0001-*"))
    assert len(backups) == 1
    con = sqlite3.connect(backups[0])
    assert con.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
    assert con.execute("SELECT path FROM tracks").fetchall() == [("/music/old.mp3",)]
    assert con.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'view'").fetchone() == (0,)
    con.close()

    with Catalogue(url) as catalogue:  # up to date: no second backup
        assert catalogue.upgraded_from == HEAD
    assert len(list(db_path.parent.glob("*.bak-*"))) == 1


def test_no_backup_for_a_new_database_or_when_disabled(url, db_path):
    with Catalogue(url) as catalogue:
        assert catalogue.upgraded_from is None
    assert not list(db_path.parent.glob("*.bak-*"))
    downgrade(url, "0001")
    with Catalogue(url, backup=False):
        pass
    assert not list(db_path.parent.glob("*.bak-*"))


def test_upgrade_false_refuses_an_old_database(url):
    upgrade(url, revision="0001")
    with pytest.raises(WriteError, match="0001"):
        Catalogue(url, upgrade=False)
    assert current(url) == "0001"


def test_open_catalogue_from_config(tmp_path):
    config = Config(state_dir=str(tmp_path / "state"))
    with open_catalogue(config) as catalogue:
        assert (tmp_path / "state" / "catalogue.sqlite").is_file()
        assert catalogue.revision == head()


def test_batch_migrations_keep_children_and_views(cat, url):
    """Guard for future migrations: recreating `tracks` in SQLite batch mode must neither
    cascade-delete predictions nor break the views."""
    cat.record_result(result_for("/music/a.mp3", CLEAR_ROCK), size=1, mtime_ns=1)
    engine = cat_mod.make_engine(cat_mod.parse_url(url), migrating=True)
    with engine.begin() as conn:
        ops = Operations(MigrationContext.configure(conn, opts={"render_as_batch": True}))
        with ops.batch_alter_table("tracks", recreate="always") as batch:
            batch.add_column(sa.Column("note", sa.Text(), nullable=True))
    engine.dispose()
    assert [dict(r) for r in rows(cat, "SELECT path, genre FROM track_genres")] == [
        {"path": "/music/a.mp3", "genre": "rock"}]
    assert rows(cat, "SELECT COUNT(*) AS n FROM prediction_segments")[0]["n"] == 4


# ---------------------------------------------------------------------------------------------
# connection settings, errors
# ---------------------------------------------------------------------------------------------


def test_sqlite_pragmas(cat):
    with cat.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000


def test_foreign_keys_are_enforced(cat):
    with pytest.raises(sa.exc.IntegrityError), cat.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO predictions (track_id, model_id, genre, confidence, votes, "
            "segment_count, tie, created) VALUES (999, 999, 'rock', 1, 1, 1, 0, '2024-01-01')"))


def test_errors_name_the_url_without_password(tmp_path):
    with pytest.raises(ConfigError) as err:
        Catalogue("nosuchdb://user:hunter2@host/db")
    assert "hunter2" not in str(err.value) and "nosuchdb://user:***@host/db" in str(err.value)
    with pytest.raises(ConfigError) as err:
        Catalogue("not a url at all")
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(WriteError) as err:
        Catalogue(f"sqlite:///{blocked}/sub/catalogue.sqlite")
    assert str(blocked) in str(err.value) and "\n" not in str(err.value)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(WriteError, match="garbage.sqlite"):
        Catalogue(f"sqlite:///{garbage}")


@pytest.mark.parametrize(
    ("upgraded", "sql", "refusal"),
    [
        (True, "UPDATE alembic_version SET version_num = '9999'", "9999"),
        (False, "CREATE TABLE something (x)", "no tagger schema revision"),
    ],
    ids=["newer schema", "foreign database"],
)
def test_database_of_another_schema_is_refused(url, db_path, upgraded, sql, refusal):
    if upgraded:
        upgrade(url)
    else:
        db_path.parent.mkdir(parents=True)
    con = sqlite3.connect(db_path)
    con.execute(sql)
    con.commit()
    con.close()
    with pytest.raises(WriteError, match=refusal):
        Catalogue(url)


# ---------------------------------------------------------------------------------------------
# results, views
# ---------------------------------------------------------------------------------------------


def test_record_result_round_trips_through_views(cat):
    tie = result_for("/music/Rock/b.mp3", TIE_ROCK_POP, descriptors={"guitar": 0.61})
    assert tie.vote.tie and tie.vote.tied == ("rock", "pop")
    cat.record_result(tie, size=100, mtime_ns=123_456_789_000_000_000, content_id="c-b",
                      format="mp3")
    cat.record_result(result_for("/music/Rock/a.mp3", CLEAR_ROCK), size=200, mtime_ns=5,
                      content_id="c-a", format="mp3")
    cat.record_result(result_for("/music/Pop/c.mp3", CLEAR_POP), size=300, mtime_ns=6)

    got = {r["path"]: dict(r) for r in rows(cat, "SELECT * FROM track_genres")}
    assert set(got) == {"/music/Rock/b.mp3", "/music/Rock/a.mp3", "/music/Pop/c.mp3"}
    b = got["/music/Rock/b.mp3"]
    assert (b["genre"], bool(b["tie"]), b["tied_genres"], b["model"]) == (
        "rock", True, "rock,pop", "musicnn")
    assert b["confidence"] == pytest.approx(tie.vote.confidence)
    a = got["/music/Rock/a.mp3"]
    assert (a["genre"], bool(a["tie"]), a["tied_genres"]) == ("rock", False, None)
    counts = {r["genre"]: r["tracks"] for r in rows(cat, "SELECT genre, tracks FROM genre_counts")}
    assert counts == {"rock": 2, "pop": 1}

    record = cat.track("/music/Rock/b.mp3")
    assert (record.status, record.size, record.mtime_ns, record.content_id, record.format) == (
        "done", 100, 123_456_789_000_000_000, "c-b", "mp3")
    assert record.duration_s == 30.0 and record.error is None and record.attempts == 0
    assert record.first_seen.tzinfo is not None and record.last_scanned is not None
    (p,) = record.predictions
    assert p is record.prediction
    assert p.model == MODEL_A
    assert (p.genre, p.tie, p.tied, p.votes, p.segment_count) == (
        "rock", True, ("rock", "pop"), 2, 4)
    assert p.candidates == tie.vote.candidates
    assert [s.genre for s in p.segments] == list(tie.vote.segment_winners)
    assert [s.start_s for s in p.segments] == [0.0, 3.0, 6.0, 9.0]
    # the genre scores the vote compared are kept, not every raw model output
    assert p.segments[0].genre_scores == pytest.approx(tie.segments[0].genre_scores)
    assert p.segments[0].scores == {}
    assert p.descriptors == {"guitar": 0.61}
    assert cat.track("/nowhere.mp3") is None


def test_new_prediction_replaces_same_model_and_newest_model_wins_the_view(cat):
    path = "/music/x.mp3"
    cat.record_result(result_for(path, CLEAR_ROCK), size=1, mtime_ns=1)
    cat.record_result(result_for(path, CLEAR_POP), size=1, mtime_ns=1)
    record = cat.track(path)
    assert [p.genre for p in record.predictions] == ["pop"]
    assert rows(cat, "SELECT COUNT(*) AS n FROM prediction_segments")[0]["n"] == 2  # old gone
    assert rows(cat, "SELECT COUNT(*) AS n FROM prediction_candidates")[0]["n"] == 1

    cat.record_result(result_for(path, TIE_ROCK_POP, model=MODEL_B), size=1, mtime_ns=1)
    record = cat.track(path)
    assert [(p.model.name, p.genre) for p in record.predictions] == [
        ("trained", "rock"), ("musicnn", "pop")]
    assert [dict(r) for r in rows(cat, "SELECT genre, model FROM track_genres")] == [
        {"genre": "rock", "model": "trained"}]
    cat.record_result(result_for(path, CLEAR_POP), size=1, mtime_ns=1)  # musicnn again: newest
    assert [dict(r) for r in rows(cat, "SELECT genre, model FROM track_genres")] == [
        {"genre": "pop", "model": "musicnn"}]
    assert rows(cat, "SELECT COUNT(*) AS n FROM models")[0]["n"] == 2


def test_model_row_is_upserted(cat):
    cat.record_result(result_for("/m/1.mp3", CLEAR_ROCK), size=1, mtime_ns=1)
    renamed = ModelInfo("musicnn-v2", MODEL_A.sha256, GENRES + ("metal",))
    cat.record_result(result_for("/m/2.mp3", CLEAR_ROCK, model=renamed), size=1, mtime_ns=1)
    (m,) = rows(cat, "SELECT name, sha256, vocabulary FROM models")
    assert m["name"] == "musicnn-v2" and m["vocabulary"].endswith('"metal"]')


def test_failures_and_skips(cat):
    path = "/music/bad.flac"
    cat.record_failure(path, ReadError("not audio: invalid data", path), size=10, mtime_ns=20)
    cat.record_failure(path, f"{path}: not audio: invalid data")
    record = cat.track(path)
    assert (record.status, record.error, record.attempts, record.size) == (
        "failed", "not audio: invalid data", 2, 10)
    assert [f.path for f in cat.failures()] == [path]
    assert cat.failures(max_attempts=2) == []
    cat.record_failure("/music/short.mp3", ReadError("too short"), status="skipped")
    assert cat.track("/music/short.mp3").attempts == 0
    with pytest.raises(ValueError):
        cat.record_failure(path, "x", status="done")

    failed = TrackResult(path=path, model=MODEL_A, error="decoder crashed")
    cat.record_result(failed, size=10, mtime_ns=20)
    assert cat.track(path).attempts == 3 and cat.track(path).error == "decoder crashed"

    cat.record_result(result_for(path, CLEAR_ROCK), size=10, mtime_ns=20)
    record = cat.track(path)
    assert (record.status, record.error, record.attempts) == ("done", None, 0)


def test_stats(cat):
    cat.record_result(result_for("/m/a.mp3", CLEAR_ROCK), size=1, mtime_ns=1)
    cat.record_result(result_for("/m/b.mp3", TIE_ROCK_POP), size=1, mtime_ns=1)
    cat.record_result(result_for("/m/c.mp3", WEAK_JAZZ), size=1, mtime_ns=1)
    cat.record_failure("/m/d.mp3", "not audio")
    cat.record_failure("/m/e.mp3", "not audio")
    cat.record_failure("/m/f.mp3", "too short", status="skipped")
    cat.mark_pending("/m/g.mp3", 1, 1, "mp3")
    s = cat.stats()
    assert s.total == 7 and s.predicted == 3 and s.ties == 1
    assert s.status_counts == {"pending": 1, "done": 3, "failed": 2, "skipped": 1, "missing": 0}
    assert s.genres == (("rock", 2), ("jazz", 1))
    assert s.failures == (("failed", "not audio", 2), ("skipped", "too short", 1))
    assert s.models == (("musicnn", MODEL_A.sha256, 3),)
    c = s.confidence
    assert c.count == 3 and c.min < 0.3 < c.median <= c.q3 <= c.max
    assert sum(n for _, _, n in c.buckets) == 3
    empty = Catalogue(str(cat.engine.url).replace("catalogue.sqlite", "other.sqlite"))
    assert empty.stats().confidence is None and empty.stats().total == 0
    empty.close()


# ---------------------------------------------------------------------------------------------
# scanning, moves
# ---------------------------------------------------------------------------------------------


def test_known_files_and_pending(cat):
    cat.mark_pending("/music/a.mp3", 10, 100, "mp3")
    cat.mark_pending("/music/sub/b.flac", 20, 200, "flac")
    cat.mark_pending("/music2/c.mp3", 30, 300, "mp3")
    cat.mark_pending("/MUSIC/d.mp3", 40, 400, "mp3")
    assert cat.known_files(["/music"]) == {
        "/music/a.mp3": (10, 100, "pending"), "/music/sub/b.flac": (20, 200, "pending")}
    assert cat.known_files(["/music/"]) == cat.known_files(["/music"])
    assert set(cat.known_files(["/music", "/music2"])) == {
        "/music/a.mp3", "/music/sub/b.flac", "/music2/c.mp3"}
    assert len(cat.known_files()) == 4 and cat.known_files([]) == {}
    assert cat.pending_paths() == ["/MUSIC/d.mp3", "/music/a.mp3", "/music/sub/b.flac",
                                   "/music2/c.mp3"]


def test_mark_pending_keeps_predictions_and_resets_attempts_on_change(cat):
    path = "/music/a.mp3"
    cat.record_result(result_for(path, CLEAR_ROCK), size=1, mtime_ns=1)
    cat.record_failure(path, "boom")
    cat.mark_pending(path, 1, 1)  # unchanged: a retry, attempts kept
    record = cat.track(path)
    assert (record.status, record.attempts, record.error) == ("pending", 1, "boom")
    assert record.format is None
    cat.mark_pending(path, 2, 2, "mp3")  # changed file
    record = cat.track(path)
    assert (record.status, record.attempts, record.error, record.size, record.format) == (
        "pending", 0, None, 2, "mp3")
    assert len(record.predictions) == 1
    assert [r["path"] for r in rows(cat, "SELECT path FROM track_genres")] == [path]
    assert cat.mark_pending_many([(path, 2, 2, "mp3")]) == 0  # nothing changed


def test_known_files_100k_rows_is_fast(cat):
    files = [(f"/music/artist{i // 1000:03d}/album{i // 100 % 10}/track{i:06d}.mp3",
              1_000_000 + i, 1_700_000_000_000_000_000 + i, "mp3") for i in range(100_000)]
    t0 = time.perf_counter()
    assert cat.mark_pending_many(files) == 100_000
    t1 = time.perf_counter()
    known = cat.known_files(["/music"])
    t2 = time.perf_counter()
    print(f"\nmark_pending_many 100k: {t1 - t0:.2f} s; known_files 100k: {t2 - t1:.3f} s")
    assert len(known) == 100_000
    assert known[files[12345][0]] == (files[12345][1], files[12345][2], "pending")


def test_mark_missing_found_and_content_id(cat):
    cat.record_result(result_for("/m/a.mp3", CLEAR_ROCK), size=1, mtime_ns=1, content_id="X")
    cat.mark_pending("/m/b.mp3", 1, 1)
    assert cat.mark_missing(["/m/a.mp3", "/m/b.mp3", "/m/unknown.mp3"]) == 2
    assert cat.mark_missing(["/m/a.mp3"]) == 0
    assert cat.known_files()["/m/a.mp3"][2] == "missing"
    assert cat.track("/m/a.mp3").predictions  # kept
    assert cat.mark_found(["/m/a.mp3", "/m/b.mp3"]) == 2
    assert {p: k[2] for p, k in cat.known_files().items()} == {
        "/m/a.mp3": "done", "/m/b.mp3": "pending"}
    cat.record_result(result_for("/m/copy.mp3", CLEAR_ROCK), size=1, mtime_ns=1, content_id="X")
    cat.mark_missing(["/m/copy.mp3"])
    assert cat.find_by_content_id("X") == ["/m/copy.mp3", "/m/a.mp3"]
    assert cat.find_by_content_id("nope") == []


def test_move_keeps_predictions_and_tag_history(cat):
    cat.record_result(result_for("/m/old.mp3", TIE_ROCK_POP), size=1, mtime_ns=1, content_id="X")
    cat.record_tag_changes("/m/old.mp3", [Change("/m/old.mp3", "TCON", None, ("rock",))])
    cat.mark_missing(["/m/old.mp3"])
    cat.mark_pending("/m/new/place.mp3", 1, 9)  # the scanner saw the new file first
    assert cat.move("/m/old.mp3", "/m/new/place.mp3", mtime_ns=9)
    assert not cat.move("/m/old.mp3", "/m/elsewhere.mp3")
    assert cat.move("/m/new/place.mp3", "/m/new/place.mp3", size=1)  # same path: only the stat
    assert cat.track("/m/old.mp3") is None
    record = cat.track("/m/new/place.mp3")
    assert (record.status, record.folder, record.mtime_ns) == ("done", "/m/new", 9)
    assert record.predictions[0].tie and record.predictions[0].tied == ("rock", "pop")
    assert [w.path for w in record.tag_writes] == ["/m/new/place.mp3"]
    assert [dict(r) for r in rows(cat, "SELECT path, tied_genres FROM track_genres")] == [
        {"path": "/m/new/place.mp3", "tied_genres": "rock,pop"}]
    assert rows(cat, "SELECT COUNT(*) AS n FROM tracks")[0]["n"] == 1


def test_move_prefix_keeps_predictions(cat):
    for name in ("a", "b"):
        cat.record_result(result_for(f"/lib/Old Name/{name}.mp3", CLEAR_ROCK), size=1, mtime_ns=1)
    cat.record_result(result_for("/lib/Old Name/sub/c.mp3", CLEAR_POP), size=1, mtime_ns=1)
    cat.record_result(result_for("/lib/Old Name2/d.mp3", CLEAR_POP), size=1, mtime_ns=1)
    cat.record_tag_changes("/lib/Old Name/sub/c.mp3", [Change("", "TCON", ("x",), ("pop",))])
    assert cat.move_prefix("/lib/Old Name", "/lib/New Name/") == 3
    assert sorted(cat.known_files(["/lib/New Name"])) == [
        "/lib/New Name/a.mp3", "/lib/New Name/b.mp3", "/lib/New Name/sub/c.mp3"]
    assert cat.known_files(["/lib/Old Name"]) == {}
    assert cat.track("/lib/Old Name2/d.mp3") is not None  # a sibling with the same prefix
    record = cat.track("/lib/New Name/sub/c.mp3")
    assert record.folder == "/lib/New Name/sub" and record.predictions[0].genre == "pop"
    assert [w.path for w in cat.tag_changes(under=["/lib/New Name"])] == [record.path]
    genres = {r["path"]: r["genre"] for r in rows(cat, "SELECT path, genre FROM track_genres")}
    assert genres["/lib/New Name/a.mp3"] == "rock" and len(genres) == 4
    # new paths that other moving tracks still hold: renamed in two steps, nothing lost
    cat.record_result(result_for("/lib/New Name/sub/a.mp3", CLEAR_POP), size=1, mtime_ns=1)
    assert cat.move_prefix("/lib/New Name", "/lib/New Name/sub") == 4
    assert sorted(cat.known_files(["/lib/New Name"])) == [
        "/lib/New Name/sub/a.mp3", "/lib/New Name/sub/b.mp3", "/lib/New Name/sub/sub/a.mp3",
        "/lib/New Name/sub/sub/c.mp3"]
    assert cat.track("/lib/New Name/sub/a.mp3").predictions[0].genre == "rock"
    assert cat.track("/lib/New Name/sub/sub/a.mp3").predictions[0].genre == "pop"


# ---------------------------------------------------------------------------------------------
# tag writes, batches, concurrency
# ---------------------------------------------------------------------------------------------


def test_tag_changes_record_and_revert(cat):
    path = "/music/a.mp3"
    cat.record_result(result_for(path, CLEAR_ROCK), size=1, mtime_ns=1)
    first = cat.record_tag_changes(path, [
        Change(path, "TCON", ("Rock & Roll", "Ünïcode"), ("rock",)),
        Change(path, "TXXX:TAGGER_GENRE_CONFIDENCE", None, ("0.70",)),
    ], size=2, mtime_ns=2)
    later = cat.record_tag_changes(path, [Change(path, "TCON", ("rock",), None)])
    other = cat.record_tag_changes("/music/b.mp3", [Change("", "GENRE", None, ("pop",))])
    assert cat.known_files()[path] == (2, 2, "done")  # stat updated with the write

    changes = cat.tag_changes([path])
    assert [c.id for c in changes] == first + later  # oldest first
    assert changes[0].old == ("Rock & Roll", "Ünïcode") and changes[0].new == ("rock",)
    assert changes[1].old is None and changes[2].new is None
    assert [c.path for c in cat.tag_changes()] == [path] * 3 + ["/music/b.mp3"]

    assert cat.mark_reverted(first + later) == 3
    assert cat.mark_reverted(first) == 0
    assert cat.tag_changes([path]) == []
    reverted = cat.tag_changes([path], include_reverted=True)
    assert len(reverted) == 3 and all(c.reverted_at is not None for c in reverted)
    assert [c.id for c in cat.tag_changes()] == other
    assert cat.track(path).tag_writes[0].reverted_at is not None
    assert cat.update_stat(path, 3, 3) and not cat.update_stat("/nope", 1, 1)
    assert cat.known_files()[path] == (3, 3, "done")


def test_batch_commits_together_and_rolls_back(cat):
    with cat.batch():
        cat.record_result(result_for("/m/a.mp3", CLEAR_ROCK), size=1, mtime_ns=1)
        with cat.batch():  # nested: joins
            cat.record_result(result_for("/m/b.mp3", CLEAR_POP), size=1, mtime_ns=1)
        assert cat.track("/m/b.mp3").status == "done"  # reads see the batch
        assert set(cat.known_files()) == {"/m/a.mp3", "/m/b.mp3"}
        with pytest.raises(WriteError, match="UTF-8"):
            cat.mark_pending("/m/bad-\udcff.mp3", 1, 1)  # undecodable file name: only it fails
        cat.record_failure("/m/c.mp3", "boom")
    assert set(cat.known_files()) == {"/m/a.mp3", "/m/b.mp3", "/m/c.mp3"}

    with pytest.raises(RuntimeError), cat.batch():
        cat.record_result(result_for("/m/d.mp3", CLEAR_ROCK), size=1, mtime_ns=1)
        cat.mark_missing(["/m/a.mp3"])
        raise RuntimeError("writer crashed")
    assert "/m/d.mp3" not in cat.known_files()
    assert cat.known_files()["/m/a.mp3"][2] == "done"


def test_a_second_writer_waits_for_the_first(cat, url):
    other = Catalogue(url, upgrade=False)  # e.g. `tagger revert` while the daemon writes
    waited = {}
    with cat.batch():
        cat.mark_pending("/m/a.mp3", 1, 1)

        def write():
            t0 = time.perf_counter()
            other.mark_pending("/m/b.mp3", 2, 2)
            waited["s"] = time.perf_counter() - t0

        thread = threading.Thread(target=write)
        thread.start()
        time.sleep(0.5)
        assert "s" not in waited  # blocked on the write lock (busy timeout), not failed
    thread.join(timeout=20)
    assert waited["s"] >= 0.4
    assert set(cat.known_files()) == {"/m/a.mp3", "/m/b.mp3"}
    other.close()


def test_readers_are_not_blocked_by_the_writer(cat, url):
    cat.record_result(result_for("/m/a.mp3", CLEAR_ROCK), size=1, mtime_ns=1)
    reader = Catalogue(url, upgrade=False)
    seen = {}
    with cat.batch():
        cat.record_result(result_for("/m/b.mp3", CLEAR_POP), size=1, mtime_ns=1)

        def read():  # another thread, another connection: sees only committed rows, at once
            t0 = time.perf_counter()
            Catalogue(url).close()  # opening an up-to-date catalogue takes no write lock
            seen["files"] = set(reader.known_files())
            seen["stats"] = reader.stats().predicted
            seen["s"] = time.perf_counter() - t0

        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
    assert seen["files"] == {"/m/a.mp3"} and seen["stats"] == 1 and seen["s"] < 5
    assert set(reader.known_files()) == {"/m/a.mp3", "/m/b.mp3"}
    reader.close()


# ---------------------------------------------------------------------------------------------
# docs/queries.md
# ---------------------------------------------------------------------------------------------


def doc_queries() -> dict[str, str]:
    """{heading: sql} for every ```sql block of docs/queries.md, under its own heading."""
    queries: dict[str, str] = {}
    heading, block = None, None
    for line in QUERIES_MD.read_text(encoding="utf-8").splitlines():
        if block is not None:
            if line.strip() == "```":
                assert heading and heading not in queries, f"no heading of its own: {heading}"
                queries[heading] = "\n".join(block)
                block = None
            else:
                block.append(line)
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.strip() == "```sql":
            block = []
    assert block is None, "unterminated ```sql block"
    return queries


def query(queries, start):
    (key,) = [k for k in queries if k.lower().startswith(start.lower())]
    return queries[key]


@pytest.fixture
def library(cat):
    """A small catalogue filled through the API."""
    with cat.batch():
        # /music/Rock/a.mp3: the trained model says pop, then musicnn (newest) says rock
        cat.record_result(result_for("/music/Rock/a.mp3", CLEAR_POP, model=MODEL_B), size=1,
                          mtime_ns=1, content_id="A")
        cat.record_result(result_for("/music/Rock/a.mp3", CLEAR_ROCK, descriptors={"guitar": 0.6}),
                          size=1, mtime_ns=1, content_id="A")
        cat.record_result(result_for("/music/Rock/b.mp3", TIE_ROCK_POP), size=2, mtime_ns=2,
                          content_id="B")
        cat.record_result(result_for("/music/Jazz/c.flac", WEAK_JAZZ), size=3, mtime_ns=3,
                          content_id="C", not_written=NotWritten.BELOW_THRESHOLD)
        cat.record_failure("/music/Jazz/d.flac", ReadError("not audio", "/music/Jazz/d.flac"))
        cat.record_failure("/music/Jazz/e.flac", "too short", status="skipped")
        cat.record_result(result_for("/music/Old/f.mp3", CLEAR_POP), size=4, mtime_ns=4,
                          content_id="F")
        cat.mark_missing(["/music/Old/f.mp3"])
        cat.mark_pending("/music/New/g.mp3", 5, 5, "mp3")
        cat.mark_pending("/music/New/copy-of-c.flac", 3, 3, "flac")
        cat.record_tag_changes("/music/Rock/a.mp3", [  # field names as the tags module logs them
            Change("", "TCON", None, ("Rock",)),  # files get title case, the catalogue not
            Change("", "TXXX:TAGGER_GENRE_CONFIDENCE", None, ("0.650",))])
        cat.record_tag_changes("/music/Jazz/c.flac", [Change("", "GENRE", ("Jazz",), ("blues",))])
    with cat.engine.begin() as conn:  # content ids come from the scanner; give the copy one
        conn.execute(sa.text("UPDATE tracks SET content_id = 'C' WHERE path LIKE '%copy-of-c%'"))
    return cat


def test_docs_has_at_least_ten_queries():
    queries = doc_queries()
    assert len(queries) >= 10
    assert all(len(h.splitlines()) == 1 for h in queries)


def test_every_doc_query_runs(library):
    for heading, sql in doc_queries().items():
        try:
            rows(library, sql)
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"query {heading!r} failed: {exc}")


def test_key_doc_queries_return_the_expected_rows(library):
    q = doc_queries()

    def run(start):
        return [dict(r) for r in rows(library, query(q, start))]

    assert {r["status"]: r["tracks"] for r in run("Tracks by status")} == {
        "done": 3, "failed": 1, "skipped": 1, "missing": 1, "pending": 2}
    assert run("Genre counts") == [{"genre": "rock", "tracks": 2},
                                   {"genre": "jazz", "tracks": 1}, {"genre": "pop", "tracks": 1}]
    assert [(r["path"], r["genre"]) for r in run("Low-confidence")] == [
        ("/music/Jazz/c.flac", "jazz")]
    (tie,) = run("Ties")
    assert (tie["path"], tie["genre"], tie["tied_genres"]) == ("/music/Rock/b.mp3", "rock",
                                                               "rock,pop")
    assert run("Genre distribution below one folder") == [{"genre": "jazz", "tracks": 1}]
    per_folder = {(r["folder"], r["genre"]): r["tracks"] for r in run("Genres per folder")}
    assert per_folder == {("/music/Rock", "rock"): 2, ("/music/Jazz", "jazz"): 1,
                          ("/music/Old", "pop"): 1}
    assert [(r["status"], r["error"], r["tracks"]) for r in run("Failures by reason")] == [
        ("failed", "not audio", 1), ("skipped", "too short", 1)]
    assert [r["path"] for r in run("Failed files")] == ["/music/Jazz/d.flac"]
    assert run("Kinds of failure") == [
        {"failure_kind": "unreadable", "retried": "when changed or --retry-failed", "tracks": 1}]
    assert [(r["not_written"], r["path"]) for r in run("Predictions not written")] == [
        ("below_threshold", "/music/Jazz/c.flac")]
    (differs,) = run("Tracks whose written genre differs")
    assert (differs["path"], differs["predicted"], differs["written"]) == (
        "/music/Jazz/c.flac", "jazz", '["blues"]')
    assert [r["path"] for r in run("Recent tag writes")] == [
        "/music/Jazz/c.flac", "/music/Rock/a.mp3", "/music/Rock/a.mp3"]
    assert [(r["path"], r["written_confidence"]) for r in run("Confidence written")] == [
        ("/music/Rock/a.mp3", '["0.650"]')]
    assert [r["path"] for r in run("Tracks with descriptors")] == ["/music/Rock/a.mp3"]
    assert [r["path"] for r in run("Tracks with one descriptor")] == ["/music/Rock/a.mp3"]
    summary = {r["model"]: (r["tracks"], r["ties"]) for r in run("Per-model summary")}
    assert summary == {"musicnn": (4, 1), "trained": (1, 0)}
    (disagree,) = run("Per-model comparison")
    assert (disagree["path"], disagree["model_a"], disagree["genre_a"], disagree["genre_b"]) == (
        "/music/Rock/a.mp3", "trained", "pop", "rock")
    assert [r["path"] for r in run("Missing tracks")] == ["/music/Old/f.mp3"]
    assert [r["path"] for r in run("Close calls")] == ["/music/Jazz/c.flac", "/music/Rock/b.mp3"]
    assert [r["genre"] for r in run("Segment votes of one track")] == [
        "rock", "rock", "pop", "pop"]
    assert run("Duplicate files") == [{"content_id": "C", "copies": 2,
                                       "one_of_them": "/music/Jazz/c.flac"}]
    assert [r["path"] for r in run("Waiting to be classified")] == [
        "/music/New/g.mp3", "/music/New/copy-of-c.flac"]
