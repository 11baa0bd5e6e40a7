"""Ray engine against the local engine on this machine, and a scaling estimate for N nodes.

    python bench/cluster.py [--work /tmp/tagger-bench] [--tracks 24] [--rounds 3]
                            [--nas-mb-s 110] [--write]

1. The same mixed-format library of full-length real tracks as bench/scan.py, scanned in
   interleaved rounds by the local engine (worker processes) and by the Ray engine (a private
   one-node Ray on the same 2 cores: decode tasks, one inference actor, the one writer here).
   Both engines are started (model loaded, workers or actors up) before the clock starts;
   start-up is reported apart. Target: the Ray engine loses at most 15 %.
2. Per-stage costs measured one at a time in this process (decode + features per track, on
   one core; inference per track, on all cores; the writer's tag write + catalogue commit per
   track; bytes read from the library per track) give the throughput of N such nodes, and
   which limit comes first: the nodes, the single writer, or the NAS (``--nas-mb-s``, the
   shared mount's read bandwidth).

Ray binds the machine's other interface even when told 127.0.0.1, so the script runs itself
inside a network namespace with only loopback (root: ``unshare -n``).
``--write`` replaces this script's section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"


def only_loopback() -> bool:
    with open("/proc/net/dev", encoding="ascii") as dev:
        return [line.split(":")[0].strip() for line in dev.readlines()[2:]] == ["lo"]


if __name__ == "__main__" and not only_loopback():
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    os.execvp(unshare[0], [*unshare, "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                           sys.executable, *sys.argv])

from results import write_section  # noqa: E402
from scan import build_library, fresh_copy  # noqa: E402

from tagger.config import Config  # noqa: E402
from tagger.service.engine import Engine  # noqa: E402
from tagger.service.recorder import Summary  # noqa: E402
from tagger.service.scan import scan  # noqa: E402


def timed_scan(engine, files: list[Path], work: Path, config: Config, catalogue_url) -> float:
    """Tracks per second of one full scan (tags written, catalogue committed)."""
    from tagger.library.catalogue import open_catalogue

    library = fresh_copy(files, work / "cluster-lib")
    os.sync()
    with open_catalogue(catalogue_url) as catalogue:
        engine.recorder.catalogue = catalogue
        start = time.perf_counter()
        summary = scan([str(library)], config, catalogue, engine=engine)
        rate = len(files) / (time.perf_counter() - start)
    assert summary.classified == len(files) and not summary.failed, summary
    return rate


def bench_engines(work: Path, files: list[Path], rounds: int) -> dict:
    from tagger.model.classify import Classifier
    from tagger.service.cluster import RayEngine

    config = Config(state_dir=str(work / "state"))
    db = work / "cluster.sqlite"
    url = f"sqlite:///{db}"
    classifier = Classifier(config)
    local = Engine(config, None, classifier=classifier)
    started = time.perf_counter()
    local.start()
    local_start = time.perf_counter() - started
    ray_engine = RayEngine(config, None)
    started = time.perf_counter()
    ray_engine.start()
    ray_start = time.perf_counter() - started
    rates: dict[str, list[float]] = {"local": [], "ray": []}
    try:
        for _ in range(rounds):
            for name, engine in (("local", local), ("ray", ray_engine)):
                db.unlink(missing_ok=True)
                rates[name].append(timed_scan(engine, files, work, config, url))
    finally:
        local.close()
        ray_engine.close()
    return {"local": rates["local"], "ray": rates["ray"], "local_start_s": local_start,
            "ray_start_s": ray_start}


def stage_costs(work: Path, files: list[Path]) -> dict:
    """Seconds per track of each stage, measured alone in this process."""
    from dataclasses import replace

    from tagger.library.catalogue import open_catalogue
    from tagger.library.discover import FoundFile
    from tagger.model.classify import Classifier
    from tagger.service.recorder import Recorder
    from tagger.service.workers import prepare_file

    config = Config(state_dir=str(work / "state"))
    found = [FoundFile(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    read_before = _read_bytes()
    cpu = time.process_time()
    items = [prepare_file(f, config) for f in found]  # one process: one core
    decode_s = (time.process_time() - cpu) / len(found)
    read_per_track = (_read_bytes() - read_before) / len(found)
    classifier = Classifier(config)
    classifier.classify_prepared([items[0].track])  # warm-up
    start = time.perf_counter()
    results = []
    for i in range(0, len(items), 8):
        results += classifier.classify_prepared([it.track for it in items[i:i + 8]])
    infer_wall_s = (time.perf_counter() - start) / len(items)
    streams = config.model.threads or os.cpu_count() or 1
    library = fresh_copy(files, work / "writer-lib")
    moved = {str(f): str(library / f.name) for f in files}
    db = work / "writer.sqlite"
    db.unlink(missing_ok=True)
    summary = Summary()
    with open_catalogue(f"sqlite:///{db}") as catalogue:
        recorder = Recorder(config, catalogue)
        start = time.perf_counter()
        for item, result in zip(items, results):
            stat = os.stat(moved[item.path])
            item = replace(item, path=moved[item.path], size=stat.st_size,
                           mtime_ns=stat.st_mtime_ns, track=None)
            recorder.record(item, result, summary)
        writer_s = (time.perf_counter() - start) / len(items)
    return {"decode_cpu_s": decode_s, "infer_wall_s": infer_wall_s, "infer_streams": streams,
            "writer_s": writer_s, "read_mb": read_per_track / 1e6, "tagged": summary.tagged}


def _read_bytes() -> int:
    with open("/proc/self/io", encoding="ascii") as io:
        for line in io:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return 0


def scaling(costs: dict, node_tps: float, nas_mb_s: float) -> tuple[list[tuple], dict]:
    """Tracks/s of N nodes like this one (each at the measured one-node Ray rate, decode and
    inference sharing its cores), and the limits that do not grow with N."""
    limits = {"writer": 1 / costs["writer_s"], "nas": nas_mb_s / max(costs["read_mb"], 1e-6)}
    rows = []
    for nodes in (1, 2, 4, 8, 16, 32, 64):
        compute = nodes * node_tps
        rate = min(compute, *limits.values())
        first = "nodes" if rate == compute else min(limits, key=limits.get)
        rows.append((nodes, compute, rate, first))
    return rows, {"node_tps": node_tps, **limits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/tagger-bench"))
    parser.add_argument("--tracks", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nas-mb-s", type=float, default=110.0,
                        help="read bandwidth of the shared mount (1 GbE NFS: about 110)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    files = build_library(args.work / "full", args.tracks)
    engines = bench_engines(args.work, files, args.rounds)
    costs = stage_costs(args.work, files)
    cores = os.cpu_count() or 1
    local, ray = statistics.median(engines["local"]), statistics.median(engines["ray"])
    rows, limits = scaling(costs, ray, args.nas_mb_s)
    lines = [
        f"{len(files)} full-length tracks ({', '.join(sorted({f.suffix for f in files}))}), "
        f"{args.rounds} interleaved rounds, {cores} cores, medians; tags written, "
        f"catalogue committed.",
        "",
        "| engine | tracks/s | rounds | start-up |",
        "|---|---|---|---|",
        f"| local (worker processes) | {local:.2f} | "
        f"{', '.join(f'{r:.2f}' for r in engines['local'])} | {engines['local_start_s']:.1f} s |",
        f"| ray (1 node, decode tasks + 1 actor) | {ray:.2f} | "
        f"{', '.join(f'{r:.2f}' for r in engines['ray'])} | {engines['ray_start_s']:.1f} s |",
        "",
        f"Ray engine overhead on one machine: **{100 * (1 - ray / local):.1f} %** "
        f"(target at most 15 %).",
        "",
        "Per-stage costs (one track): decode + features "
        f"{costs['decode_cpu_s'] * 1000:.0f} ms CPU; inference {costs['infer_wall_s'] * 1000:.0f}"
        f" ms (wall, {costs['infer_streams']} model streams); writer (tag write + catalogue "
        f"commit) {costs['writer_s'] * 1000:.1f} ms; {costs['read_mb']:.2f} MB read from the "
        "library.",
        "",
        f"Estimate for N nodes like this one (each at the measured one-node Ray rate, "
        f"{limits['node_tps']:.2f} tracks/s), one "
        f"writer ({limits['writer']:.0f} tracks/s) and a NAS at {args.nas_mb_s:g} MB/s "
        f"({limits['nas']:.0f} tracks/s):",
        "",
        "| nodes | compute tracks/s | expected tracks/s | limited by |",
        "|---|---|---|---|",
        *[f"| {n} | {c:.1f} | {r:.1f} | {first} |" for n, c, r, first in rows],
    ]
    first_limit = next((first for *_, first in rows if first != "nodes"), "nodes")
    lines += ["", f"First bottleneck as nodes are added: **{first_limit}**, at "
                  f"{min(limits['writer'], limits['nas']):.0f} tracks/s."]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section("cluster", "Ray engine (bench/cluster.py)", text)


if __name__ == "__main__":
    main()
