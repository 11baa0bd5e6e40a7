"""The catalogue on PostgreSQL works exactly as on SQLite, on real files.

Runs when ``$TAGGER_TEST_POSTGRES_URL`` names an empty PostgreSQL database (SQLAlchemy URL,
e.g. ``postgresql+psycopg://tagger@/tagger?host=/tmp/pg``; ``.ci/run`` starts a throw-away
server and sets it), and is skipped otherwise. A small library of real clips (tests/data,
converted by ffmpeg into MP3, M4A, FLAC, Opus and WAV, plus the original Ogg files) is copied
twice and scanned with the ``tagger`` command: one copy into the PostgreSQL database, one into
a temporary SQLite file. Then, on PostgreSQL:

- the scan classifies and tags the same files as on SQLite, and a rescan classifies nothing;
- every query of docs/queries.md runs and returns as many rows as on SQLite, and
  ``genre_counts`` is identical;
- ``tagger stats`` and ``tagger show`` answer, a second writer is refused by the server-side
  lock even from another state directory (another host), and ``tagger revert --all`` puts
  back each file's original genres.

The schema is removed from the database at the end (``alembic downgrade base``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import mutagen
import pytest
import sqlalchemy as sa
from helpers.audio import DATA_DIR
from helpers.library import at_rest

from tagger.audio.decode import find_ffmpeg
from tagger.cli import main as tagger
from tagger.errors import WriteError
from tagger.library import tags
from tagger.library.catalogue import downgrade
from tagger.library.lock import WriterLock

URL = os.environ.get("TAGGER_TEST_POSTGRES_URL", "")
if not URL:
    pytest.skip("set TAGGER_TEST_POSTGRES_URL to an empty PostgreSQL database to run these",
                allow_module_level=True)

pytestmark = pytest.mark.slow  # every scan runs the model on real audio

REPO = Path(__file__).resolve().parents[1]
CLIPS = sorted(DATA_DIR.glob("*.ogg"))
CONVERSIONS = [(".mp3", ["-c:a", "libmp3lame", "-b:a", "192k"]), (".m4a", ["-c:a", "aac"]),
               (".flac", ["-c:a", "flac"]), (".opus", ["-c:a", "libopus"]),
               (".wav", ["-c:a", "pcm_s16le"])]
QUERIES = re.findall(r"```sql\n(.*?)```", (REPO / "docs" / "queries.md").read_text("utf-8"),
                     re.S)


def build_library(folder: Path) -> None:
    ffmpeg = find_ffmpeg()
    folder.mkdir(parents=True)
    for i, clip in enumerate(CLIPS):
        shutil.copy(clip, folder / clip.name)
        suffix, codec = CONVERSIONS[i % len(CONVERSIONS)]
        subprocess.run([ffmpeg, "-v", "error", "-i", str(clip), "-map", "0:a:0", *codec,
                        str(folder / f"{clip.stem}{suffix}")], check=True)
    for path in folder.iterdir():
        path.chmod(0o644)
    # a music track whose own genre the model disagrees with: the disagree queue's case
    brahms = folder / "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg"
    audio = mutagen.File(brahms)
    audio["GENRE"] = ["Polka"]
    audio.save()
    at_rest(folder)  # converted long ago: scanned now, not left for later


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = tagger(list(argv))
    return code, out.getvalue()


def summary(scan_json: str) -> dict:
    """The scan's --json summary without its timing."""
    values = json.loads(scan_json)
    for timing in ("elapsed_s", "album_seconds"):
        values.pop(timing, None)
    return values


def run_sql(url: str, statements: list[str]) -> list[list[tuple]]:
    """Every statement's rows, run through SQLAlchemy on ``url``."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            # exec_driver_sql: the queries are plain SQL; psycopg reads % as a placeholder
            escape = url.startswith("postgresql")
            return [[tuple(r) for r in conn.exec_driver_sql(q.replace("%", "%%") if escape
                                                            else q)]
                    for q in statements]
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same real library scanned into PostgreSQL and into SQLite."""
    assert URL.startswith("postgresql"), f"TAGGER_TEST_POSTGRES_URL is not PostgreSQL: {URL}"
    engine = sa.create_engine(URL)
    with engine.connect() as conn:
        existing = sorted(set(sa.inspect(conn).get_table_names()) - {"alembic_version"})
    engine.dispose()
    assert not existing, f"the database has tables ({', '.join(existing[:5])}); give an empty one"
    work = tmp_path_factory.mktemp("postgres")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(work / "state"))
        patch.delenv("TAGGER_CONFIG", raising=False)
        patch.chdir(work)  # no ./tagger.toml
        build_library(work / "pg")
        shutil.copytree(work / "pg", work / "sqlite")
        originals = {p.name: tags.read_genres(p) for p in (work / "pg").iterdir()}
        sqlite_url = f"sqlite:///{work / 'catalogue.sqlite'}"
        try:
            scans = (run("scan", "--db", URL, "--json", str(work / "pg")),
                     run("scan", "--db", sqlite_url, "--json", str(work / "sqlite")))
            yield {"work": work, "sqlite": sqlite_url, "originals": originals, "scans": scans}
        finally:
            downgrade(URL, "base")


