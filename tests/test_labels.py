"""The catalogue's learning side (migration 0005_learning): the file's own tags, corrections,
labelled tracks, adoptions, calibrations and the ``genre_check`` view, on real SQLite files."""

from __future__ import annotations

from dataclasses import dataclass as dataclass_change

import pytest
import sqlalchemy as sa
from helpers.catalogue import CLEAR_POP, CLEAR_ROCK, MODEL_A, result_for

from tagger.errors import WriteError
from tagger.library.catalogue import Catalogue, downgrade, head, upgrade
from tagger.results import CorrectionAction, CorrectionSource, LabelSource


@pytest.fixture
def cat(tmp_path):
    catalogue = Catalogue(f"sqlite:///{tmp_path / 'state' / 'catalogue.sqlite'}")
    yield catalogue
    catalogue.close()


@pytest.fixture
def music(tmp_path):
    """Three existing files (labelled_tracks only lists files that exist)."""
    folder = tmp_path / "music"
    folder.mkdir()
    paths = []
    for name in ("a.mp3", "b.ogg", "c.flac"):
        (folder / name).write_bytes(b"x")
        paths.append(str(folder / name))
    return paths


def view(cat, sql="SELECT * FROM genre_check ORDER BY path"):
    with cat.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql)).mappings()]


def test_set_track_tags_round_trips_and_replaces(cat, music):
    a = music[0]
    cat.set_track_tags(a, "Artist", "Album", ["Rock", "Pop"], ["Rock", "Pop"])
    record = cat.track(a)
    assert (record.status, record.artist, record.album) == ("pending", "Artist", "Album")
    assert record.file_genres == ("Rock", "Pop") and record.user_genres == ("Rock", "Pop")
    cat.set_track_tags(a, None, "", ["Jazz"], [])  # a rescan: every value replaced
    record = cat.track(a)
    assert (record.artist, record.album, record.file_genres, record.user_genres) == (
        None, None, ("Jazz",), ())
    with cat.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT user_genres FROM tracks")).scalar() is None


def test_labelled_tracks_tags_corrections_not_music_and_undo(cat, music, tmp_path):
    a, b, c = music
    for path in music:
        cat.record_result(result_for(path, CLEAR_ROCK), size=1, mtime_ns=1, content_id=path[-5:])
    cat.set_track_tags(a, "Ann", "First", ["Jazz", "Blues"], ["Jazz", "Blues"])
    cat.set_track_tags(b, "Bob", None, ["Rock"], None)  # tagger wrote it: not a label
    assert [(r.path, r.genre, r.genres, r.source) for r in cat.labelled_tracks()] == [
        (a, "Jazz", ("Jazz", "Blues"), LabelSource.TAG)]
    (row,) = cat.labelled_tracks()
    assert (row.content_id, row.artist, row.album) == ("a.mp3", "Ann", "First")

    cat.record_correction(b, CorrectionAction.SET_GENRE, "Reggae", source="cli",
                          previous=["Rock"], predicted="rock", confidence=0.8,
                          model_sha256=MODEL_A.sha256)
    cat.record_correction(a, "not_music", "ignored", source=CorrectionSource.REVIEW)
    labels = {r.path: (r.genre, r.source) for r in cat.labelled_tracks()}
    assert labels == {b: ("Reggae", LabelSource.CORRECTION)}  # not_music removes a's label

    undo_id = cat.record_correction(a, "undo", source="cli")  # a's tags count again
    assert {r.path: r.genre for r in cat.labelled_tracks()} == {a: "Jazz", b: "Reggae"}
    cat.record_correction(b, "accept", "Rock", source="review")
    cat.record_correction(b, "undo", source="review")  # back to Reggae, not to nothing
    assert {r.path: r.genre for r in cat.labelled_tracks()} == {a: "Jazz", b: "Reggae"}

    history = cat.corrections(a)
    assert [(x.action, x.genre, x.in_force) for x in history] == [
        (CorrectionAction.NOT_MUSIC, None, False), (CorrectionAction.UNDO, None, False)]
    assert history[0].undone_at is not None and history[1].id == undo_id
    assert history[0].source is CorrectionSource.REVIEW
    (first,) = [x for x in cat.corrections(b) if x.genre == "Reggae"]
    assert (first.previous, first.predicted_genre, first.predicted_confidence,
            first.model_sha256) == (("Rock",), "rock", 0.8, MODEL_A.sha256)
    assert cat.correction_in_force(b).genre == "Reggae"
    assert cat.correction_in_force(c) is None
    with pytest.raises(WriteError, match="no correction to undo"):
        cat.record_correction(c, "undo", source="cli")
    with pytest.raises(WriteError, match="needs a genre"):
        cat.record_correction(c, "set_genre", " ", source="cli")
    with pytest.raises(ValueError):
        cat.record_correction(c, "set_genre", "Rock", source="web")

    assert [r.path for r in cat.labelled_tracks([str(tmp_path / "music")])] == [a, b]
    assert cat.labelled_tracks([str(tmp_path / "elsewhere")]) == []
    (tmp_path / "music" / "a.mp3").unlink()  # gone from disk: no longer a label
    assert [r.path for r in cat.labelled_tracks()] == [b]
    cat.mark_missing([b])
    assert cat.labelled_tracks() == []


