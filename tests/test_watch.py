"""`tagger watch`: the daemon, with a real watchdog observer on real files.

Most tests run the daemon in-process, in a thread (one model loaded for the module, wrapped to
count inferences per file); the service tests run ``python -m tagger watch`` as a subprocess
to send it SIGTERM and SIGKILL. Every wait is on a predicate with a timeout: the only sleeps
are the pauses of a slow copy, which are the scenario itself.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers.audio import encoding_ffmpeg, ffmpeg_run, real_clip

from tagger.audio.identity import content_id
from tagger.cli import main
from tagger.config import (
    Config,
    GenreConfig,
    LibraryConfig,
    ScanConfig,
    TagsConfig,
    WatchConfig,
)
from tagger.library import tags
from tagger.results import ModelInfo
from tagger.service.watch import (
    FOLDERS_QUIET_S,
    Observers,
    Watcher,
    choose_observers,
    filesystem_type,
    read_mounts,
    read_status,
    status_path,
)

TRUMPET = "sorohanro_-_solo-trumpet-06.ogg"  # 5.3 s: one segment
SETTLE = 0.3
TIMEOUT = 120.0  # generous: the test machine is small and shared


# ---------------------------------------------------------------- helpers


def wait_for(predicate, timeout: float = TIMEOUT, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def rows(db: Path, sql: str, *params) -> list[tuple]:
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:  # no schema yet
        if "no such table" in str(exc):
            return []
        raise
    finally:
        con.close()


def count(db: Path, sql: str, *params) -> int:
    found = rows(db, sql, *params)
    return found[0][0] if found else 0


def status_of(db: Path, path) -> str | None:
    found = rows(db, "select status from tracks where path = ?", str(path))
    return found[0][0] if found else None


@pytest.fixture(scope="session")
def variants(tmp_path_factory) -> list[Path]:
    """12 clips of different audio (so content identity tells them apart), 3.0-5.2 s each:
    one segment, the cheapest real input there is."""
    exe = encoding_ffmpeg("libvorbis")
    if exe is None:
        pytest.skip("no ffmpeg with libvorbis")
    folder = tmp_path_factory.mktemp("variants")
    out = []
    for i in range(12):
        path = folder / f"trumpet_{i:02}.ogg"
        ffmpeg_run(exe, "-t", f"{5.2 - 0.2 * i:.1f}", "-i", str(real_clip(TRUMPET)),
                   "-c:a", "libvorbis", "-map_metadata", "-1", str(path))
        out.append(path)
    return out


def trumpet(path: Path, source: Path | None = None) -> Path:
    """A copy of a short real clip without any genre tag (the default policy writes one),
    moved into place in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / (".in-" + path.name)  # an ignored name while it is being prepared
    shutil.copyfile(source or real_clip(TRUMPET), tmp)
    tags.write_genres(tmp, [], None)
    os.replace(tmp, path)
    return path


class CountingClassifier:
    """The real classifier, counting the tracks it runs the model on, per path."""

    def __init__(self, inner):
        self.inner = inner
        self.info = inner.info
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def classify_embedded(self, tracks):
        with self._lock:
            for track in tracks:
                self.counts[track.path] += 1
        return self.inner.classify_embedded(tracks)

    def classify_prepared(self, tracks):
        return [result for result, _ in self.classify_embedded(tracks)]

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def model():
    from tagger.model.classify import Classifier

    return Classifier(Config())


@pytest.fixture
def classifier(model):
    return CountingClassifier(model)


@pytest.fixture
def setup(tmp_path):
    """(root, db file, config) for one daemon: everything inside tmp_path."""
    root = tmp_path / "Music"
    root.mkdir()
    db = tmp_path / "catalogue.sqlite"
    config = Config(
        database=f"sqlite:///{db}", state_dir=str(tmp_path / "state"),
        scan=ScanConfig(workers=1), tags=TagsConfig(min_confidence=0.0),
        # a file arrives and is at rest a second later (tests/test_motion.py: longer waits)
        library=LibraryConfig(settle_seconds=1.0),
        watch=WatchConfig(settle_seconds=SETTLE, observer="native", poll_interval_seconds=0.5,
                          retry_base_seconds=0.5, retry_max_attempts=2),
    )
    return root, db, config


