"""Every query of docs/queries.md runs on a small catalogue filled through the API, and the
key ones return the rows the documentation promises."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from helpers.catalogue import (
    CLEAR_POP,
    CLEAR_ROCK,
    MODEL_A,
    MODEL_B,
    TIE_ROCK_POP,
    WEAK_JAZZ,
    Change,
    doc_queries,
    query,
    result_for,
    rows,
)

from tagger.errors import ReadError
from tagger.library.catalogue import AlbumRecord
from tagger.results import AlbumIdentity, NotWritten

LIVE = 'tags:["band", "live"]'

# ---------------------------------------------------------------------------------------------
# docs/queries.md
# ---------------------------------------------------------------------------------------------


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
        # one album of three tracks; c.flac's own vote (jazz, below the threshold) differs
        for path in ("/music/Rock/a.mp3", "/music/Rock/b.mp3", "/music/Jazz/c.flac"):
            cat.set_track_tags(path, "Band", "Live", [], None, album_key=LIVE,
                               album_artist="Band")
        cat.record_album(AlbumRecord(
            LIVE, AlbumIdentity.TAGS, "Live", "Band", "/music/Rock", MODEL_A.sha256, "rock",
            0.6, False, ("rock",), 11, members=3, voters=3, agreeing=2, compilation=False,
            per_track=None, not_written=None, written=2))
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
    assert [(r["album"], r["genre"], r["members"], r["written"], r["per_track"])
            for r in run("Albums and their genre")] == [("Live", "rock", 3, 2, None)]
    assert run("Compilations") == []
    assert [(r["path"], r["own"], r["album_genre"])
            for r in run("Tracks whose own prediction differs")] == [
        ("/music/Jazz/c.flac", "jazz", "rock")]
    assert [(r["path"], r["track"]) for r in run("Albums whose genre is not")] == [
        ("/music/Jazz/c.flac", "below_threshold")]
    assert run("Tracks per album") == [{"album_key": LIVE, "tracks": 3}]
