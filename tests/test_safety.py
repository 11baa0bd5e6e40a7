"""A hostile library and a hostile machine (issue #9): nothing written outside the library,
no original tag lost, no hang, no bypassed lock, no crash on absurd settings, private state."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from helpers.audio import real_clip
from helpers.library import at_rest

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
    at_rest(path)
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
    for p in made:  # (numba's compiled-kernel cache holds no data of the user's)
        if p.name != "numba-cache":
            assert p.stat().st_mode & 0o077 == 0, f"{p.name} is {p.stat().st_mode & 0o777:o}"


def test_an_embedding_cache_left_readable_by_all_is_made_private(env):
    lib, _, tmp = env
    add_track(lib / "a.ogg")
    state = tmp / "state" / "tagger"
    state.mkdir(parents=True, mode=0o700)
    cache = state / "embeddings.sqlite"
    sqlite3.connect(cache).close()  # as an older tagger left it: the umask's mode
    cache.chmod(0o644)
    assert main(["scan", str(lib)]) == 0
    assert cache.stat().st_mode & 0o777 == 0o600


def test_an_existing_open_state_dir_is_made_private(env):
    lib, _, tmp = env
    state = tmp / "state" / "tagger"
    state.mkdir(parents=True, mode=0o755)
    state.chmod(0o755)
    assert main(["scan", str(lib)]) == 0
    assert (state.stat().st_mode & 0o777) == 0o700


def _one_error_line(capsys) -> str:
    text = capsys.readouterr().err
    err = [line for line in text.splitlines() if "error" in line.lower()]
    assert len(err) == 1 and "Traceback" not in text, text
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


# ------------------------------------------------------------------ 1. symlinks out of the library


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder``: (inode, bytes)."""
    return {p.name: (p.stat().st_ino, p.read_bytes()) for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside the library, with a real track and a file that looks like our temp."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    add_track(folder / "victim.ogg", ["Rock"])
    (folder / ".tagger-0123456789abcdef.tmp").write_bytes(b"not ours to delete")
    return folder


def test_symlinks_to_outside_the_library_are_skipped_with_a_reason(env, outside, capsys):
    lib, db, tmp = env
    inner = add_track(lib / "inner.ogg", ["Rock"])
    os.symlink(outside / "victim.ogg", lib / "evil.ogg")  # a file link
    os.symlink(outside, lib / "Linked folder")  # a folder link
    before = snapshot(outside)
    assert main(["--config", always(tmp), "scan", "--db", db, str(lib)]) == 0
    assert snapshot(outside) == before  # same inodes, same bytes, temp look-alike still there
    assert tags.read_genres(inner) != ["Rock"]  # the library itself was tagged
    status = {p: (s, e) for p, s, e in rows(db, "select path, status, error from tracks")}
    assert status[str(lib / "evil.ogg")][0] == "skipped"
    assert "symlink to outside the library" in status[str(lib / "evil.ogg")][1]
    assert status[str(lib / "Linked folder")][0] == "skipped"
    assert not any("victim" in p for p in status if "Linked folder" in p)
    # a second scan does not call them missing
    assert main(["--config", always(tmp), "scan", "--db", db, str(lib)]) == 0
    assert rows(db, "select count(*) from tracks where status = 'missing'") == [(0,)]


def test_follow_symlinks_reads_outside_but_never_writes_there(env, outside):
    lib, db, tmp = env
    os.symlink(outside / "victim.ogg", lib / "evil.ogg")
    os.symlink(outside, lib / "Linked folder")
    config = tmp / "follow.toml"
    config.write_text('[library]\nfollow_symlinks = true\n[tags]\nwrite = "always"\n'
                      "min_confidence = 0.0\n", encoding="utf-8")
    before = snapshot(outside)
    assert main(["--config", str(config), "scan", "--db", db, str(lib)]) == 0
    assert snapshot(outside) == before
    done = dict(rows(db, "select path, status from tracks"))
    assert done[str(lib / "evil.ogg")] == "done"  # classified and catalogued
    assert done[str(lib / "Linked folder" / "victim.ogg")] == "done"
    assert rows(db, "select count(*) from tag_writes") == [(0,)]


def test_a_symlink_inside_the_library_is_followed_and_tagged(env):
    lib, db, tmp = env
    (lib / "Real").mkdir()
    real = add_track(lib / "Real" / "a.ogg", ["Rock"])
    os.symlink(real, lib / "alias.ogg")
    assert main(["--config", always(tmp), "scan", "--db", db, str(lib)]) == 0
    assert tags.read_genres(real) != ["Rock"] and (lib / "alias.ogg").is_symlink()


def test_revert_does_not_follow_a_symlink_swapped_in_to_outside(env, outside):
    lib, db, tmp = env
    track = add_track(lib / "a.ogg", ["Rock"])
    assert main(["--config", always(tmp), "scan", "--db", db, str(lib)]) == 0
    tags.write_genres(outside / "victim.ogg", tags.read_genres(track), None)  # same as tagged
    before = snapshot(outside)
    track.unlink()
    os.symlink(outside / "victim.ogg", track)
    assert main(["revert", "--db", db, "--all", "--force"]) == 1
    assert snapshot(outside) == before


# ------------------------------------------------------------------ 3. FIFOs and other non-files


def test_a_fifo_named_like_audio_is_skipped_by_scan_without_opening_it(env):
    lib, db, tmp = env
    os.mkfifo(lib / "x.flac")
    add_track(lib / "a.ogg")
    assert main(["scan", "--db", db, str(lib)]) == 0
    status = {p: (s, e) for p, s, e in rows(db, "select path, status, error from tracks")}
    assert status[str(lib / "x.flac")][0] == "skipped" and "FIFO" in status[str(lib / "x.flac")][1]
    assert status[str(lib / "a.ogg")][0] == "done"


def start_watch(lib: Path, db: str, tmp: Path):
    """A Watcher on ``lib`` in a thread: (watcher, thread, errors)."""
    import threading

    from tagger.config import Config, ScanConfig, TagsConfig, WatchConfig
    from tagger.service.watch import Watcher

    config = Config(database=db, state_dir=str(tmp / "state"), scan=ScanConfig(workers=1),
                    tags=TagsConfig(min_confidence=0.0),
                    watch=WatchConfig(settle_seconds=0.3, observer="native"))
    watcher = Watcher([str(lib)], config)
    errors: list[BaseException] = []

    def run():
        try:
            watcher.run()
        except BaseException as exc:  # noqa: BLE001 - checked by the test
            errors.append(exc)
            watcher.started.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert watcher.started.wait(120), "the daemon did not start"
    assert not errors, errors
    return watcher, thread, errors


def wait_rows(db: str, predicate, timeout: float = 120.0) -> dict:
    import time

    deadline = time.monotonic() + timeout
    got: dict = {}
    while time.monotonic() < deadline:
        try:
            got = dict(rows(db, "select path, status from tracks"))
        except sqlite3.OperationalError:
            got = {}
        if predicate(got):
            break
        time.sleep(0.2)
    return got


def test_a_fifo_appearing_under_watch_does_not_block_the_daemon(env):
    import time

    lib, db, tmp = env
    watcher, thread, errors = start_watch(lib, db, tmp)
    try:
        os.mkfifo(lib / "x.flac")
        time.sleep(1.0)  # the FIFO is taken first
        later = add_track(lib / "later.ogg")
        got = wait_rows(db, lambda got: got.get(str(later)) == "done"
                        and str(lib / "x.flac") in got)
        assert got.get(str(later)) == "done", got
        assert got[str(lib / "x.flac")] == "skipped"
    finally:
        watcher.stop()
        thread.join(60)
    assert not thread.is_alive(), "the daemon did not stop"
    assert not errors, errors


# ------------------------------------------------------------------ 6. the catalogue deleted


def test_deleting_the_catalogue_under_the_daemon_stops_it_with_a_clear_error(env):
    lib, db, tmp = env
    first = add_track(lib / "first.ogg")
    watcher, thread, errors = start_watch(lib, db, tmp)
    try:
        assert wait_rows(db, lambda got: got.get(str(first)) == "done").get(str(first)) == "done"
        path = Path(db.removeprefix("sqlite:///"))
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)
        add_track(lib / "second.ogg")
        thread.join(120)
        assert not thread.is_alive(), "the daemon went on writing to a deleted catalogue"
    finally:
        watcher.stop()
        thread.join(60)
    assert errors and "deleted or replaced" in str(errors[0]), errors