@contextmanager
def daemon(roots, config, **kwargs):
    """A Watcher running in a thread; stopped (and checked to stop) on exit."""
    watcher = Watcher([str(r) for r in roots], config, **kwargs)
    errors = []

    def run():
        try:
            watcher.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test
            errors.append(exc)
            watcher.started.set()

    thread = threading.Thread(target=run, name="watcher", daemon=True)
    thread.start()
    wait_for(watcher.started.is_set, what="the daemon to start")
    if errors:
        raise errors[0]
    try:
        yield watcher
    finally:
        watcher.stop()
        thread.join(timeout=TIMEOUT)
        assert not thread.is_alive(), "the daemon did not stop"
        if errors:
            raise errors[0]


def idle(watcher) -> bool:
    return watcher.status()["queue"] == 0


# ---------------------------------------------------------------- files arriving


def test_slow_chunked_copy_is_processed_once_complete_and_its_tag_write_does_not_echo(
        setup, classifier):
    root, db, config = setup
    data = real_clip(TRUMPET).read_bytes()
    target = root / "Album" / "slow.ogg"
    target.parent.mkdir()
    with daemon([root], config, classifier=classifier) as watcher:
        with open(target, "wb") as out:  # a slow network copy: pauses longer than settle
            for start in range(0, len(data), 4096):
                out.write(data[start:start + 4096])
                out.flush()
                time.sleep(2 * SETTLE)
            assert classifier.counts[str(target)] == 0, "taken before the copy was complete"
            assert status_of(db, target) is None
        wait_for(lambda: status_of(db, target) == "done", what="the file to be tagged")
        assert tags.read_genres(target), "no genre written"
        # the tag write replaced the file (created + moved events): it must come back as
        # "unchanged", never as a new job
        wait_for(lambda: watcher.unchanged >= 1 and idle(watcher), what="the echo to be dropped")
        assert classifier.counts == Counter({str(target): 1})
        size, mtime = rows(db, "select size, mtime_ns from tracks where path = ?",
                           str(target))[0]
        st = target.stat()
        assert (size, mtime) == (st.st_size, st.st_mtime_ns)
        # a mere read does nothing either
        tags.read_genres(target)
        content_id(target)
        target.read_bytes()
        status = watcher.status()
        assert status["processed"] == 1 and status["failed"] == 0
    assert classifier.counts == Counter({str(target): 1})
    saved = json.loads(status_path(config).read_text())
    assert saved["state"] == "stopped" and saved["processed"] == 1


class BrokenClassifier:
    """Fault injection: a model step that raises, to show the daemon outlives it."""

    info = ModelInfo("broken", "b" * 64, ("jazz",))

    head_calibrator = None  # what the engine asks of a classifier besides its model

    def __init__(self):
        self.counts: Counter[str] = Counter()

    def classify_embedded(self, tracks):
        self.counts.update(t.path for t in tracks)
        raise ValueError("confidence must be a finite number, got nan")


def test_200_files_dropped_at_once_are_each_processed_exactly_once(setup, classifier):
    root, db, config = setup
    config = dataclasses.replace(config, scan=ScanConfig(workers=2))
    source = trumpet(root.parent / "source.ogg")
    with daemon([root], config, classifier=classifier) as watcher:
        for i in range(200):
            folder = root / f"Artist {i % 10}"
            folder.mkdir(exist_ok=True)
            shutil.copy(source, folder / f"track {i:03}.ogg")
        count_done = "select count(*) from tracks where status = 'done'"
        wait_for(lambda: rows(db, count_done)[0][0] == 200, timeout=300, what="200 files done")
        # every tag write echoes back as created+moved: each must be dropped as unchanged
        wait_for(lambda: watcher.unchanged >= 200 and idle(watcher), what="the echoes")
        assert len(classifier.counts) == 200 and set(classifier.counts.values()) == {1}
        assert rows(db, "select count(*) from predictions")[0][0] == 200
        assert rows(db, "select count(*) from tag_writes where field = 'GENRE'")[0][0] == 200
        assert all(tags.read_genres(p) == ["Jazz"] for p in root.rglob("*.ogg"))
        assert watcher.status()["processed"] == 200


