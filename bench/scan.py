"""Scan figures: pool throughput vs the classifier, 100 000-file unchanged rescan, RSS curve.

    python bench/scan.py [--work /tmp/tagger-bench] [--tracks 24] [--rss-tracks 1000] [--write]

1. Builds a mixed-format library (MP3, M4A, FLAC, Opus, WAV) of full-length real tracks from
   Debian's game-music packages (wesnoth-1.16-music, warzone2100-music) with ffmpeg, then
   times ``tagger classify`` alone (``classify_files``: decode workers, the model here) and a
   full ``scan`` (worker pool, tag writes, catalogue) over the same files: the scan must not
   lose more than 15 %.
2. Unchanged rescan of 100 000 catalogued files (small placeholder files; what is timed is
   the walk, the stat calls and the catalogue diff, as in a real rescan).
3. Resident memory of the scanning process, sampled every 50 tracks over a scan of
   ``--rss-tracks`` real 10 s excerpts.
``--write`` replaces this script's section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results import write_section

from tagger.audio.decode import find_ffmpeg

# No torch or SQLAlchemy up here: worker processes re-run this file as their __main__ before
# they start, and the `tagger` command's workers load neither (they are imported where used).
from tagger.config import Config
from tagger.library.discover import WalkReport
from tagger.service.engine import Engine
from tagger.service.recorder import Summary
from tagger.service.scan import plan_scan, scan

REPO = Path(__file__).resolve().parent.parent

SOURCES = [Path("/usr/share/games/wesnoth/1.16/data/core/music"),
           Path("/usr/share/games/warzone2100/music")]
FORMATS = [(".mp3", ["-c:a", "libmp3lame", "-b:a", "192k"]),
           (".m4a", ["-c:a", "aac", "-b:a", "192k"]),
           (".flac", ["-c:a", "flac"]), (".opus", ["-c:a", "libopus", "-b:a", "128k"]),
           (".wav", ["-c:a", "pcm_s16le"])]


def source_tracks(limit: int) -> list[Path]:
    found = []
    for folder in SOURCES:
        found += sorted(p for p in folder.rglob("*") if p.suffix in (".ogg", ".opus"))
    if not found:
        sys.exit("no source music: apt-get install wesnoth-1.16-music warzone2100-music")
    # alternate the two albums so both orchestral and electronic scores are in
    half = len(found) // 2
    mixed = [t for pair in zip(found[:half], found[half:]) for t in pair]
    return mixed[:limit]


def build_library(folder: Path, count: int, seconds: float | None = None) -> list[Path]:
    """Convert real tracks into rotating formats (cached between runs)."""
    ffmpeg = find_ffmpeg()
    folder.mkdir(parents=True, exist_ok=True)
    sources = source_tracks(max(count, 1) if seconds is None else 40)
    out = []
    for i in range(count):
        source = sources[i % len(sources)]
        suffix, codec = FORMATS[i % len(FORMATS)]
        target = folder / f"{i:04d}_{source.stem}{suffix}"
        if not target.exists():
            cut = ["-ss", str(20 + (i * 7) % 60), "-t", str(seconds)] if seconds else []
            subprocess.run([ffmpeg, "-v", "error", *cut, "-i", str(source), "-map", "0:a:0",
                            *codec, str(target)], check=True)
        out.append(target)
    return out


def fresh_copy(files: list[Path], folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder


def rss_mb(pid: int | str = "self") -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:  # a worker that has just been replaced
        pass
    return 0.0


class RssProgress:
    """A progress sink (``tagger.service.recorder.ProgressSink``) that samples resident memory
    as tracks complete: the scanning process, and its workers."""

    def __init__(self, total: int, engine: Engine, every: int = 50):
        self.total, self.done = total, 0
        self.engine, self.every = engine, every
        self.samples = [(0, *self.sample())]

    def sample(self) -> tuple[float, float]:
        return rss_mb(), sum(rss_mb(pid) for pid in self.engine.worker_pids())

    def close(self) -> None:
        pass

    def advance(self, count: int = 1) -> None:
        before = self.done
        self.done += count
        if self.done // self.every > before // self.every or self.done == self.total:
            self.samples.append((self.done, *self.sample()))


def bench_pool(work: Path, tracks: int, rounds: int) -> dict:
    """Classifier alone vs full scan, interleaved over ``rounds``; medians of the rates."""
    from tagger.library.catalogue import open_catalogue
    from tagger.model.classify import Classifier
    from tagger.service.classify import classify_files

    files = build_library(work / "full", tracks)
    config = Config()
    classifier = Classifier(config)
    classifier.classify([str(files[0])])  # warm-up
    paths = [str(f) for f in files]
    alone, pooled = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        results = list(classify_files(config, paths, classifier=classifier))
        alone.append(len(files) / (time.perf_counter() - start))
        library = fresh_copy(files, work / "scan-lib")
        os.sync()  # a library is not 470 MB of dirty pages being written back during the scan
        db = work / "scan.sqlite"
        db.unlink(missing_ok=True)
        with open_catalogue(f"sqlite:///{db}") as catalogue:
            engine = Engine(config, catalogue, classifier=classifier)
            engine.start()  # once per scan, timed apart: see worker_startup()
            start = time.perf_counter()
            summary = scan([str(library)], config, catalogue, engine=engine)
            pooled.append(len(files) / (time.perf_counter() - start))
            engine.close()
    minutes = sorted(r.duration_s / 60 for r in results if r.duration_s)
    return {
        "tracks": len(files), "formats": sorted({f.suffix for f in files}),
        "median_min": minutes[len(minutes) // 2], "rounds": rounds,
        "classifier_tps": statistics.median(alone), "scan_tps": statistics.median(pooled),
        "alone": alone, "pooled": pooled, "startup": worker_startup(),
        "tagged": summary.tagged, "failed": summary.failed, "classified": summary.classified,
    }


# Run with -c: a worker re-runs a main *file* (this script imports torch) before it starts,
# which the `tagger` command's workers do not have to do.
STARTUP_SNIPPET = """
import time
from tagger.config import Config
from tagger.service.engine import Engine
start = time.perf_counter()
engine = Engine(Config(), None)  # loads the model; the fork server starts meanwhile
loaded = time.perf_counter()
engine.start()
print(loaded - start, time.perf_counter() - loaded)
engine.close()
start = time.perf_counter()
engine.start()
print(time.perf_counter() - start)
engine.close()
"""


def worker_startup() -> tuple[float, float, float]:
    """In a fresh process, as in every `tagger scan`: seconds to load the model (the fork
    server starts and warms the decode stack meanwhile), then until the workers are up; and
    seconds for a new pool from the running server."""
    out = subprocess.run([sys.executable, "-c", STARTUP_SNIPPET], check=True, text=True,
                         capture_output=True, cwd=REPO).stdout.split()
    return float(out[0]), float(out[1]), float(out[2])


def bench_rescan(work: Path, count: int = 100_000) -> dict:
    from tagger.library.catalogue import open_catalogue

    root = work / "rescan-100k"
    marker = root / ".complete"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        for i in range(count):
            folder = root / f"artist{i // 1000:03d}" / f"album{i // 100 % 10}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"track{i % 100:02d}.mp3").write_bytes(b"placeholder %d" % i)
        marker.touch()
    db = work / "rescan.sqlite"
    db.unlink(missing_ok=True)
    config = Config()
    with open_catalogue(f"sqlite:///{db}") as catalogue:
        todo, _, _, _ = plan_scan([str(root)], config, catalogue, force=False,
                                  report=WalkReport())
        with catalogue.batch():
            catalogue.mark_pending_many((f.path, f.size, f.mtime_ns, "mp3") for f in todo)
        with catalogue.engine.begin() as conn:  # as if a previous scan had done them all
            conn.exec_driver_sql("update tracks set status = 'done'")
        start = time.perf_counter()
        todo, missing, seen, unchanged = plan_scan([str(root)], config, catalogue, force=False,
                                                   report=WalkReport())
        plan_s = time.perf_counter() - start
    env = {**os.environ, "XDG_STATE_HOME": str(work / "state")}
    start = time.perf_counter()
    cli = subprocess.run([sys.executable, "-m", "tagger", "scan", "--db", f"sqlite:///{db}",
                          "--json", str(root)], env=env, capture_output=True, text=True)
    cli_s = time.perf_counter() - start
    return {"seen": seen, "unchanged": unchanged, "todo": len(todo), "plan_s": plan_s,
            "cli_s": cli_s, "cli_ok": cli.returncode == 0 and '"classified": 0' in cli.stdout}


def bench_rss(work: Path, count: int) -> dict:
    from tagger.library.catalogue import open_catalogue

    files = build_library(work / f"excerpts-{count}", count, seconds=10)
    library = fresh_copy(files, work / "rss-lib")
    db = work / "rss.sqlite"
    db.unlink(missing_ok=True)
    config = Config()
    with open_catalogue(f"sqlite:///{db}") as catalogue:
        engine = Engine(config, catalogue)
        progress = RssProgress(count, engine)
        summary = Summary()
        from tagger.library.discover import walk

        start = time.perf_counter()
        engine.process(walk([str(library)], config.library), summary, progress)
        elapsed = time.perf_counter() - start
        engine.close()
    return {"samples": progress.samples, "classified": summary.classified,
            "failed": summary.failed, "skipped": summary.skipped, "elapsed_s": elapsed}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/tagger-bench"))
    parser.add_argument("--tracks", type=int, default=24)
    parser.add_argument("--rss-tracks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved pool comparisons")
    parser.add_argument("--skip", nargs="*", default=[], choices=("pool", "rescan", "rss"))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    lines = [f"Machine: {os.cpu_count()} cores; default config (workers = cores, batch 80)."]
    if "pool" not in args.skip:
        pool = bench_pool(args.work, args.tracks, args.rounds)
        loss = 1 - pool["scan_tps"] / pool["classifier_tps"]
        lines += ["", f"**Full scan vs classifier** — {pool['tracks']} full-length real tracks "
                  f"(median {pool['median_min']:.1f} min; formats {', '.join(pool['formats'])}); "
                  f"median of {pool['rounds']} interleaved rounds:",
                  "", "| run | tracks/s (median) | rounds |", "|---|---|---|",
                  f"| `tagger classify` alone (`classify_files`) | {pool['classifier_tps']:.2f} | "
                  f"{', '.join(f'{r:.2f}' for r in pool['alone'])} |",
                  f"| `scan` (worker pool, tags written, catalogue) | {pool['scan_tps']:.2f} | "
                  f"{', '.join(f'{r:.2f}' for r in pool['pooled'])} |",
                  f"| difference | {loss:+.1%} of the classifier's rate lost (target: ≤ 15 %) |",
                  "", f"Start-up, once per scan and not in the rates above: loading the model "
                  f"takes {pool['startup'][0]:.2f} s, while the fork server starts and warms the "
                  f"decode stack alongside; the {Config().scan.workers or os.cpu_count()} workers "
                  f"are up {pool['startup'][1]:.2f} s later ({pool['startup'][2]:.2f} s for a "
                  "new pool from a running server).",
                  "", f"({pool['classified']} classified, {pool['tagged']} tagged, "
                  f"{pool['failed']} failed)"]
        print("\n".join(lines[-11:]), flush=True)
    if "rescan" not in args.skip:
        rescan = bench_rescan(args.work)
        lines += ["", f"**Unchanged rescan** of {rescan['seen']:,} catalogued files: "
                  f"walk + stat + catalogue diff {rescan['plan_s']:.2f} s "
                  f"({rescan['unchanged']:,} unchanged, {rescan['todo']} to do); the whole "
                  f"`tagger scan` command including start-up {rescan['cli_s']:.2f} s "
                  f"(target: < 5 s){'' if rescan['cli_ok'] else ' — CLI run FAILED'}."]
        print(lines[-1], flush=True)
    if "rss" not in args.skip:
        rss = bench_rss(args.work, args.rss_tracks)
        curve = ", ".join(f"{n}: {mb:.0f}+{w:.0f}" for n, mb, w in rss["samples"])
        after_warmup = [mb for n, mb, _ in rss["samples"] if n >= 100]
        workers = [w for n, _, w in rss["samples"] if n >= 100]
        lines += ["", f"**Resident memory** of the scanning process over {rss['classified']} real "
                  f"10 s excerpts ({rss['elapsed_s']:.0f} s; plus {rss['skipped']} too short and "
                  f"{rss['failed']} empty cuts recorded as such), MB by tracks done "
                  f"(scanning process + its decode workers): {curve}. After the first 100 "
                  f"tracks the scanning process stays within "
                  f"{min(after_warmup):.0f}–{max(after_warmup):.0f} MB and the "
                  f"workers together within {min(workers):.0f}–{max(workers):.0f} MB."]
        print(lines[-1], flush=True)
    if args.write:
        write_section("scan", "Scan (`bench/scan.py`)", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