# ------------------------------------------------------------------ 11. names that are not UTF-8


def test_a_name_that_is_not_utf8_gets_a_failed_row_with_a_reason(env):
    lib, db, tmp = env
    bad = os.path.join(os.fsencode(lib), b"caf\xe9.ogg")
    shutil.copy(real_clip(CLIP), bad)
    assert main(["scan", "--db", db, str(lib)]) == 1
    (path, status, error), = rows(db, "select path, status, error from tracks")
    assert status == "failed" and "UTF-8" in error and path.endswith("caf\\xe9.ogg")
    assert main(["scan", "--db", db, str(lib)]) == 1  # still failed, never "missing"
    assert rows(db, "select status from tracks") == [("failed",)]


# ------------------------------------------------------------------ 7. kill -9 leaves nothing


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    children = {int(c) for c in f.read().split()}
            except FileNotFoundError:
                continue
            todo += list(children - found)
            found |= children
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def test_kill_9_of_a_scan_leaves_no_process_and_no_temp_folder_behind():
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    base = Path(tempfile.mkdtemp(prefix="tg9-", dir="/tmp"))  # short: the socket path limit
    try:
        lib = base / "lib"
        lib.mkdir()
        for i in range(12):
            add_track(lib / f"t{i:02}.ogg")
        env = {**os.environ, "XDG_STATE_HOME": str(base / "st")}
        cmd = [sys.executable, "-m", "tagger", "scan", "--workers", "2", str(lib)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        temp = base / "st" / "tagger" / "tmp" / str(proc.pid)
        deadline = time.monotonic() + 120
        family: set[int] = set()
        while time.monotonic() < deadline:  # the fork server and both workers are up
            family |= descendants(proc.pid)
            if len(family) >= 3 and list(temp.glob("pymp-*")):
                break
            time.sleep(0.1)
        assert len(family) >= 3 and list(temp.glob("pymp-*")), family
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(alive(p) for p in family):
            time.sleep(0.1)
        assert not [p for p in family if alive(p)], "processes outlived the scan"
        # its temp folder is in the state dir, and the next run clears it
        assert subprocess.run(cmd, env=env, capture_output=True, timeout=300).returncode == 0
        assert not temp.exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------ 11. smaller ones


def test_a_scan_marks_a_write_interrupted_before_it_happened_reverted(env):
    """A kill between recording the planned change and writing the file: scan reconciles."""
    from tagger.library.catalogue import open_catalogue

    lib, db, tmp = env
    track = add_track(lib / "a.ogg", ["Rock"])
    st = track.stat()
    with open_catalogue(db) as catalogue:
        catalogue.mark_pending(str(track), st.st_size, st.st_mtime_ns)
        catalogue.record_tag_changes(str(track), [
            tags.TagChange(str(track), "GENRE", ("Rock",), ("jazz",))])
    never = tmp / "never.toml"
    never.write_text('[tags]\nwrite = "never"\n', encoding="utf-8")
    assert main(["--config", str(never), "scan", "--db", db, str(lib)]) == 0
    assert rows(db, "select count(*) from tag_writes where reverted_at is null") == [(0,)]
    assert tags.read_genres(track) == ["Rock"]


def wav_of_clip(out: Path, *metadata: str) -> Path:
    from helpers.audio import encoding_ffmpeg, ffmpeg_run

    exe = encoding_ffmpeg("pcm_s16le")
    if exe is None:
        pytest.skip("no ffmpeg")
    ffmpeg_run(exe, "-i", str(real_clip(CLIP)), *metadata, "-c:a", "pcm_s16le", str(out))
    out.chmod(0o644)
    return out


def test_a_wav_genre_in_riff_info_counts_as_the_users(env):
    lib, db, tmp = env
    wav = wav_of_clip(lib / "a.wav", "-metadata", "genre=Flamenco")
    assert b"IGNR" in wav.read_bytes()
    assert tags.read_genres(wav) == ["Flamenco"]
    before = wav.read_bytes()
    assert main(["scan", "--db", db, str(lib)]) == 0  # if_empty: the user's genre stays
    assert wav.read_bytes() == before


def test_a_sparse_file_is_not_made_dense_by_a_tag_write(env):
    from helpers.audio import MASTER_CLIP

    lib, db, tmp = env
    sparse = lib / "sparse.wav"
    shutil.copy(real_clip(MASTER_CLIP), tmp / "master.ogg")
    from helpers.audio import encoding_ffmpeg, ffmpeg_run

    ffmpeg_run(encoding_ffmpeg("pcm_s16le"), "-t", "40", "-i", str(tmp / "master.ogg"),
               "-ar", "44100", "-ac", "2", "-c:a", "pcm_s16le", str(tmp / "plain.wav"))
    data = (tmp / "plain.wav").read_bytes()
    at = data.index(b"data") + 8
    hole = 2 << 20  # 12 s of trailing silence that takes no disk space
    header = bytearray(data[:at])
    header[at - 4:at] = (len(data) - at + hole).to_bytes(4, "little")
    header[4:8] = (len(data) - 8 + hole).to_bytes(4, "little")
    with open(sparse, "wb") as f:
        f.write(header + data[at:])
        f.truncate(len(data) + hole)
    sparse.chmod(0o644)
    at_rest(sparse)
    st = sparse.stat()
    with open(sparse, "rb") as f:
        if os.lseek(f.fileno(), 0, os.SEEK_HOLE) >= st.st_size:
            pytest.skip("this file system does not keep holes")
    assert main(["scan", "--db", db, str(lib)]) == 1
    after = sparse.stat()
    assert (after.st_ino, after.st_blocks, after.st_size) == (st.st_ino, st.st_blocks, st.st_size)
    (status, error), = rows(db, "select status, error from tracks")
    assert status == "failed" and "sparse" in error


# ------------------------------------------------------------------ 5. inotify watches run out


def _watch_in_small_userns(tmp: Path, lib: Path, observer: str, watches: int):
    """`tagger watch` in a user namespace whose inotify watch limit is ``watches`` (a child
    namespace's own limit: the machine's setting is not touched)."""
    import shlex
    import subprocess
    import sys

    if subprocess.run(["unshare", "-U", "-r", "true"], capture_output=True).returncode != 0:
        pytest.skip("no user namespaces here")
    config = tmp / f"{observer}.toml"
    config.write_text(f'database = "sqlite:///{tmp}/{observer}.sqlite"\n'
                      f'state_dir = "{tmp}/state-{observer}"\n'
                      f'[watch]\nobserver = "{observer}"\nsettle_seconds = 0.5\n'
                      "poll_interval_seconds = 1.0\n", encoding="utf-8")
    tagger = " ".join(map(shlex.quote, [sys.executable, "-m", "tagger", "--config", str(config),
                                        "watch", "--workers", "1", str(lib)]))
    script = f"echo {watches} > /proc/sys/user/max_inotify_watches && exec {tagger}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TAGGER_CONFIG", None)
    return subprocess.Popen(["unshare", "-U", "-r", "sh", "-c", script], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def many_folders(env):
    lib, db, tmp = env
    for i in range(40):
        (lib / f"Album {i:02}").mkdir()
    add_track(lib / "Album 00" / "a.ogg")
    return lib, tmp


def _says_watches_refused(err: str) -> bool:
    """The one wording, whether watchdog raised while adding the watches (it takes back
    those it had: how many were refused is unknown) or the count found folders left out
    afterwards; 41 folders: the 40 albums and the root."""
    import re

    return bool(re.search(r"inotify watch limit reached: (some of the|\d+ of) 41 folders "
                          "could not be watched", err))


def test_native_watch_with_too_few_inotify_watches_stops_with_exit_3(many_folders):
    lib, tmp = many_folders
    proc = _watch_in_small_userns(tmp, lib, "native", watches=20)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err
    assert _says_watches_refused(err) and "Traceback" not in err, err


def test_auto_watch_with_too_few_inotify_watches_polls_instead(many_folders):
    import signal
    import time

    lib, tmp = many_folders
    proc = _watch_in_small_userns(tmp, lib, "auto", watches=20)
    db = f"sqlite:///{tmp}/auto.sqlite"
    try:
        late = None
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline and proc.poll() is None:
            got = {}
            try:
                got = dict(rows(db, "select path, status from tracks"))
            except sqlite3.OperationalError:
                pass
            if late is None and got.get(str(lib / "Album 00" / "a.ogg")) == "done":
                late = add_track(lib / "Album 39" / "late.ogg")  # a folder inotify missed
            if late is not None and got.get(str(late)) == "done":
                break
            time.sleep(0.3)
        assert late is not None and got.get(str(late)) == "done", got
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert "polling" in err and _says_watches_refused(err), err


# ------------------------------------------------------------------ 8. what a terminal is shown

#: an ESC sequence that turns text red, one that sets the window title (ended by BEL), a
#: newline that would forge a line of output, a carriage return, a right-to-left override
EVIL = "\x1b[31mred\x1b]0;pwned\x07\nforged line\r\u202eevil"


def assert_harmless(text: str, what: str) -> None:
    """Nothing in ``text`` drives a terminal or forges a line: the evil parts escaped."""
    for char in ("\x1b", "\x07", "\r", "\u202e"):
        assert char not in text, (what, char, text)
    assert not any(line.startswith("forged line") for line in text.splitlines()), (what, text)


def test_escapes_and_newlines_in_names_and_tags_are_printed_escaped(tmp_path, capsys):
    """A file whose name, artist, album and genre hold terminal escapes and newlines (issue
    #24): every command that prints them (scan's lines and log, show, list, stats, classify,
    set-genre) prints them escaped; --json keeps them exact."""
    import json
    import subprocess
    import sys

    import mutagen

    lib = tmp_path / f"lib{EVIL}"
    lib.mkdir()
    song = lib / f"{EVIL}.ogg"
    shutil.copy(real_clip(CLIP), song)
    song.chmod(0o644)
    audio = mutagen.File(song)
    audio["ARTIST"], audio["ALBUM"], audio["GENRE"] = [EVIL], [EVIL], [f"Jazz{EVIL}"]
    audio.save()
    broken = lib / f"broken{EVIL}.mp3"
    broken.write_text("not audio\n", encoding="utf-8")
    for path in (song, broken):  # copied long ago: at rest, as a user's library is
        os.utime(path, (os.stat(path).st_atime, os.stat(path).st_mtime - 3600))
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    scan = subprocess.run([sys.executable, "-m", "tagger", "scan", "--db", db, "--workers", "1",
                           str(lib)], env=env, capture_output=True, text=True, timeout=600)
    assert scan.returncode == 1, scan.stderr  # the broken file failed
    assert_harmless(scan.stdout + scan.stderr, "scan")
    assert "lib\\x1b[31mred" in scan.stderr  # the "scanning ROOT" line, escaped
    assert "broken\\x1b[31mred" in scan.stderr  # the failure's log line
    assert rows(db, "select count(*) from tracks where path = ?", str(song)) == [(1,)]

    escaped = "\\x1b[31mred\\x1b]0;pwned\\x07\\nforged line\\r\\u202eevil"
    for argv in (["show", str(song)], ["show", str(lib)], ["list", "--low", "1.0"],
                 ["list", "--failed"], ["stats"], ["classify", str(song)],
                 ["set-genre", str(song), "Jazz"]):
        code = main(argv if argv[0] == "classify" else [argv[0], "--db", db, *argv[1:]])
        out = capsys.readouterr()
        assert code in (0, 1), (argv, out.err)
        assert_harmless(out.out + out.err, argv[0])
        if argv[0] != "stats":  # its genres are the model's; its reasons name no file
            assert "\\nforged line\\r\\u202eevil" in out.out, (argv, out.out)
    assert main(["show", "--db", db, str(song)]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == str(song).replace(EVIL, escaped)
    assert f"tags: artist {escaped}, album {escaped}" in "\n".join(shown)

    # the song is judged now (set-genre) and has left the queues; the broken file has not
    assert main(["list", "--db", db, "--failed", "--json"]) == 0
    (listed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed["path"] == str(broken)  # exact
