"""The catalogue API the scan engine uses, on real SQLite files: results, failures and stats,
known files and moves, the tag journal, batches and concurrent writers."""

from __future__ import annotations

import threading
import time

import pytest
from helpers.catalogue import (
    CLEAR_POP,
    CLEAR_ROCK,
    GENRES,
    MODEL_A,
    MODEL_B,
    TIE_ROCK_POP,
    WEAK_JAZZ,
    Change,
    result_for,
    rows,
)

from tagger.errors import ReadError, WriteError
from tagger.library.catalogue import Catalogue
from tagger.results import ModelInfo, TrackResult

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
    assert s.status_counts == {"pending": 1, "done": 3, "failed": 2, "skipped": 1, "missing": 0,
                               "not_music": 0}
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