def test_scan_gives_the_same_result_as_on_sqlite(both):
    (code_pg, out_pg), (code_sq, out_sq) = both["scans"]
    assert code_pg == code_sq == 0
    assert summary(out_pg) == summary(out_sq)
    assert summary(out_pg)["classified"] == len(both["originals"]) == 2 * len(CLIPS)


def test_a_rescan_classifies_nothing(both):
    code, out = run("scan", "--db", URL, "--json", str(both["work"] / "pg"))
    assert code == 0 and summary(out)["classified"] == 0


def test_documented_queries_return_what_sqlite_returns(both):
    assert QUERIES
    pg, sq = run_sql(URL, QUERIES), run_sql(both["sqlite"], QUERIES)
    for query, a, b in zip(QUERIES, pg, sq):
        assert len(a) == len(b), query
    counts = ["select genre, tracks from genre_counts order by genre"]
    assert run_sql(URL, counts) == run_sql(both["sqlite"], counts)


def test_stats_and_show_answer(both):
    code, out = run("stats", "--db", URL)
    assert code == 0 and "with a genre" in out
    some = sorted((both["work"] / "pg").iterdir())[0]
    code, out = run("show", "--db", URL, str(some))
    assert code == 0 and "prediction" in out


def test_a_second_writer_on_another_host_is_refused(both):
    work = both["work"]
    with WriterLock(work / "state-a", URL, "test_postgres"):
        # another state directory: as if from another host; only the server's lock stops it
        with pytest.raises(WriteError, match="being written by test_postgres"):
            WriterLock(work / "state-b", URL, "second writer").acquire()