def test_corrections_follow_moves_and_outlive_the_track(cat, music, tmp_path):
    a, b, _ = music
    cat.record_result(result_for(a, CLEAR_ROCK), size=1, mtime_ns=1)
    cat.record_correction(a, "set_genre", "Jazz", source="cli")
    moved = str(tmp_path / "music" / "moved.mp3")
    (tmp_path / "music" / "a.mp3").rename(moved)
    assert cat.move(a, moved)
    assert [x.path for x in cat.corrections()] == [moved]
    assert [(r.path, r.genre) for r in cat.labelled_tracks()] == [(moved, "Jazz")]
    assert cat.move_prefix(str(tmp_path / "music"), str(tmp_path / "music2"))
    assert cat.corrections()[0].path == str(tmp_path / "music2" / "moved.mp3")
    cat.mark_missing([cat.corrections()[0].path])
    cat.forget([cat.corrections()[0].path])  # the track goes; its correction stays
    (kept,) = cat.corrections()
    assert kept.genre == "Jazz"
    with cat.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT track_id FROM corrections")).scalar() is None


def test_genre_check_view(cat, music):
    a, b, c = music
    cat.record_result(result_for(a, CLEAR_ROCK), size=1, mtime_ns=1)
    cat.record_result(result_for(b, CLEAR_POP), size=1, mtime_ns=1)
    cat.record_result(result_for(c, CLEAR_ROCK), size=1, mtime_ns=1)
    cat.mark_pending("/music/unpredicted.mp3", 1, 1)
    cat.set_track_tags("/music/unpredicted.mp3", "X", "Y", ["Rock"], ["Rock"])
    cat.set_track_tags(a, "Ann", "First", ["Rock", "Pop"], ["Rock", "Pop"])
    cat.set_track_tags(b, "Bob", None, ["Rock"], ["Rock"])
    cat.record_correction(c, "set_genre", "Jazz", source="cli")
    cat.record_correction(c, "not_music", source="cli")
    rows = view(cat)
    assert [(r["path"], r["artist"], r["album"], r["user_genre"], r["label_source"],
             r["predicted"], r["model"], r["agrees"]) for r in rows] == [
        (a, "Ann", "First", "Rock", "tag", "rock", "musicnn", 1),
        (b, "Bob", None, "Rock", "tag", "pop", "musicnn", 0),
        (c, None, None, None, "not_music", "rock", "musicnn", None),
    ]
    assert rows[0]["confidence"] == pytest.approx(cat.track(a).prediction.confidence)
    cat.record_correction(c, "undo", source="cli")  # back to the Jazz correction
    cat.record_correction(b, "accept", "Pop", source="review")
    got = {r["path"]: (r["user_genre"], r["label_source"], r["agrees"]) for r in view(cat)}
    assert got[b] == ("Pop", "correction", 1) and got[c] == ("Jazz", "correction", 0)


