"""Run tagger's CLI in a new Python process, and see what that process loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

#: the decode stack: librosa, its numba/llvmlite/scipy, FFmpeg's libraries, soxr
DECODE_STACK = ("librosa", "numba", "llvmlite", "scipy", "av", "soxr")


def run_cli_apart(argv: list[str], state_dir: Path, modules: tuple[str, ...] = DECODE_STACK,
                  ) -> tuple[int, list[str], list[str], str]:
    """``main(argv)`` in a new process with its own state dir: its exit code, the
    ``modules`` (default :data:`DECODE_STACK`) it had loaded by the end, its output lines,
    its stderr."""
    script = ("import json, sys\nfrom tagger.cli import main\n"
              f"code = main({argv!r})\n"
              f"heavy = {modules!r}\n"
              "print(json.dumps([code, sorted(m for m in heavy if m in sys.modules)]))\n")
    env = {**os.environ, "XDG_STATE_HOME": str(state_dir)}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=600)
    lines = run.stdout.strip().splitlines()
    code, loaded = json.loads(lines[-1])
    return code, loaded, lines[:-1], run.stderr


def descendants(pid: int) -> list[int]:
    """The process ids of ``pid``'s children, their children, and so on (from /proc)."""
    parents = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, ppid in parents.items() if ppid == parent]
        found += kids
        todo += kids
    return found
