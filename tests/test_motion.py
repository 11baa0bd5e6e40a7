"""Files in motion: a library is alive, and a file another program is still writing is never
read for classification nor written (tagger.library.motion). Real writers run as their own
processes (helpers/slow_writer.py); every file is real music."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers.audio import real_clip

from tagger.audio.identity import content_id
from tagger.config import Config, LibraryConfig, ScanConfig, TagsConfig, WatchConfig
from tagger.library import tags
from tagger.library.catalogue import Catalogue
from tagger.library.motion import AtRest, FileInMotion, FileState, open_for_writing, writer_pids
from tagger.library.tags.safe_write import safe_rewrite
from tagger.results import FailureKind
from tagger.service.engine import make_engine
from tagger.service.scan import scan

TRUMPET = "sorohanro_-_solo-trumpet-06.ogg"
TIMEOUT = 120.0
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def classifier():
    from tagger.model.classify import Classifier

    return Classifier(Config())


def wait_for(predicate, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
    return value


@contextmanager
def holding_open(path: Path, mode: str = "ab"):
    """Another process that holds ``path`` open (``mode``) until the block ends."""
    code = ("import sys; f = open(sys.argv[1], sys.argv[2]); print('open', flush=True); "
            "sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path), mode],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


@contextmanager
def slow_writer(source: Path, target: Path, *, head: float, chunks: int, pause: float,
                reopen: bool = False):
    """helpers/slow_writer.py copying ``source`` to ``target``; yields once the head is
    written; the block's end waits for the copy to finish."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "helpers" / "slow_writer.py"), str(source), str(target),
         str(head), str(chunks), str(pause), "--reopen" if reopen else "--keep-open"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        yield proc
    finally:
        assert proc.wait(timeout=TIMEOUT) == 0


def track_row(db: Path, path: Path) -> tuple | None:
    with sqlite3.connect(db) as conn:
        return conn.execute("select status, failure_kind, error from tracks where path = ?",
                            (str(path),)).fetchone()


@pytest.fixture
def clip(tmp_path) -> Path:
    """A real recording with no genre of its own, at rest (its copy is an hour old)."""
    path = tmp_path / "source" / "trumpet.ogg"
    path.parent.mkdir()
    shutil.copyfile(real_clip(TRUMPET), path)
    tags.write_genres(path, [], None)
    hour_ago = time.time() - 3600
    os.utime(path, (hour_ago, hour_ago))
    return path


@pytest.fixture
def big_source(format_files) -> Path:
    """40 s of real music as MP3: a half-written copy of it still decodes (frames stand alone),
    which is what makes a copy in progress dangerous to classify and tag."""
    return format_files["mp3"]


# ---------------------------------------------------------------- telling a file in motion


def test_a_writer_in_another_process_is_seen_by_the_lease_and_by_proc(clip):
    assert not open_for_writing(str(clip))
    with holding_open(clip, "rb") as reader:  # a reader is no writer
        assert not open_for_writing(str(clip))
        assert reader.pid not in (writer_pids(str(clip)) or [])
    with holding_open(clip, "ab") as writer:
        assert open_for_writing(str(clip))
        assert writer.pid in writer_pids(str(clip))
    assert not open_for_writing(str(clip))
    assert writer_pids(str(clip)) == []


def test_a_file_open_for_writing_is_not_tagged_and_stays_byte_identical(clip):
    before = clip.read_bytes()
    with holding_open(clip):
        with pytest.raises(FileInMotion) as refused:
            tags.write_genres(clip, ["Jazz"], 0.8)
        assert refused.value.kind is FailureKind.BUSY
        assert "open for writing" in refused.value.message
    assert clip.read_bytes() == before
    assert not [p for p in clip.parent.iterdir() if p.name.startswith(".tagger-")]
    assert tags.write_genres(clip, ["Jazz"], 0.8)  # at rest again: written


def test_a_writer_arriving_during_the_tag_write_abandons_it(clip):
    """The last check before the rename: a program that opened the file for writing while
    tagger copied and edited it (and has not written yet) would lose what it writes next."""
    before = clip.read_bytes()
    holders = []

    def open_for_a_writer(temp: str) -> None:
        holders.append(holding_open(clip))
        holders[-1].__enter__()

    try:
        with pytest.raises(FileInMotion) as refused:
            safe_rewrite(str(clip), lambda f: (None, True), before_replace=open_for_a_writer)
    finally:
        for held in holders:
            held.__exit__(None, None, None)
    assert refused.value.kind is FailureKind.BUSY
    assert clip.read_bytes() == before
    assert not [p for p in clip.parent.iterdir() if p.name.startswith(".tagger-")]