def test_a_track_joining_an_album_re_decides_it_and_retags_through_the_journal(
        setup, classifier):
    """tags.scope = album in the daemon: a jazz track alone is its album (Jazz); two
    classical tracks joining the folder make the album Classical, and the Jazz tagger wrote
    on the first is replaced through the journal, without classifying it again."""
    from helpers.albums import picard_tags

    root, db, config = setup
    album = root / "Suite"

    def track(name: str, clip: str) -> Path:
        """A real clip moved into place, tagged as a track of the album "Suite"."""
        album.mkdir(exist_ok=True)
        tmp = album / f".in-{name}"
        shutil.copyfile(real_clip(clip), tmp)
        picard_tags(tmp, album="Suite", album_artist="Budapest Strings")
        tags.write_genres(tmp, [], None)
        os.replace(tmp, album / name)
        return album / name

    with daemon([root], config, classifier=classifier) as watcher:
        vibe = track("03 vibe ace.ogg", "Kevin_MacLeod_-_Vibe_Ace.ogg")
        wait_for(lambda: status_of(db, vibe) == "done" and idle(watcher), what="the first")
        assert tags.read_genres(vibe) == ["Jazz"]
        joining = [track(name, clip) for name, clip in (
            ("01 hungarian.ogg",
             "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg"),
            ("02 tchaikovsky.ogg",
             "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg"))]
        wait_for(lambda: tags.read_genres(vibe) == ["Classical"] and idle(watcher),
                 timeout=300, what="the album re-decided")
        assert [tags.read_genres(p) for p in joining] == [["Classical"], ["Classical"]]
        assert classifier.counts[str(vibe)] == 1
        album_row = rows(db, "select genre, members, voters, written, per_track "
                             "from albums where album_key = ?",
                         'tags:["budapest strings", "suite"]')
        assert album_row == [("classical", 3, 3, 3, None)]
        journal = rows(db, "select old_value, new_value from tag_writes where path = ? and "
                           "field = 'GENRE' order by id", str(vibe))
        assert journal == [(None, '["Jazz"]'), ('["Jazz"]', '["Classical"]')]


def test_an_internal_error_fails_the_files_instead_of_stopping_the_daemon(setup):
    root, db, config = setup
    classifier = BrokenClassifier()
    source = trumpet(root.parent / "source.ogg")
    with daemon([root], config, classifier=classifier) as watcher:
        shutil.copy(source, root / "a.ogg")
        wait_for(lambda: count(db, "select attempts from tracks where path = ?",
                               str(root / "a.ogg")) == 2, what="a failure and its retry")
        assert status_of(db, root / "a.ogg") == "failed"
        assert "internal error: ValueError" in watcher.status()["last_error"]["message"]
        shutil.copy(source, root / "b.ogg")  # still watching
        wait_for(lambda: status_of(db, root / "b.ogg") == "failed", what="the next file")


def test_events_the_kernel_dropped_are_recovered_by_the_rescan_an_overflow_starts(
        setup, classifier):
    import logging

    root, db, config = setup
    source = trumpet(root.parent / "source.ogg")
    with daemon([root], config, classifier=classifier) as watcher:
        lost = root / "lost.ogg"
        seen = watcher.on_event

        def lossy(root_, event, native):  # the kernel's queue overflowed: these never arrive
            if "lost" not in os.fsdecode(event.src_path) + os.fsdecode(event.dest_path or ""):
                seen(root_, event, native)

        watcher.on_event = lossy
        shutil.copy(source, lost)
        shutil.copy(source, root / "seen.ogg")
        wait_for(lambda: status_of(db, root / "seen.ogg") == "done", what="the file seen")
        assert status_of(db, lost) is None
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost")  # what watchdog does
        wait_for(lambda: status_of(db, lost) == "done", what="the rescan to find it")


