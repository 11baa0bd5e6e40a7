"""What the scanning process's memory is made of over a long scan (issue #28).

    python bench/scan_memory.py [--tracks 300] [--every 25] [--lib DIR] [--window N] [--trace]

Scans ``--tracks`` real 10 s excerpts (built as ``bench/scan.py --rss-tracks`` builds them,
or the audio files of ``--lib``) with the local engine, the model in this process as in
``tagger scan``, and every ``--every`` tracks prints one JSON line: resident memory
(``/proc/self/smaps_rollup``: Rss, Anonymous), glibc's heap (``mallinfo2``: bytes in use,
bytes free but kept, bytes in mmapped blocks), the number of Python objects and the decode
workers' resident memory. ``--trace`` adds tracemalloc (Python and numpy allocations; slow)
and prints the largest allocations still alive at the end; ``--window`` fixes the
engine's decode window (files in flight) instead of its own. Run it under
``MALLOC_MMAP_THRESHOLD_=...`` or ``MALLOC_ARENA_MAX=...`` to try glibc's settings.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path

from scan import build_library, fresh_copy, rss_mb

from tagger.config import Config
from tagger.service.engine import Engine
from tagger.service.recorder import Summary


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]


def rollup() -> dict[str, float]:
    with open("/proc/self/smaps_rollup") as f:
        return {parts[0][:-1]: int(parts[1]) / 1024 for parts in map(str.split, f)
                if parts[0] in ("Rss:", "Anonymous:")}


class Sampler:
    """A progress sink (``tagger.service.recorder.ProgressSink``) printing a sample every
    ``every`` tracks."""

    def __init__(self, total: int, engine: Engine, every: int):
        self.total, self.done, self.every, self.engine = total, 0, every, engine
        self.mallinfo = getattr(ctypes.CDLL(None), "mallinfo2", None)  # glibc 2.33+
        if self.mallinfo is not None:
            self.mallinfo.restype = MallInfo2
        self.started = time.perf_counter()
        self.sample()

    def sample(self) -> None:
        mb = 2 ** 20
        line = {"tracks": self.done, "s": round(time.perf_counter() - self.started, 1),
                **{k: round(v, 1) for k, v in rollup().items()},
                "objects": len(gc.get_objects()),
                "workers": round(sum(rss_mb(p) for p in self.engine.worker_pids()), 1)}
        if self.mallinfo is not None:
            info = self.mallinfo()
            line.update(malloc_in_use=round(info.uordblks / mb, 1),
                        malloc_free=round(info.fordblks / mb, 1),
                        malloc_mmapped=round(info.hblkhd / mb, 1))
        if tracemalloc.is_tracing():
            line["traced"] = round(tracemalloc.get_traced_memory()[0] / mb, 1)
        print(json.dumps(line), flush=True)

    def advance(self, count: int = 1) -> None:
        before = self.done
        self.done += count
        if self.done // self.every > before // self.every or self.done == self.total:
            self.sample()

    def close(self) -> None:
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/tagger-bench"))
    parser.add_argument("--tracks", type=int, default=300)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--lib", type=Path, help="scan these audio files instead")
    parser.add_argument("--window", type=int, default=0, help="decode window (0: the engine's)")
    parser.add_argument("--trace", action="store_true", help="tracemalloc (slow)")
    args = parser.parse_args(argv)
    from tagger.library.catalogue import open_catalogue
    from tagger.library.discover import walk

    files = (sorted(args.lib.iterdir())[:args.tracks] if args.lib else
             build_library(args.work / "excerpts-1000", max(args.tracks, 1000), seconds=10)
             [:args.tracks])
    library = fresh_copy(files, args.work / "memory-lib")
    rested = time.time() - 60  # at rest, not a copy still arriving (library.settle_seconds)
    for f in library.iterdir():
        os.utime(f, (rested, rested))
    db = args.work / "memory.sqlite"
    db.unlink(missing_ok=True)
    config = Config()
    with open_catalogue(f"sqlite:///{db}") as catalogue:
        engine = Engine(config, catalogue)
        engine.start()
        if args.window:  # the engine's own window, fixed for a comparison
            in_order = engine.decode.in_order

            def fixed_window(*a, **kw):
                jobs = in_order(*a, **{**kw, "window": args.window})
                kind = type(jobs)  # the engine's later changes of the window are ignored
                kind.window = property(kind.window.fget, lambda self, size: None)
                return jobs

            engine.decode.in_order = fixed_window
        if args.trace:
            tracemalloc.start(12)
        summary = Summary()
        start = time.perf_counter()
        engine.process(walk([str(library)], config.library), summary,
                       Sampler(len(files), engine, args.every))
        elapsed = time.perf_counter() - start
        print(json.dumps({"elapsed_s": round(elapsed, 1), "classified": summary.classified,
                          "failed": summary.failed, "skipped": summary.skipped,
                          "tracks_per_s": round(len(files) / elapsed, 2)}), flush=True)
        if args.trace:
            for stat in tracemalloc.take_snapshot().statistics("traceback")[:10]:
                print(f"{stat.size / 2 ** 20:.2f} MB in {stat.count} blocks, still alive:")
                print("\n".join(f"    {line}" for line in stat.traceback.format()[-6:]))
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