def kill_lock_sessions(application_name: str) -> int:
    """What a database restart does to the writer's lock: its session ends, the lock goes."""
    return sum(r[0] for r in run_sql(URL, [
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE application_name LIKE '{application_name}%' AND pid <> pg_backend_pid()"])[0])


def test_a_lost_writer_lock_is_taken_again_when_nobody_took_it(both, caplog):
    work = both["work"]
    with WriterLock(work / "state-a", URL, "lock-retake") as lock:
        assert kill_lock_sessions("lock-retake") == 1
        WriterLock(work / "state-b", URL, "probe").acquire().release()  # free: anyone could
        lock.verify()  # notices, and takes it back
        assert "taken again" in caplog.text
        with pytest.raises(WriteError, match="being written by lock-retake"):
            WriterLock(work / "state-b", URL, "second writer").acquire()


def test_a_writer_whose_lock_was_taken_meanwhile_stops_before_writing(both):
    from tagger.library.catalogue import Catalogue
    from tagger.library.lock import LockLostError

    work = both["work"]
    with WriterLock(work / "state-a", URL, "lock-lost") as lock, Catalogue(URL) as catalogue:
        lock.guard(catalogue)
        with catalogue.batch():  # a write goes through while the lock is held
            catalogue.mark_pending("/lock-test/a.mp3", 1, 1)
        assert kill_lock_sessions("lock-lost") == 1
        with WriterLock(work / "state-b", URL, "the other writer"):
            with pytest.raises(LockLostError, match="cannot be taken again"):
                with catalogue.batch():
                    catalogue.mark_pending("/lock-test/b.mp3", 1, 1)
        assert catalogue.track("/lock-test/b.mp3") is None  # nothing written without it
    with Catalogue(URL) as catalogue, catalogue.batch():
        catalogue.forget(["/lock-test/a.mp3"])


def test_labels_and_genre_check_agree_with_sqlite(both):
    """The learning tables (migration 0005_learning): tags, corrections, labels, adoptions,
    calibrations and the genre_check view (its JSON differs per dialect) on both databases."""
    from tagger.library.catalogue import Catalogue

    answers = []
    for url, folder in ((URL, "pg"), (both["sqlite"], "sqlite")):
        files = sorted(str(p) for p in (both["work"] / folder).iterdir())
        with Catalogue(url) as catalogue:
            catalogue.set_track_tags(files[0], "Ann", "Ä album", ["Jazz", "Blues"],
                                     ["Jazz", "Blues"])
            catalogue.set_track_tags(files[1], "Bob", None, ["Rock"], None)
            catalogue.record_correction(files[1], "set_genre", "Reggae", source="cli",
                                        previous=["Rock"], predicted="rock", confidence=0.5)
            catalogue.record_correction(files[2], "not_music", source="review")
            catalogue.record_correction(files[2], "undo", source="review")
            catalogue.record_adoption("head", "1" * 64, "/state/m.tagger", ["jazz"], {"n": 1})
            catalogue.record_adoption("head2", "2" * 64, "/state/m2.tagger", ["jazz"], {})
            catalogue.record_calibration("2" * 64, "temperature", {"t": 1.5}, threshold=None)
            labels = [(os.path.basename(r.path), r.genre, r.genres, r.artist, r.album, r.source)
                      for r in catalogue.labelled_tracks()]
            adopted = catalogue.adopted_model().name
            calibration = catalogue.calibration_for("2" * 64).parameters
            with catalogue.engine.connect() as conn:
                check = [(os.path.basename(r.path), r.artist, r.album, r.user_genre,
                          r.label_source, r.predicted, r.agrees) for r in conn.execute(sa.text(
                              "SELECT * FROM genre_check ORDER BY path"))]
            answers.append((labels, adopted, calibration, check))
    assert answers[0] == answers[1]
    labels, adopted, calibration, check = answers[0]
    first, second = (sorted(p.name for p in (both["work"] / "pg").iterdir()))[:2]
    by_name = {label[0]: (label[1], label[2]) for label in labels}
    assert by_name[first] == ("Jazz", ("Jazz", "Blues"))
    assert by_name[second] == ("Reggae", ("Reggae",))
    assert len(labels) >= 2  # and the genres the clips' own tags carry (the scan read them)
    assert (adopted, calibration) == ("head2", {"t": 1.5})
    assert len(check) == len(both["originals"]) and check[0][1:5] == ("Ann", "Ä album", "Jazz",
                                                                      "tag")


def test_review_queues_page_as_on_sqlite(both):
    """tagger review's queues (row-value keysets, the user genre's JSON per dialect): every
    queue and sort, walked a few rows a page, lists the same tracks in both databases, and
    genre_check's disagreements are the disagree queue."""
    from tagger.library.catalogue import Catalogue, Queue, Sort, queue_page

    answers = []
    for url in (URL, both["sqlite"]):
        with Catalogue(url) as catalogue:
            walked = {}
            for queue in Queue:
                for sort in Sort:
                    names, after = [], None
                    while True:
                        page = queue_page(catalogue.engine, queue, low=0.5, sort=sort,
                                          after=after, limit=3)
                        names += [os.path.basename(r.path) for r in page.rows]
                        if page.next_cursor is None:
                            break
                        after = page.next_cursor
                    assert len(names) == len(set(names)), (url, queue, sort)
                    # the library's files (another test adds a row of its own); the order
                    # by path follows each database's collation
                    walked[queue, sort] = sorted(n for n in names if n in both["originals"])
            with catalogue.engine.connect() as conn:
                # a track the user corrected is judged: in no queue to judge; one that is
                # not music (the content gate) is in no genre queue
                disagree = sorted(n for (p,) in conn.execute(sa.text(
                    "SELECT path FROM genre_check WHERE agrees = 0 AND label_source = 'tag' "
                    "AND path IN (SELECT path FROM tracks WHERE status <> 'not_music')"))
                    if (n := os.path.basename(p)) in both["originals"])
            assert sorted(walked[Queue.DISAGREE, Sort.PATH]) == disagree
            answers.append(walked)
    assert answers[0] == answers[1]
    assert answers[0][Queue.ALL, Sort.PATH] and answers[0][Queue.DISAGREE, Sort.CONFIDENCE]


def test_revert_all_restores_every_files_genres(both):
    code, _ = run("revert", "--db", URL, "--all", "--corrections")  # a test corrected one
    after = {p.name: tags.read_genres(p) for p in (both["work"] / "pg").iterdir()}
    assert code == 0 and after == both["originals"]