def test_adoptions_one_current_at_a_time(cat, tmp_path):
    assert cat.adopted_model() is None and not cat.retire_adoption()
    first = cat.record_adoption("head-1", "1" * 64, str(tmp_path / "m1.tagger"), ["rock", "jazz"],
                                {"accuracy": 0.7, "folds": 5})
    adopted = cat.adopted_model()
    assert (adopted.id, adopted.name, adopted.sha256, adopted.labels, adopted.figures,
            adopted.retired_at) == (first, "head-1", "1" * 64, ("rock", "jazz"),
                                    {"accuracy": 0.7, "folds": 5}, None)
    second = cat.record_adoption("head-2", "2" * 64, tmp_path / "m2.tagger", ["rock"], {})
    assert cat.adopted_model().id == second
    history = cat.adoptions()
    assert [a.id for a in history] == [first, second] and history[0].retired_at is not None
    with cat.engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT COUNT(*) FROM adoptions WHERE retired_at IS NULL")).scalar() == 1
    assert cat.retire_adoption()
    assert cat.adopted_model() is None


def test_calibrations_newest_per_model_wins(cat):
    np = pytest.importorskip("numpy")
    assert cat.calibration_for("a" * 64) is None
    cat.record_calibration("a" * 64, "temperature", {"temperature": 1.5}, ece_before=0.2,
                           ece_after=0.05, tracks=120, target_precision=0.9, threshold=None)
    newer = cat.record_calibration("a" * 64, "isotonic",
                                   {"x": np.array([0.1, 0.5]), "y": [0.2, 0.6]},
                                   ece_before=np.float64(0.2), ece_after=0.03, tracks=120,
                                   target_precision=0.9, threshold=0.55, precision=0.91,
                                   coverage=0.4)
    cat.record_calibration("b" * 64, "temperature", {"temperature": 2.0})
    got = cat.calibration_for("a" * 64)
    assert (got.id, got.method.value, got.parameters, got.threshold, got.precision,
            got.coverage, got.ece_before) == (newer, "isotonic",
                                              {"x": [0.1, 0.5], "y": [0.2, 0.6]}, 0.55, 0.91,
                                              0.4, 0.2)
    assert cat.calibration_for("b" * 64).parameters == {"temperature": 2.0}
    with pytest.raises(ValueError):
        cat.record_calibration("a" * 64, "platt", {})


def test_migration_0005_upgrades_a_0004_catalogue_and_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    upgrade(url, revision="0004_journal")
    with sa.create_engine(url).begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO tracks (path, folder, status, attempts, first_seen, updated_at) "
            "VALUES ('/m/a.mp3', '/m', 'done', 0, '2026-01-01', '2026-01-01')"))
    with Catalogue(url) as cat:
        assert cat.upgraded_from == "0004_journal" and cat.revision == head()
        record = cat.track("/m/a.mp3")
        assert (record.artist, record.file_genres, record.user_genres) == (None, (), ())
        cat.record_correction("/m/a.mp3", "set_genre", "Jazz", source="cli")
    downgrade(url, "0004_journal")
    with sa.create_engine(url).connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
        columns = {c["name"] for c in sa.inspect(conn).get_columns("tracks")}
    assert "corrections" not in names and "artist" not in columns
    assert Catalogue(url).revision == head()


