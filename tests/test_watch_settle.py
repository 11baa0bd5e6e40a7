"""The daemon's settle table on its own: real files, a clock the test moves."""

from __future__ import annotations

import os

from tagger.service.watch import SettleQueue

SETTLE, GRACE = 1.0, 10.0


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(tmp_path):
    clock = Clock()
    return SettleQueue(SETTLE, GRACE, clock=clock), clock


def test_a_file_is_taken_once_quiet_and_unchanged(tmp_path):
    queue, clock = make(tmp_path)
    song = tmp_path / "a.ogg"
    song.write_bytes(b"x" * 10)
    queue.touch(str(song))
    assert queue.take_ready(10) == []  # not quiet yet
    clock.now += SETTLE / 2
    song.write_bytes(b"x" * 20)  # still being written: its stat differs when it is due
    clock.now += SETTLE
    assert queue.take_ready(10) == []  # changed: settles again from now
    assert str(song) in queue
    clock.now += SETTLE
    st = os.stat(song)
    assert queue.take_ready(10) == [(str(song), (st.st_size, st.st_mtime_ns), False)]
    assert len(queue) == 0


def test_an_open_write_waits_for_its_close_or_the_grace(tmp_path):
    queue, clock = make(tmp_path)
    song = tmp_path / "a.ogg"
    song.write_bytes(b"x")
    queue.touch(str(song), writing=True)
    clock.now += 2 * SETTLE
    assert queue.take_ready(10) == []
    queue.touch(str(song), closed=True)
    clock.now += SETTLE
    assert [p for p, _, _ in queue.take_ready(10)] == [str(song)]
    queue.touch(str(song), writing=True, retry=True)
    clock.now += GRACE
    assert queue.take_ready(10) == [(str(song), queue_stat(song), True)]


def queue_stat(path):
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def test_renames_carry_the_entry_and_deletions_wait_for_a_quiet_root(tmp_path):
    queue, clock = make(tmp_path)
    root = str(tmp_path)
    (tmp_path / "Album").mkdir()
    a, b = tmp_path / "Album" / "a.ogg", tmp_path / "Album" / "b.ogg"
    a.write_bytes(b"a")
    queue.touch(str(a))
    os.rename(a, b)
    queue.file_renamed(str(a), str(b), move=True)
    assert queue.waiting() == {str(b)}
    queue.dir_renamed(str(tmp_path / "Album"), str(tmp_path / "Other"))
    assert queue.waiting() == {str(tmp_path / "Other" / "b.ogg")}
    assert queue.take_moves() == [(str(a), str(b), False),
                                  (str(tmp_path / "Album"), str(tmp_path / "Other"), True)]
    queue.deleted(str(tmp_path / "Other"), is_dir=True)  # drops what waited under it
    assert queue.waiting() == set()
    root_of = lambda p: root if p.startswith(root) else None  # noqa: E731
    assert queue.take_deletes(root_of) == {}  # the root is not quiet yet
    clock.now += SETTLE
    queue.deleted("/elsewhere/c.ogg", is_dir=False)  # under no root: dropped
    assert queue.take_deletes(root_of) == {
        root: {str(tmp_path / "Other"): (clock.now - SETTLE, True)}}
    assert len(queue) == 0