# ---------------------------------------------------------------- moves and deletions


def test_rename_and_folder_move_update_paths_without_inference_and_deletion_marks_missing(
        setup, classifier, variants):
    root, db, config = setup
    a = trumpet(root / "Album" / "a.ogg", variants[0])
    b = trumpet(root / "Album" / "b.ogg", variants[1])
    with daemon([root], config, classifier=classifier) as watcher:
        wait_for(lambda: status_of(db, a) == status_of(db, b) == "done", what="initial scan")
        ids = dict(rows(db, "select path, id from tracks"))
        a2 = root / "Album" / "a renamed.ogg"
        os.rename(a, a2)
        wait_for(lambda: status_of(db, a2) == "done", what="the rename")
        assert status_of(db, a) is None
        album2 = root / "Other Artist" / "Album"  # into a folder made just before
        album2.parent.mkdir()
        os.rename(root / "Album", album2)
        a3, b3 = album2 / a2.name, album2 / b.name
        wait_for(lambda: status_of(db, a3) == status_of(db, b3) == "done",
                 what="the folder move")
        assert rows(db, "select count(*) from tracks")[0][0] == 2
        assert dict(rows(db, "select path, id from tracks")) == {
            str(a3): ids[str(a)], str(b3): ids[str(b)]}  # same rows, predictions kept
        assert {p for (p,) in rows(db, "select path from tag_writes")} == {str(a3), str(b3)}
        # into a folder made outside the library and moved in: the album is in it before
        # inotify can watch it, the case where watchdog 7.1 always loses the album's watch
        staging = root.parent / "staging" / "Third Artist"
        staging.mkdir(parents=True)
        os.rename(album2, staging / "Album")
        os.rename(staging, root / "Third Artist")
        album3 = root / "Third Artist" / "Album"
        a4, b4 = album3 / a2.name, album3 / b.name
        wait_for(lambda: status_of(db, a4) == status_of(db, b4) == "done",
                 what="the second folder move")
        assert dict(rows(db, "select path, id from tracks")) == {
            str(a4): ids[str(a)], str(b4): ids[str(b)]}
        assert watcher.status()["moved"] >= 4
        # the moved folder is watched: a deletion in it is seen, and a new file
        os.remove(b4)
        wait_for(lambda: status_of(db, b4) == "missing", what="the deletion")
        c = trumpet(album3 / "c.ogg", variants[2])
        wait_for(lambda: status_of(db, c) == "done", what="a new file in the moved folder")
        assert status_of(db, a4) == "done"
        wait_for(lambda: idle(watcher), what="an empty queue")
    assert classifier.counts == Counter({str(a): 1, str(b): 1, str(c): 1})  # no new inference
    assert rows(db, "select count(*) from predictions")[0][0] == 3


