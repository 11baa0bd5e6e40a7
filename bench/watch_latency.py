"""`tagger watch`: latency from a file being closed to its tag being written, and the
throughput of a large drop.

    python bench/watch_latency.py [--files 1000] [--latency-files 10] [--settle 5]
                                  [--workers 0] [--clip FILE] [--write]

Runs the daemon in-process on a fresh temporary library and catalogue, with the real
observer, engine and model. Phase 1 copies ``--latency-files`` files in one at a time and
times each from the copy's close to the moment its tag is written and recorded (this
includes ``watch.settle_seconds``, the wait for the file to be stable). Phase 2 drops
``--files`` copies at once and times them until the last one is tagged. The clip defaults to
the 5.3 s trumpet clip in tests/data (one segment each), its genre tag removed so that
every copy gets one written. ``--write`` replaces this script's section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from results import write_section

from tagger.config import Config, ScanConfig, WatchConfig
from tagger.library import tags
from tagger.service.watch import Watcher

REPO = Path(__file__).resolve().parent.parent

CLIP = REPO / "tests" / "data" / "sorohanro_-_solo-trumpet-06.ogg"


class Recorded:
    """Notes when each file's result (tag written, catalogue committed) is recorded."""

    done_at: dict[str, float] = {}
    classified: Counter = Counter()

    @classmethod
    def note(cls, path: str) -> None:
        cls.classified[path] += 1
        cls.done_at[path] = time.monotonic()


def copy_in(source: Path, target: Path) -> float:
    """Copy like a download would (open, write, close); returns the monotonic close time."""
    with open(source, "rb") as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out)
    return time.monotonic()


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="tagger-watch-bench-"))
    try:
        root = work / "Music"
        root.mkdir()
        clip = work / "clip.ogg"
        shutil.copyfile(args.clip, clip)
        tags.write_genres(clip, [], None)  # no genre: the default policy writes one
        config = Config(
            database=f"sqlite:///{work / 'catalogue.sqlite'}", state_dir=str(work / "state"),
            scan=ScanConfig(workers=args.workers),
            watch=dataclasses.replace(WatchConfig(), settle_seconds=args.settle,
                                      observer="native"),
        )
        watcher = Watcher([str(root)], config, recorded=Recorded.note)
        thread = threading.Thread(target=watcher.run, daemon=True)
        load_start = os.getloadavg()
        thread.start()
        wait_until(watcher.started.is_set, 300, "the daemon to start")
        # warm-up: worker processes started, model paths touched
        warm = root / "warm-up.ogg"
        copy_in(clip, warm)
        wait_until(lambda: str(warm) in Recorded.done_at, 300, "the warm-up file")

        latencies = []
        folder = root / "one by one"
        folder.mkdir()
        for i in range(args.latency_files):
            path = folder / f"single {i:02}.ogg"
            closed = copy_in(clip, path)
            wait_until(lambda path=path: str(path) in Recorded.done_at, 300, path.name)
            latencies.append(Recorded.done_at[str(path)] - closed)

        drop = root / "drop"
        drop.mkdir()
        closed_at = {}
        start = time.monotonic()
        for i in range(args.files):
            path = drop / f"track {i:04}.ogg"
            closed_at[str(path)] = copy_in(clip, path)
        dropped = time.monotonic()
        wait_until(lambda: len(closed_at.keys() & Recorded.done_at.keys()) == len(closed_at),
                   24 * 3600, "the drop")
        last = max(Recorded.done_at[p] for p in closed_at)
        first = min(Recorded.done_at[p] for p in closed_at)
        drop_latency = [Recorded.done_at[p] - closed_at[p] for p in closed_at]
        wait_until(lambda: watcher.status()["queue"] == 0, 600, "an empty queue")
        status = watcher.status()
        watcher.stop()
        thread.join(timeout=300)
        load_end = os.getloadavg()
        extra = sum(n - 1 for n in Recorded.classified.values())
        return {
            "settle": args.settle, "workers": watcher.engine.workers if watcher.engine else 0,
            "latency_files": args.latency_files, "latency": latencies,
            "files": args.files, "drop_s": dropped - start, "first_s": first - start,
            "total_s": last - start, "after_drop_s": last - dropped,
            "drop_latency": drop_latency, "files_per_s": args.files / (last - start),
            "extra_inferences": extra, "unchanged": status["unchanged"],
            "failed": status["failed"], "clip": Path(args.clip).name,
            "clip_bytes": clip.stat().st_size, "load": (load_start, load_end),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(r: dict) -> str:
    lat, drop = r["latency"], r["drop_latency"]
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    return "\n".join([
        f"Machine: {cpu}, Python {platform.python_version()}; load average "
        f"{r['load'][0][0]:.1f} at the start, {r['load'][1][0]:.1f} at the end (1-minute "
        f"averages: they include this benchmark's own work). {r['workers']} decode workers, "
        f"`watch.settle_seconds = {r['settle']:g}`, inotify observer.",
        "",
        f"Dropped: {r['files']} copies of `{r['clip']}` ({r['clip_bytes'] / 1024:.0f} KiB, "
        "5.3 s: one segment each), its genre tag removed so that every copy is classified "
        "and gets a tag written, copied in as fast as possible (open, write, close). Results "
        "are committed per model batch (`model.batch_segments` = 80 segments), so files of a "
        "drop are tagged in groups.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| close -> tag written, one file at a time ({r['latency_files']} files) | median "
        f"{statistics.median(lat):.2f} s, min {min(lat):.2f} s, max {max(lat):.2f} s |",
        f"| of which waiting for the file to settle | {r['settle']:g} s (+ up to 0.1 s tick) |",
        f"| {r['files']}-file drop: copying them in | {r['drop_s']:.1f} s |",
        f"| {r['files']}-file drop: start of the drop -> last tag written | "
        f"{r['total_s']:.1f} s ({r['files_per_s']:.2f} files/s) |",
        f"| {r['files']}-file drop: close -> tag written per file | median "
        f"{statistics.median(drop):.1f} s, p95 {quantile(drop, 0.95):.1f} s, max "
        f"{max(drop):.1f} s |",
        f"| files classified more than once | {r['extra_inferences']} |",
        f"| tag writes that echoed back and were dropped as unchanged | {r['unchanged']} |",
        f"| failed | {r['failed']} |",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000, help="files in the drop")
    parser.add_argument("--latency-files", type=int, default=10)
    parser.add_argument("--settle", type=float, default=WatchConfig().settle_seconds)
    parser.add_argument("--workers", type=int, default=0, help="0: one per core")
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    text = report(run(args))
    print(text)
    if args.write:
        write_section("watch", "Watch latency and drop throughput (`bench/watch_latency.py`)",
                      text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