def test_the_settle_time_and_the_file_that_was_read(clip):
    os.utime(clip)  # modified just now
    st = os.stat(clip)
    with pytest.raises(FileInMotion) as recent:
        tags.write_genres(clip, ["Jazz"], None, at_rest=AtRest(60.0))
    assert recent.value.kind is FailureKind.BUSY and "modified" in recent.value.message
    # a state already known to be at rest (tagger's own catalogued write) is not news
    settled = FileState.of(st)
    assert tags.write_genres(clip, ["Jazz"], None, at_rest=AtRest(60.0, settled=settled))
    # the write replaced the file: it is not the one that was read any more
    with pytest.raises(FileInMotion) as changed:
        tags.write_genres(clip, ["Rock"], None, at_rest=AtRest(expected=settled))
    assert changed.value.kind is FailureKind.CHANGED
    assert tags.read_genres(clip) == ["Jazz"]


def test_setuid_and_setgid_bits_survive_a_tag_write(clip):
    clip.chmod(0o6755)
    assert tags.write_genres(clip, ["Jazz"], None)
    assert os.stat(clip).st_mode & 0o7777 == 0o6755


# ---------------------------------------------------------------- a scan beside a live copy


def scan_config(tmp_path: Path, root: Path, settle: float) -> Config:
    return Config(database=f"sqlite:///{tmp_path / 'catalogue.sqlite'}",
                  state_dir=str(tmp_path / "state"),
                  library=LibraryConfig(roots=(str(root),), settle_seconds=settle),
                  scan=ScanConfig(workers=1), tags=TagsConfig(min_confidence=0.0),
                  watch=WatchConfig(settle_seconds=0.3))


def run_scan(config: Config, root: Path, classifier):
    with Catalogue(config.database_url) as catalogue:
        engine = make_engine(config, catalogue, classifier=classifier, workers=1)
        try:
            return scan([str(root)], config, catalogue, engine=engine)
        finally:
            engine.close()


@pytest.mark.parametrize("reopen", [False, True], ids=["kept-open", "reopened-per-chunk"])
def test_scan_leaves_a_file_being_copied_alone_then_tags_it_at_rest(
        tmp_path, big_source, classifier, reopen):
    """A copy still running when the scan comes by. Kept open with pauses longer than the
    settle time (cp, a browser): the writer is seen. Reopened for each chunk, with pauses
    shorter than the settle time (some download managers): its mtime is too young. Either
    way the copy ends byte-identical to its source, and the next scan after it is at rest
    tags it."""
    root = tmp_path / "Music"
    root.mkdir()
    target = root / "arriving.mp3"
    config = scan_config(tmp_path, root, settle=1.0)
    # shorter than the settle time, or long enough for the whole scan to run in the pause
    pause = 0.4 if reopen else 8.0
    with slow_writer(big_source, target, head=0.6, chunks=8 if reopen else 2, pause=pause,
                     reopen=reopen):
        if not reopen:
            time.sleep(1.3)  # its mtime is older than the settle time: only its writer shows
        summary = run_scan(config, root, classifier)
        assert summary.tagged == 0 and summary.failure_kinds == {"busy": 1}, summary
    assert target.read_bytes() == big_source.read_bytes(), "the copy was cut short"
    status, kind, error = track_row(tmp_path / "catalogue.sqlite", target)
    assert (status, kind) == ("failed", "busy") and "later" in error

    time.sleep(1.1)  # at rest now
    summary = run_scan(config, root, classifier)
    assert summary.tagged == 1, summary
    assert tags.read_genres(target)
    assert content_id(str(target)) == content_id(str(big_source))  # the audio is whole
    assert track_row(tmp_path / "catalogue.sqlite", target)[:2] == ("done", None)


# ---------------------------------------------------------------- a daemon starting beside one


def test_a_starting_watch_leaves_a_file_being_copied_alone_then_tags_it(
        tmp_path, big_source, classifier):
    from tagger.service.watch import Watcher

    root = tmp_path / "Music"
    root.mkdir()
    target = root / "arriving.mp3"
    config = scan_config(tmp_path, root, settle=1.0)
    db = tmp_path / "catalogue.sqlite"
    with slow_writer(big_source, target, head=0.6, chunks=3, pause=4.0):
        time.sleep(1.3)  # its mtime is older than the settle time: only its writer shows
        watcher = Watcher([str(root)], config, classifier=classifier, workers=1)
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        try:
            wait_for(watcher.started.is_set, "the daemon to start")
            # the start-up pass found it (pending), and left it for later
            wait_for(lambda: track_row(db, target) is not None, "the start-up pass")
            wait_for(lambda: watcher.deferred, "the file to be left for later")
        except BaseException:
            watcher.stop()
            raise
    try:
        assert target.read_bytes() == big_source.read_bytes(), "the copy was cut short"
        wait_for(lambda: (track_row(db, target) or ("",))[0] == "done", "the file to be tagged")
        assert tags.read_genres(target)
        assert content_id(str(target)) == content_id(str(big_source))
    finally:
        watcher.stop()
        thread.join(timeout=TIMEOUT)