def test_doc_queries_on_labels_return_the_expected_rows(cat, music):
    from helpers.catalogue import doc_queries, query

    a, b, c = music
    cat.record_result(result_for(a, CLEAR_ROCK), size=1, mtime_ns=1)  # rock, ~0.65
    cat.record_result(result_for(b, CLEAR_POP), size=1, mtime_ns=1)  # pop, 0.85
    cat.record_result(result_for(c, CLEAR_ROCK), size=1, mtime_ns=1)
    cat.set_track_tags(a, "Ann", None, ["Rock"], ["Rock"])
    cat.set_track_tags(b, "Ann", None, ["Pop"], ["Jazz"])  # tagger overwrote the user's Jazz
    cat.record_correction(c, "set_genre", "Jazz", source="cli", predicted="rock",
                          confidence=0.7)
    cat.record_correction(c, "set_genre", "Blues", source="review", predicted="rock",
                          confidence=0.7)
    cat.record_adoption("head", "h" * 64, "/state/models/head.tagger", ["rock"], {})
    cat.record_calibration("h" * 64, "temperature", {"t": 2.0}, threshold=0.4)
    cat.record_calibration("h" * 64, "isotonic", {}, threshold=0.5, precision=0.9)
    q = doc_queries()

    def run(start):
        with cat.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(query(q, start)))]

    assert [(r[0], r[2], r[3], r[5]) for r in run("My genre vs the prediction")] == [
        (b, "Jazz", "pop", 0), (c, "Blues", "rock", 0), (a, "Rock", "rock", 1)]
    assert run("Agreement per genre") == [("Blues", 1, 0, 1), ("Jazz", 1, 0, 1),
                                          ("Rock", 1, 1, 0)]
    assert [r[:3] for r in run("Confusions")] == [("Blues", "rock", 1), ("Jazz", "pop", 1)]
    assert [r[0] for r in run("Confident mistakes")] == [b, c]
    assert [(r[1], r[3], r[7]) for r in run("Corrections, newest first")] == [
        (c, "Blues", "review"), (c, "Jazz", "cli")]
    assert run("Corrections in force") == [("Blues", 1)]
    assert run("Corrected predictions") == [("rock", "Blues", 1), ("rock", "Jazz", 1)]
    assert run("Labelled tracks per artist") == [("Ann", 2, 2), ("(no artist)", 1, 1)]
    assert [r[0] for r in run("Your genres that tagger overwrote")] == [b]
    (adopted,) = run("The adopted model")
    assert (adopted[0], adopted[3], adopted[6]) == ("head", "isotonic", 0.5)


def test_written_genres_and_user_genres_know_corrections(cat, music):
    from tagger.library.journal import user_genres, written_genres

    a, b, _ = music

    @dataclass_change
    class Change:
        field: str
        old: tuple | None
        new: tuple | None

    cat.record_tag_changes(a, [Change("GENRE", None, ("Rock",))])  # tagger's own guess
    cat.record_tag_changes(b, [Change("GENRE", ("Pop",), ("Jazz",))])  # the user's set-genre
    cat.record_correction(b, "set_genre", "Jazz", source="cli")
    assert written_genres(cat) == {a: ("Rock",)}
    assert user_genres(cat, a, ["Rock"]) == [] and user_genres(cat, b, ["Jazz"]) == ["Jazz"]
    cat.record_correction(b, "undo", source="cli")
    assert written_genres(cat) == {a: ("Rock",), b: ("Jazz",)}
    assert user_genres(cat, b, ["Jazz"]) == []


def test_genre_owners_reads_the_journal_once(cat, music, monkeypatch):
    from tagger.library.journal import genre_owners

    a, b, c = music

    @dataclass_change
    class Change:
        field: str
        old: tuple | None
        new: tuple | None

    cat.record_tag_changes(a, [Change("GENRE", ("Blues",), ("Rock",))])  # over the user's
    cat.record_tag_changes(b, [Change("GENRE", None, ("Jazz",))])  # into an empty field
    reads = []
    real = cat.tag_changes
    monkeypatch.setattr(cat, "tag_changes", lambda *a, **k: reads.append(a) or real(*a, **k))
    assert genre_owners(cat, a, ["Rock"]) == ([], ["Blues"])  # tagger's; the user had Blues
    assert genre_owners(cat, b, ["Jazz"]) == ([], [])  # tagger's; the user had none
    assert genre_owners(cat, c, ["Folk"]) == (["Folk"], ["Folk"])  # never touched: the user's
    assert genre_owners(cat, a, []) == ([], [])  # cleared: nothing to read
    assert len(reads) == 3


def test_correction_veto(cat, music):
    from tagger.library.corrections import correction_veto
    from tagger.results import NotWritten

    a, b, c = music
    cat.record_correction(a, "set_genre", "Jazz", source="cli")
    cat.record_correction(b, "not_music", source="review")
    assert correction_veto(cat, a, ["jazz"]) is None  # says the same: may be written
    assert correction_veto(cat, a, ["Rock"]) == (NotWritten.KEPT_USER_GENRE, "corrected: Jazz")
    assert correction_veto(cat, b, ["Rock"]) == (NotWritten.NOT_MUSIC, "")
    assert correction_veto(cat, c, ["Rock"]) is None
    cat.record_correction(b, "undo", source="review")
    assert correction_veto(cat, b, ["Rock"]) is None
