"""`tagger watch` idle memory, time to the first tag on an idle daemon, one-file start-up.

    python bench/daemon.py [--compare DIR ...] [--idle 60] [--release 20] [--runs 5] [--write]

Runs the command line as a user does (``python -m tagger``, a fresh ``HOME`` for each run)
on the code of this checkout, and with ``--compare DIR`` on a second tree too (e.g. ``git
archive main | tar -x -C DIR``), both in the same run, interleaved:

* idle memory: ``tagger watch`` on an empty folder; every few seconds the PSS of all its
  processes (the daemon, the decode workers' fork server, the workers: the process tree, as
  ``/proc/PID/smaps_rollup`` counts it), for ``--idle`` seconds. A tree that knows
  ``watch.idle_release_seconds`` runs with it set to ``--release``;
* time to the first tag: then a real clip (tests/data, its genre tag removed) is copied in,
  and the time from its close to its genre tag being in the file (read with mutagen) is
  taken; ``watch.settle_seconds`` and ``library.settle_seconds`` are 1 s, and
  ``service.priority`` is normal (at low, the daemon waits for whatever else runs);
* one-file start-up: ``tagger classify FILE``, a new process each time (the disk cache and
  numba's cache warm: one run first, not counted), the median wall time of ``--runs``.

The machine may be shared: figures are medians, and both trees run side by side.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import write_section

REPO = Path(__file__).resolve().parent.parent
CLIP = REPO / "tests" / "data" / "sorohanro_-_solo-trumpet-06.ogg"
CLASSIFY_CLIP = REPO / "tests" / "data" / "Kevin_MacLeod_-_Vibe_Ace.ogg"
SETTLE_S = 1.0


# ---------------------------------------------------------------- processes and memory


def children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    tree, found, todo = children(), [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(tree.get(p, []))
    return found


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss_mb(pid: int) -> tuple[float, int]:
    """PSS of ``pid``'s process tree in MB, and how many processes it has."""
    pids = process_tree(pid)
    return sum(pss_kb(p) for p in pids) / 1024, len(pids)


# ---------------------------------------------------------------- running a tree's code


def environment(tree: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XDG_", "TAGGER_", "NUMBA_"))}
    env.update(HOME=str(home), PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
    return env


def knows_idle_release(tree: Path) -> bool:
    return "idle_release_seconds" in (tree / "tagger" / "config.py").read_text()


def write_config(home: Path, tree: Path, release: float) -> Path:
    # normal priority: at "low" (the default) the daemon waits for the other work on a
    # shared machine, and the bench would time that work
    lines = ["[service]", 'priority = "normal"', "[library]", f"settle_seconds = {SETTLE_S}",
             "[watch]", f"settle_seconds = {SETTLE_S}"]
    if knows_idle_release(tree):
        lines.append(f"idle_release_seconds = {release}")
    config = home / "tagger.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def genre_of(path: Path) -> str | None:
    import mutagen

    try:
        audio = mutagen.File(path, easy=True)
    except Exception:  # noqa: BLE001 - a half-written file: not yet
        return None
    values = (audio or {}).get("genre") or []
    return values[0] if values else None


def untagged_clip(work: Path) -> Path:
    import mutagen

    clip = work / "clip.ogg"
    shutil.copyfile(CLIP, clip)
    audio = mutagen.File(clip, easy=True)
    audio.pop("genre", None)
    audio.save()
    return clip


def daemon_run(tree: Path, idle_s: float, release_s: float, every_s: float) -> dict:
    """Idle PSS of ``tagger watch`` on an empty folder over ``idle_s``, then the time from a
    clip's close to its tag, then the PSS while it holds the model again."""
    home = Path(tempfile.mkdtemp(prefix="tagger-daemon-bench-"))
    try:
        root = home / "Music"
        root.mkdir()
        clip = untagged_clip(home)
        config = write_config(home, tree, release_s)
        log = open(home / "watch.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "tagger", "--config", str(config),
                                 "watch", str(root)], env=environment(tree, home), cwd=home,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            state = home / ".local" / "state" / "tagger"
            started = time.monotonic()
            while b'"watching"' not in b"".join(p.read_bytes()
                                                for p in state.glob("watch-*.json")):
                if proc.poll() is not None or time.monotonic() - started > 300:
                    raise SystemExit(f"not started: {(home / 'watch.log').read_text()}")
                time.sleep(0.2)
            start_s = time.monotonic() - started
            samples = []
            t0 = time.monotonic()
            while (elapsed := time.monotonic() - t0) < idle_s:
                samples.append((elapsed, *tree_pss_mb(proc.pid)))
                time.sleep(every_s)
            samples.append((time.monotonic() - t0, *tree_pss_mb(proc.pid)))
            target = root / "dropped.ogg"
            with open(clip, "rb") as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            closed = time.monotonic()
            while genre_of(target) is None:
                if time.monotonic() - closed > 300 or proc.poll() is not None:
                    raise SystemExit(f"no tag: {(home / 'watch.log').read_text()}")
                time.sleep(0.05)
            first_tag_s = time.monotonic() - closed
            time.sleep(1.0)
            busy = tree_pss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        return {"start_s": start_s, "samples": samples, "first_tag_s": first_tag_s,
                "busy": busy, "release": knows_idle_release(tree)}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def classify_once(tree: Path, home: Path) -> float:
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "tagger", "classify", str(CLASSIFY_CLIP)],
                         env=environment(tree, home), cwd=home, capture_output=True, text=True,
                         timeout=600)
    took = time.monotonic() - started
    if run.returncode != 0 or "jazz" not in run.stdout:
        raise SystemExit(f"classify failed in {tree}: {run.stdout}{run.stderr}")
    return took


