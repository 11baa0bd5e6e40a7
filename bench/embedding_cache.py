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
the tracks once, then the median over 5 rounds of ``Classifier.classify_prepared`` over
batches of 8 tracks — the model, the vote and (in this version) the cache's compact
embedding per track — in ms per track.
``--write`` replaces this script's section of bench/RESULTS.md with the figures.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tagger.audio.features import prepare_track
from tagger.config import AUDIO_EXTENSIONS, Config, LibraryConfig, TagsConfig
from tagger.model.classify import Classifier


def audio_files(folder: Path, limit: int) -> list[str]:
    files = sorted(str(p) for p in folder.rglob("*")
                   if p.suffix.lower().lstrip(".") in AUDIO_EXTENSIONS and p.exists())
    return files[:limit]


def timing(paths: list[str], rounds: int = 5) -> dict:
    config = Config()
    classifier = Classifier(config)
    tracks = [prepare_track(p, config) for p in paths]
    classifier.classify_prepared(tracks[:1])  # warm-up
    per_round = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(0, len(tracks), 8):
            classifier.classify_prepared(tracks[i:i + 8])
        per_round.append((time.perf_counter() - start) * 1000 / len(tracks))
    return {"tracks": len(tracks), "segments": sum(len(t.patches) for t in tracks),
            "ms_per_track": statistics.median(per_round),
            "ms_per_track_rounds": [round(x, 1) for x in per_round]}


def size(folder: Path, limit: int) -> dict:
    from tagger.library.catalogue import open_catalogue
    from tagger.model.cache import CACHE_FILE
    from tagger.service.scan import scan

    with tempfile.TemporaryDirectory(prefix="tagger-cache-bench-") as state:
        config = Config(state_dir=state, database=f"sqlite:///{state}/catalogue.sqlite",
                        library=LibraryConfig(follow_symlinks=True),
                        tags=TagsConfig(write="never"))
        paths = audio_files(folder, limit)
        with open_catalogue(config.database_url) as catalogue:
            summary = scan(paths, config, catalogue, workers=2)
        cache = Path(state) / CACHE_FILE
        files = [cache, cache.with_name(CACHE_FILE + "-wal")]
        raw = sum(f.stat().st_size for f in files if f.exists())
        with sqlite3.connect(cache) as db:
            rows, segments, payload = db.execute(
                "SELECT count(*), sum(segments), sum(length(penultimate)) "
                "FROM segment_embeddings").fetchone()
            page = db.execute("PRAGMA page_size").fetchone()[0]
        db = sqlite3.connect(cache)
        db.execute("VACUUM")
        db.close()
        vacuumed = cache.stat().st_size
    return {"scanned": summary.classified, "rows": rows, "segments": segments,
            "page_size": page, "payload_per_track": payload / rows,
            "bytes_per_track": raw / rows, "bytes_per_track_vacuumed": vacuumed / rows,
            "file_bytes": raw, "file_bytes_vacuumed": vacuumed}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--timing-only", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    if args.timing_only:
        t = timing(audio_files(args.folder, args.limit))
        print(f"classify_prepared: {t['ms_per_track']:.1f} ms/track (median of rounds "
              f"{t['ms_per_track_rounds']}; {t['tracks']} tracks, {t['segments']} segments)")
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
        sys.path.insert(0, os.path.dirname(__file__))
        from results import write_section

        write_section("embedding_cache", "Embedding cache: bytes per track", "\n".join(
            ["`python bench/embedding_cache.py FOLDER --limit 50`", "", "```", *lines, "```"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