def test_an_emptied_root_pauses_instead_of_marking_the_library_missing(setup, classifier,
                                                                      variants):
    root, db, config = setup
    files = [trumpet(root / "Album" / f"{n}.ogg", variants[i]) for i, n in enumerate("ab")]
    nas = root.parent / "nas"  # a second root, not there at start (not mounted yet)
    with daemon([root, nas], config, classifier=classifier) as watcher:
        wait_for(lambda: all(status_of(db, f) == "done" for f in files), what="initial scan")
        shutil.rmtree(root / "Album")  # what an unmounted NAS looks like
        wait_for(lambda: str(root) in watcher.paused, what="the root to pause")
        assert [status_of(db, f) for f in files] == ["done", "done"]
        wait_for(lambda: json.loads(status_path(config).read_text())["paused"],
                 what="the status file to say so")
        # it comes back (remounted) with one file: resumes, and only then is the other missing
        (root / "Album").mkdir()
        shutil.copy2(variants[2], root / "Album" / "c.ogg")
        wait_for(lambda: not watcher.paused, what="the root to resume")
        wait_for(lambda: [status_of(db, f) for f in files] == ["missing", "missing"],
                 what="the reconcile after resuming")
        wait_for(lambda: status_of(db, root / "Album" / "c.ogg") == "done", what="the new file")
        # the root that was not there appears (mounted): it is watched from then on
        nas.mkdir()
        wait_for(lambda: watcher.is_watched(nas), what="the new root")
        late = trumpet(nas / "late.ogg", variants[3])
        wait_for(lambda: status_of(db, late) == "done", what="a file in the late root")
        assert not watcher.paused
    assert classifier.counts[str(files[0])] == 1


def test_young_broken_file_is_deferred_then_failed_and_retried_with_backoff(setup, classifier):
    root, db, config = setup
    broken = root / "broken.ogg"
    with daemon([root], config, classifier=classifier) as watcher:
        broken.write_bytes(b"not audio at all, only text named .ogg\n" * 50)
        wait_for(lambda: watcher.deferred >= 1, what="a deferral while young")
        assert status_of(db, broken) == "pending"
        wait_for(lambda: rows(db, "select attempts from tracks where path = ?", str(broken))
                 == [(2,)], what="a retry")  # retry_max_attempts = 2
        assert status_of(db, broken) == "failed"
        assert watcher.status()["last_error"]["message"].startswith(str(broken))
    assert not classifier.counts


# ---------------------------------------------------------------- model or genre map changes


def test_model_or_genre_change_requeues_only_the_affected_tracks(setup, classifier, model,
                                                                 variants):
    root, db, config = setup
    files = [trumpet(root / f"{n}.ogg", variants[i]) for i, n in enumerate("abc")]
    with daemon([root], config, classifier=classifier):
        wait_for(lambda: all(status_of(db, f) == "done" for f in files), what="first run")
    genre = tags.read_genres(files[0])[0].lower()  # the vocabulary form; files: title case
    assert classifier.counts == Counter({str(f): 1 for f in files})

    # one track's prediction now says it came from other weights
    con = sqlite3.connect(db)
    with con:
        con.execute("insert into models (name, sha256, vocabulary, created) "
                    "values ('old', ?, '[]', '2020-01-01')", ("0" * 64,))
        con.execute("update predictions set model_id = (select id from models where name = "
                    "'old') where track_id = (select id from tracks where path = ?)",
                    (str(files[1]),))
    con.close()
    with daemon([root], config, classifier=classifier) as watcher:
        wait_for(lambda: classifier.counts[str(files[1])] == 2, what="the requeue")
        wait_for(lambda: status_of(db, files[1]) == "done" and idle(watcher), what="done")
    assert classifier.counts == Counter({str(files[0]): 1, str(files[1]): 2, str(files[2]): 1})

    # a new genre map: every track is redone, and the genre tagger wrote itself is replaced
    from tagger.model.classify import Classifier

    renamed = dataclasses.replace(config, genres=GenreConfig(rename={genre: genre.upper() + "!"}))
    relabelled = CountingClassifier(Classifier(renamed))
    with daemon([root], renamed, classifier=relabelled) as watcher:
        wait_for(lambda: all(tags.read_genres(f) == [genre.upper() + "!"] for f in files),
                 what="the re-tagging")
        wait_for(lambda: idle(watcher), what="an empty queue")
    assert relabelled.counts == Counter({str(f): 1 for f in files})


# ---------------------------------------------------------------- observers


MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /mnt/nas rw,relatime shared:20 - cifs //nas/music rw,vers=3.0
41 22 0:36 / /mnt/nfs rw,relatime shared:21 - nfs4 server:/export rw
42 22 0:37 / /mnt/My\\040Box rw,nosuid shared:22 - fuse.sshfs me@box: rw
43 22 0:38 / /media/usb rw,nosuid shared:23 - fuseblk /dev/sdb1 rw
"""


def test_auto_observer_polls_network_mounts_and_when_watches_run_out(tmp_path):
    mounts = read_mounts(MOUNTINFO)
    assert ("/mnt/My Box", "fuse.sshfs") in mounts
    assert filesystem_type("/mnt/nas/Album/x.mp3", mounts) == "cifs"
    roots = ["/mnt/nas", "/mnt/nfs/music", "/mnt/My Box", "/media/usb", str(tmp_path)]
    chosen = choose_observers(roots, "auto", mounts, max_watches=10**6)
    assert {r: k for r, (k, _) in chosen.items()} == {
        "/mnt/nas": "polling", "/mnt/nfs/music": "polling", "/mnt/My Box": "polling",
        "/media/usb": "native", str(tmp_path): "native"}
    assert "cifs" in chosen["/mnt/nas"][1]
    for i in range(5):
        (tmp_path / f"d{i}").mkdir()
    few = choose_observers([str(tmp_path)], "auto", [("/", "ext4")], max_watches=100)
    assert few[str(tmp_path)][0] == "polling" and "max_user_watches" in few[str(tmp_path)][1]
    assert choose_observers(["/mnt/nas"], "native", mounts)["/mnt/nas"][0] == "native"


def test_a_folder_moved_in_inside_a_new_folder_is_watched_again(tmp_path):
    """watchdog 7.1 loses the watch of a folder that arrives inside a new folder (the album
    moved into an artist folder made outside the library, then that moved in): the count
    of watches after the folders changed finds it, and the root is watched afresh."""
    root, staging = tmp_path / "Music", tmp_path / "staging" / "Artist"
    (root / "Album").mkdir(parents=True)
    staging.mkdir(parents=True)
    seen = []
    observers = Observers(WatchConfig(observer="native"), lambda r, event, n: seen.append(event))
    observers.start([str(root)])
    try:
        time.sleep(FOLDERS_QUIET_S)
        assert observers.repair() == []  # nothing changed: nothing counted, nothing redone
        os.rename(root / "Album", staging / "Album")
        os.rename(staging, root / "Artist")
        assert wait_for(observers.repair, timeout=30, what="the lost watch") == [str(root)]
        new = root / "Artist" / "Album" / "new.ogg"
        new.write_bytes(b"seen?")
        wait_for(lambda: str(new) in {os.fsdecode(e.src_path) for e in list(seen)},
                 timeout=10, what="an event from the moved folder")
        (root / "Artist" / "Album" / "CD2").mkdir()  # a folder change: counted again
        time.sleep(2 * FOLDERS_QUIET_S)
        assert observers.repair() == []  # every folder watched: nothing redone
        assert wait_for(lambda: {os.fsdecode(e.src_path) for e in list(seen)}
                        >= {str(root / "Artist" / "Album" / "CD2")}, timeout=10,
                        what="the new folder's event")
    finally:
        observers.stop()


def test_auto_falls_back_to_polling_when_inotify_is_exhausted(setup, classifier, monkeypatch):
    import watchdog.observers.inotify as inotify

    def exhausted(*args, **kwargs):
        raise OSError(errno.EMFILE, "inotify instance limit reached")

    monkeypatch.setattr(inotify, "InotifyObserver", exhausted)
    root, db, config = setup
    config = dataclasses.replace(config, watch=dataclasses.replace(config.watch, observer="auto"))
    with daemon([root], config, classifier=classifier) as watcher:
        status = watcher.status()
        assert status["observers"][str(root)]["type"] == "polling"
        assert "inotify instance limit" in status["observers"][str(root)]["reason"]
        new = trumpet(root / "new.ogg")
        wait_for(lambda: status_of(db, new) == "done", what="the polled file")
    info = read_status(config)
    assert not info["running"] and "polling" in info["status"]["observer"]


# ---------------------------------------------------------------- the service


def start_service(config_file: Path, root: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TAGGER_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "tagger", "--config", str(config_file), "watch", "--workers",
         "1", str(root)],
        stdout=subprocess.DEVNULL, stderr=open(log, "ab"), env=env)


@pytest.mark.slow
def test_service_sigterm_second_writer_status_and_kill_9_resume_exactly_once(tmp_path, capsys,
                                                                            variants):
    root = tmp_path / "Music"
    files = [trumpet(root / f"Disc {i % 2}" / f"track {i:02}.ogg", source)
             for i, source in enumerate(variants)]
    db = tmp_path / "catalogue.sqlite"
    state = tmp_path / "state"
    config_file = tmp_path / "tagger.toml"
    # batches of two tracks: results are committed while the rest is still in the works
    # (track scope: in album scope a batch's tracks are all tagged at its album pass)
    config_file.write_text(f'database = "sqlite:///{db}"\nstate_dir = "{state}"\n'
                           f"[model]\nbatch_segments = 2\n[tags]\nmin_confidence = 0.0\n"
                           'scope = "track"\n'
                           f"[watch]\nsettle_seconds = {SETTLE}\n"
                           "[library]\nsettle_seconds = 1.0\n", encoding="utf-8")
    config = Config(database=f"sqlite:///{db}", state_dir=str(state))
    log = tmp_path / "daemon.log"
    done = "select count(*) from tracks where status = 'done'"

    def running() -> bool:
        return read_status(config)["running"]

    proc = start_service(config_file, root, log)
    try:
        wait_for(lambda: count(db, done) >= 1 or proc.poll() is not None,
                 what="the first file")
        assert proc.poll() is None, log.read_text()
        assert running()
        # a second writer is refused, clearly
        assert main(["--config", str(config_file), "scan", str(root)]) == 3
        assert "tagger watch" in capsys.readouterr().err
        assert main(["--config", str(config_file), "status"]) == 0
        shown = capsys.readouterr().out
        assert "tagger watch is running" in shown and "native (inotify)" in shown
        assert "queue:" in shown and "next rescan: 20" in shown

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # in the middle of the work
        assert proc.wait(timeout=60) == 0, log.read_text()
        assert time.monotonic() - started < 60
        assert not running()
        stopped_at = count(db, done)
        assert stopped_at < len(files), "finished before SIGTERM: the test proves nothing"
        assert count(db, "select count(*) from tracks where status = 'pending'") == \
            len(files) - stopped_at  # the rest is requeued in the catalogue
        assert main(["--config", str(config_file), "status"]) == 1
        assert "stopped cleanly" in capsys.readouterr().out

        # restart; kill -9 in the middle of the work; restart again
        before = count(db, done)
        proc = start_service(config_file, root, log)
        wait_for(lambda: count(db, done) > before or proc.poll() is not None,
                 what="progress after the restart")
        proc.kill()
        proc.wait(timeout=30)
        assert count(db, done) < len(files), "finished before kill -9: the test proves nothing"
        assert not running()
        proc = start_service(config_file, root, log)
        wait_for(lambda: count(db, done) == len(files) or proc.poll() is not None,
                 what="every file")
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # tagged exactly once: one prediction, one genre write in effect, the genre in the file
    assert rows(db, "select count(*) from predictions")[0][0] == len(files)
    writes = Counter(p for (p,) in rows(
        db, "select path from tag_writes where field = 'GENRE' and reverted_at is null"))
    assert writes == Counter({str(f): 1 for f in files})
    for f in files:
        genre = rows(db, "select genre from track_genres where path = ?", str(f))[0][0]
        assert [g.lower() for g in tags.read_genres(f)] == [genre]
    assert "Traceback" not in log.read_text()
