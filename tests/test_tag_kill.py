"""SIGKILL during tag writes: every file is always either its state before the write or the
fully written one, byte for byte, and always parses.

Each iteration starts a child process that advances every file by exactly one write
(alternating between two genre states, see helpers/tag_kill_child.py) and kills it with
SIGKILL after a random delay spread over the time those writes take (the window adapts to
the machine so that about three kills in four land mid-round). Most children are
forked from the test process (cheap, so there can be many kills); some are fresh
interpreters started with subprocess, like the daemon would be. Because a write's
result depends only on the bytes it starts from, the parent precomputes the chain of
byte-exact states every file can be in, and after each kill checks that each file is either
the state it had before the iteration or the next one -- never anything in between. Stale
temp files a kill leaves are swept (and counted: the test insists some kills did land in
the middle of a write).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mutagen
import pytest
from helpers import tagfiles
from helpers.tag_kill_child import STATE_A, STATE_B, advance

from tagger.library.tags import read_genres, sweep_stale_temp_files

ROOT = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).parent / "helpers"
CHILD_ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # the child imports this checkout's tagger

KILL_FORMATS = ("mp3", "flac", "ogg", "opus", "m4a", "wav", "wma")
FORKED_ITERATIONS = 120
EXEC_ITERATIONS = 15
MIN_ITERATIONS = 100
TIME_BUDGET_S = 45.0  # stop early (after the minimum) rather than run past ~60 s


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return tagfiles.media(tmp_path_factory)


def _state_chain(src: Path, scratch: Path) -> tuple[list[bytes], list[int], float]:
    """All byte states reachable by repeated advance(), successor indices, and write time."""
    shutil.copyfile(src, scratch)
    states = [scratch.read_bytes()]
    successor: list[int] = []
    elapsed = 0.0
    while True:
        t0 = time.perf_counter()
        advance(str(scratch))
        elapsed = max(elapsed, time.perf_counter() - t0)
        data = scratch.read_bytes()
        if data in states:
            successor.append(states.index(data))
            break
        successor.append(len(states))
        states.append(data)
        assert len(states) < 10, "writes never settle into a cycle"
    scratch.unlink()
    return states, successor, elapsed


def _run_and_kill(how: str, files: list[Path], delay: float) -> bool:
    """Start a child advancing every file once, SIGKILL it after ``delay``; True if killed."""
    if how == "fork":
        pid = os.fork()
        if pid == 0:  # child: write, then leave without running any of the parent's cleanup
            code = 1
            try:
                for path in files:
                    advance(str(path))
                code = 0
            finally:
                os._exit(code)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)  # a child that already exited is a zombie: no error
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            assert os.WTERMSIG(status) == signal.SIGKILL
            return True
        assert os.WEXITSTATUS(status) == 0, "forked writer failed"
        return False
    child = subprocess.Popen(
        [sys.executable, str(HELPERS / "tag_kill_child.py"), *map(str, files)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV,
    )
    try:
        line = child.stdout.readline()
        assert line.strip() == "ready", child.stderr.read()
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()
    if child.returncode == -signal.SIGKILL:
        return True
    assert child.returncode == 0, f"child failed: {child.returncode}"
    return False


def _expected_genres(state_index: int, initial: list[str]) -> list[str]:
    if state_index == 0:
        return initial
    # states alternate A, B, A, B ... after the original
    return STATE_A[0] if state_index % 2 == 1 else STATE_B[0]


def test_sigkill_during_writes_never_leaves_a_half_written_file(media, tmp_path):
    work = tmp_path / "library"
    work.mkdir()
    scratch_dir = tmp_path / "scratch"
    scratch_dir.mkdir()

    files, chains, successors, initial = [], [], [], []
    round_time = 0.0
    for fmt in KILL_FORMATS:
        src = media.path(fmt, "full")
        states, successor, write_time = _state_chain(src, scratch_dir / src.name)
        # the chain must alternate exactly as _expected_genres assumes
        for i, data in enumerate(states):
            probe = scratch_dir / f"probe{src.suffix}"
            probe.write_bytes(data)
            assert read_genres(probe) == _expected_genres(i, ["Jazz"]), (fmt, i)
        dst = work / src.name
        shutil.copyfile(src, dst)
        files.append(dst)
        chains.append(states)
        successors.append(successor)
        initial.append(read_genres(dst))
        round_time += write_time
    current = [0] * len(files)

    rng = random.Random(20240601)
    started = time.monotonic()
    stats = {"interrupted": 0, "advanced": 0, "stale_temps": 0, "completed_rounds": 0}
    iterations = 0
    span = round_time
    plan = ["exec"] * EXEC_ITERATIONS + ["fork"] * FORKED_ITERATIONS
    rng.shuffle(plan)
    for iteration, how in enumerate(plan):
        if iteration >= MIN_ITERATIONS and time.monotonic() - started > TIME_BUDGET_S:
            break
        delay = rng.uniform(0.0, span)
        killed = _run_and_kill(how, files, delay)
        # adapt the window to how long a child's round really takes here (fsync speed
        # varies a lot between machines): about one child in four finishes its round
        span = span * 1.04 if killed else span * 0.88
        iterations += 1
        stats["interrupted" if killed else "completed_rounds"] += 1

        for i, path in enumerate(files):
            data = path.read_bytes()
            before, after = current[i], successors[i][current[i]]
            assert data in (chains[i][before], chains[i][after]), (
                f"iteration {iteration}: {path.name} is neither its state before the write "
                f"nor the fully written one"
            )
            now = before if data == chains[i][before] else after
            assert mutagen.File(path) is not None
            assert read_genres(path) == _expected_genres(now, initial[i])
            if now != before:
                stats["advanced"] += 1
            current[i] = now

        swept = sweep_stale_temp_files(work)
        stats["stale_temps"] += len(swept)
        assert sorted(p.name for p in work.iterdir()) == sorted(p.name for p in files)

    assert iterations >= MIN_ITERATIONS
    # the kills must actually have hit writes in progress, and writes must have completed
    assert stats["interrupted"] >= iterations // 2, stats
    assert stats["stale_temps"] > 0, stats
    assert stats["advanced"] > 0, stats
    print(f"\nkill test: {iterations} iterations, {stats}, round ~{round_time * 1000:.1f} ms, "
          f"final window {span * 1000:.1f} ms")