# ---------------------------------------------------------------- report


def memory_line(samples) -> str:
    return ", ".join(f"{t:.0f} s: {mb:.0f} ({n})" for t, mb, n in samples)


def report(trees: dict[str, Path], daemon: dict[str, dict], classify: dict[str, list[float]],
           args, load: tuple) -> str:
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    lines = [
        f"Machine: {cpu}, Python {platform.python_version()}; load average {load[0]:.1f} at "
        f"the start, {load[1]:.1f} at the end (shared with other work: medians, and the "
        f"trees run side by side). Settle times {SETTLE_S:g} s; "
        f"`watch.idle_release_seconds = {args.release:g}` where the code has it.",
        "",
        "| figure | " + " | ".join(trees) + " |",
        "|---|" + "---|" * len(trees),
    ]

    def row(name, cell):
        lines.append(f"| {name} | " + " | ".join(cell(label) for label in trees) + " |")

    row("idle PSS, all tagger processes, at the end of the idle time (MB)",
        lambda t: f"**{daemon[t]['samples'][-1][1]:.0f}** ({daemon[t]['samples'][-1][2]} "
                  "processes)")
    row("idle PSS, most while idle (MB)",
        lambda t: f"{max(mb for _, mb, _ in daemon[t]['samples']):.0f}")
    row("idle daemon: clip closed -> its tag in the file (s)",
        lambda t: f"**{daemon[t]['first_tag_s']:.1f}**")
    row("PSS after that tag (MB)",
        lambda t: f"{daemon[t]['busy'][0]:.0f} ({daemon[t]['busy'][1]} processes)")
    row("`tagger watch` start -> watching (s)", lambda t: f"{daemon[t]['start_s']:.1f}")
    row(f"`tagger classify ONE_FILE`, median of {args.runs} (s)",
        lambda t: f"**{statistics.median(classify[t]):.2f}**")
    row("... each run (s)", lambda t: ", ".join(f"{s:.2f}" for s in classify[t]))
    lines += ["", "Idle PSS over time, MB (processes), seconds after the daemon started "
                  "watching:", ""]
    lines += [f"* {t}: {memory_line(daemon[t]['samples'])}" for t in trees]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", type=Path, metavar="DIR", action="append", default=[],
                        help="another tree of tagger's code (e.g. main's) to run beside "
                             "(repeat for several)")
    parser.add_argument("--label", default="this tree")
    parser.add_argument("--compare-label", action="append", default=[],
                        help="a label for each --compare tree, in order")
    parser.add_argument("--idle", type=float, default=60.0, help="idle seconds watched")
    parser.add_argument("--release", type=float, default=20.0,
                        help="watch.idle_release_seconds, where the code has it")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--runs", type=int, default=5, help="classify runs per tree")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)
    labels = args.compare_label + [f"compared {i + 1}" for i in range(len(args.compare))]
    trees = {**{label: tree.resolve() for label, tree in zip(labels, args.compare)},
             args.label: REPO}
    load = [os.getloadavg()[0]]
    homes = {label: Path(tempfile.mkdtemp(prefix="tagger-classify-bench-")) for label in trees}
    classify: dict[str, list[float]] = {label: [] for label in trees}
    try:
        for label, tree in trees.items():
            classify_once(tree, homes[label])  # warm: numba's cache, the disk cache
        for _ in range(args.runs):
            for label, tree in trees.items():
                classify[label].append(classify_once(tree, homes[label]))
    finally:
        for home in homes.values():
            shutil.rmtree(home, ignore_errors=True)
    daemon = {label: daemon_run(tree, args.idle, args.release, args.every)
              for label, tree in trees.items()}
    load.append(os.getloadavg()[0])
    text = report(trees, daemon, classify, args, tuple(load))
    print(text)
    if args.write:
        write_section("light-daemon", "A light daemon and a quick start (`bench/daemon.py`)",
                      text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
