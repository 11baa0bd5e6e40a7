"""What the scan's embedding cache costs: bytes per track on disk, and model time per track.

    python bench/embedding_cache.py FOLDER [--limit 50] [--write]
    python bench/embedding_cache.py FOLDER --timing-only [--limit 8]

Size: scans up to ``--limit`` real tracks under FOLDER with the real engine (symlinks
followed, ``tags.write = never``: nothing is written into the files) into a temporary state
directory, then reports the size of ``embeddings.sqlite`` per track as the scan left it and
after ``VACUUM``.

Timing (``--timing-only`` prints only this, and imports nothing newer than
``Classifier.classify_prepared``, so the same script times an older checkout:
``PYTHONPATH=OLD_CHECKOUT python bench/embedding_cache.py FOLDER --timing-only``): decodes
the tracks once, then times ``Classifier.classify_prepared`` over
batches of 8 tracks — the model, the vote and (in this version) the cache's compact
embedding per track — in ms per track, wall and CPU, of the fastest of 7 rounds.
``--write`` replaces this script's section of bench/RESULTS.md with the figures.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import write_section

from tagger.audio.features import prepare_track
from tagger.config import AUDIO_EXTENSIONS, Config, LibraryConfig, TagsConfig
from tagger.model.classify import Classifier


def audio_files(folder: Path, limit: int) -> list[str]:
    files = sorted(str(p) for p in folder.rglob("*")
                   if p.suffix.lower().lstrip(".") in AUDIO_EXTENSIONS and p.exists())
    return files[:limit]


def timing(paths: list[str], rounds: int = 7) -> dict:
    config = Config()
    classifier = Classifier(config)
    tracks = [prepare_track(p, config) for p in paths]
    classifier.classify_prepared(tracks[:1])  # warm-up
    wall, cpu = [], []
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(tracks), 8):
            classifier.classify_prepared(tracks[i:i + 8])
        wall.append((time.perf_counter() - start) * 1000 / len(tracks))
        cpu.append((time.process_time() - start_cpu) * 1000 / len(tracks))
    ab = {}
    if hasattr(classifier, "classify_embedded"):  # this version: the model pass, A/B
        import numpy as np

        patches = np.concatenate([t.patches for t in tracks[:8]])
        runs = {"tags only": dict(embeddings=False), "tags + penultimate": dict(pooled=False)}
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(rounds):  # interleaved: a load that changes hits both alike
            for name, options in runs.items():
                start = time.process_time()
                classifier.backbones.run(patches, **options)
                times[name].append((time.process_time() - start) * 1000 / 8)
        ab = {name: min(values) for name, values in times.items()}
    # the fastest round: what other processes on the machine took least from
    return {"model_pass_cpu_ms_per_track": ab, "tracks": len(tracks),
            "segments": sum(len(t.patches) for t in tracks),
            "ms_per_track": min(wall), "cpu_ms_per_track": min(cpu),
            "ms_per_track_rounds": [round(x, 1) for x in wall]}


def size(folder: Path, limit: int) -> dict:
    """Scan in a child process (its worker pool's temp folders live in the state directory,
    which is removed once it is gone), then measure."""
    with tempfile.TemporaryDirectory(prefix="tagger-cache-bench-") as state:
        subprocess.run([sys.executable, __file__, str(folder), "--limit", str(limit),
                        "--scan-into", state], check=True)
        return measure(Path(state))


def scan_into(folder: Path, limit: int, state: str) -> None:
    from tagger.library.catalogue import open_catalogue
    from tagger.service.scan import scan

    config = Config(state_dir=state, database=f"sqlite:///{state}/catalogue.sqlite",
                    library=LibraryConfig(follow_symlinks=True),
                    tags=TagsConfig(write="never"))
    with open_catalogue(config.database_url) as catalogue:
        summary = scan(audio_files(folder, limit), config, catalogue, workers=2)
    (Path(state) / "scanned").write_text(str(summary.classified))


def measure(state: Path) -> dict:
    from tagger.model.cache import CACHE_FILE, TABLE

    cache = state / CACHE_FILE
    files = [cache, cache.with_name(CACHE_FILE + "-wal")]
    raw = sum(f.stat().st_size for f in files if f.exists())
    with sqlite3.connect(cache) as db:
        rows, segments, payload = db.execute(
            f"SELECT count(*), sum(segments), sum(length(penultimate)) FROM {TABLE}").fetchone()
        page = db.execute("PRAGMA page_size").fetchone()[0]
    db = sqlite3.connect(cache)
    db.execute("VACUUM")
    db.close()
    vacuumed = cache.stat().st_size
    return {"scanned": int((state / "scanned").read_text()), "rows": rows,
            "segments": segments, "page_size": page, "payload_per_track": payload / rows,
            "bytes_per_track": raw / rows, "bytes_per_track_vacuumed": vacuumed / rows,
            "file_bytes": raw, "file_bytes_vacuumed": vacuumed}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--timing-only", action="store_true")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--scan-into", metavar="STATE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scan_into:
        scan_into(args.folder, args.limit, args.scan_into)
        return 0
    if args.timing_only:
        t = timing(audio_files(args.folder, args.limit))
        print(f"classify_prepared: {t['ms_per_track']:.1f} ms/track wall, "
              f"{t['cpu_ms_per_track']:.1f} ms/track CPU (fastest of rounds "
              f"{t['ms_per_track_rounds']}; {t['tracks']} tracks, {t['segments']} segments)")
        for name, ms in t["model_pass_cpu_ms_per_track"].items():
            print(f"the backbones alone, {name}: {ms:.1f} ms/track CPU (interleaved)")
        return 0
    s = size(args.folder, args.limit)
    lines = [
        f"scanned {s['scanned']} real tracks ({s['segments']} segments): {s['rows']} cache rows",
        f"penultimate payload: {s['payload_per_track']:.0f} bytes/track (float16, 400 per "
        "segment)",
        f"embeddings.sqlite as the scan left it: {s['bytes_per_track']:.0f} bytes/track "
        f"({s['file_bytes']} bytes, page size {s['page_size']})",
        f"after VACUUM: {s['bytes_per_track_vacuumed']:.0f} bytes/track "
        f"({s['file_bytes_vacuumed']} bytes)",
    ]
    print("\n".join(lines))
    if args.write:
        write_section("embedding_cache", "Embedding cache: bytes per track", "\n".join(
            ["`python bench/embedding_cache.py FOLDER --limit 50`", "", "```", *lines, "```"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
