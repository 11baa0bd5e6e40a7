"""How fast the review queues page through a 100 000-track catalogue (issue 14: <= 200 ms).

Builds a synthetic catalogue through the catalogue API (record_result, record_failure,
set_track_tags: the same rows a scan writes) once, kept at --db for reruns, then times each
queue's first page and a deep page (following the keyset cursor), both the query alone and
the whole HTTP page through the app (Starlette's TestClient, template rendering included).

    .venv/bin/python bench/review_pages.py [--tracks 100000] [--db /tmp/review-bench.sqlite]
                                           [--write]   (the figures into bench/RESULTS.md)
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from results import write_section

from tagger.config import Config
from tagger.library.catalogue import Queue, Sort, open_catalogue, queue_page
from tagger.model.vote import vote
from tagger.results import ModelInfo, SegmentResult, TrackResult

GENRES = ("rock", "pop", "electronic", "jazz", "classical", "hip-hop", "folk", "metal")
MODEL = ModelInfo("musicnn", "f" * 64, GENRES)
BATCH = 2000


def build(db: Path, tracks: int) -> None:
    rng = np.random.default_rng(0)
    catalogue = open_catalogue(f"sqlite:///{db}")
    t0 = time.perf_counter()
    for start in range(0, tracks, BATCH):
        with catalogue.batch():
            for i in range(start, min(tracks, start + BATCH)):
                path = f"/music/artist{i % 997:03d}/album{i % 13}/track{i:06d}.mp3"
                if i % 50 == 7:
                    catalogue.record_failure(path, "not an audio file", size=1, mtime_ns=1)
                    continue
                scores = rng.dirichlet(np.full(len(GENRES), 0.4 + (i % 5) * 0.3), size=10)
                v = vote(GENRES, scores)
                segments = tuple(SegmentResult(60.0 + 3 * k, v.segment_winners[k],
                                               {g: round(float(x), 4) for g, x in
                                                zip(GENRES, row)})
                                 for k, row in enumerate(scores))
                catalogue.record_result(TrackResult(path, MODEL, v, segments, {}, 180.0),
                                        size=1000 + i, mtime_ns=i)
                if i % 10 == 3:
                    own = GENRES[(i // 10) % len(GENRES)]
                    catalogue.set_track_tags(path, f"artist{i % 997}", f"album{i % 13}",
                                             [own], [own])
        print(f"  built {min(tracks, start + BATCH)} tracks ({time.perf_counter() - t0:.0f} s)",
              file=sys.stderr, flush=True)
    catalogue.close()


def timed(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--db", default="/tmp/review-bench.sqlite")
    parser.add_argument("--deep", type=int, default=20, help="the deep page's number")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    db = Path(args.db)
    if not db.exists():
        print(f"building {args.tracks} tracks in {db} (once; kept for reruns)", file=sys.stderr)
        build(db, args.tracks)
    catalogue = open_catalogue(f"sqlite:///{db}")
    config = Config()
    warnings.filterwarnings("ignore", message=".*httpx.*")  # TestClient on httpx: fine here
    from starlette.testclient import TestClient

    from tagger.review import create_app

    client = TestClient(create_app(config, catalogue, token="bench"),
                        base_url="http://127.0.0.1")
    client.get("/?token=bench")
    low = 0.35
    lines = [f"{catalogue.stats().total} tracks (synthetic, through the catalogue API), "
             f"50 rows a page, median of 5 runs, ms; page {args.deep} follows the keyset "
             "cursor (or the last page, when there are fewer). HTTP: the whole page through "
             "the app, template included.", "",
             f"| queue | sort | query, page 1 | query, page {args.deep} | HTTP, page 1 | "
             f"HTTP, page {args.deep} |", "|---|---|---|---|---|---|"]
    print(lines[0])
    print(f"{'queue':<10} {'sort':<11} {'rows':>5} {'query p1':>9} {f'p{args.deep}':>7} "
          f"{'HTTP p1':>8} {f'HTTP p{args.deep}':>9}")
    worst = 0.0
    for queue in (Queue.LOW, Queue.TIES, Queue.DISAGREE, Queue.FAILED, Queue.RECENT,
                  Queue.ALL):
        for sort in (Sort.CONFIDENCE, Sort.PATH, Sort.RECENT):
            first = queue_page(catalogue.engine, queue, low=low, sort=sort)
            cursor, page = None, first
            for _ in range(args.deep - 1):
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
                page = queue_page(catalogue.engine, queue, low=low, sort=sort, after=cursor)
            q1 = timed(lambda q=queue, s=sort: queue_page(catalogue.engine, q, low=low, sort=s))
            qd = timed(lambda q=queue, s=sort, c=cursor: queue_page(
                catalogue.engine, q, low=low, sort=s, after=c))
            params = {"q": queue.value, "sort": sort.value}
            h1 = timed(lambda p=params: client.get("/queue", params=p).raise_for_status())
            hd = timed(lambda p=params, c=cursor: client.get(
                "/queue", params=dict(p, **({"after": c} if c else {}))).raise_for_status())
            worst = max(worst, q1, qd, h1, hd)
            print(f"{queue.value:<10} {sort.value:<11} {len(first.rows):>5} {q1:>9.1f} "
                  f"{qd:>7.1f} {h1:>8.1f} {hd:>9.1f}")
            lines.append(f"| {queue.value} | {sort.value} | {q1:.1f} | {qd:.1f} | {h1:.1f} | "
                         f"{hd:.1f} |")
    sample = random.Random(0).sample(range(1, 1000), 5)
    track = timed(lambda: [client.get(f"/track/{i}").raise_for_status() for i in sample], 3)
    summary = (f"Track page: {track / len(sample):.1f} ms. Worst queue page: {worst:.1f} ms "
               "(target: 200 ms).")
    print(summary)
    if args.write:
        import os

        load = os.getloadavg()[0]
        write_section("review", "Review queues (`bench/review_pages.py`)", "\n".join(
            lines + ["", summary + f" Machine: {os.cpu_count()} cores, load {load:.1f}."]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
