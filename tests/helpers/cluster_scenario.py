"""Run one scan on a real two-node Ray cluster started here; print its summary as JSON.

Started by tests/test_cluster.py inside a network namespace that has only loopback (Ray
would otherwise bind the machine's other interface). Usage::

    python cluster_scenario.py LIBRARY DATABASE STATE_DIR [--kill-after N]

DATABASE: a SQLite file, or a PostgreSQL URL.

``--watch FILE``: run ``tagger watch`` on the cluster instead: once it watches, copy FILE in,
and stop when its result is recorded.

``--kill-after N``: once N files are recorded in the catalogue, the worker node (not the
head, where this driver runs) is removed: its raylet and every worker and actor on it die.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sqlite3
import sys
import threading
import time

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

from ray.cluster_utils import Cluster  # noqa: E402

from tagger.config import ClusterConfig, Config  # noqa: E402
from tagger.library.catalogue import Catalogue  # noqa: E402
from tagger.service.cluster import RayEngine  # noqa: E402
from tagger.service.scan import scan  # noqa: E402


def recorded(database: str) -> int:
    if database.startswith("postgresql"):
        return recorded_postgres(database)
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM tracks WHERE status != 'pending'"
                                ).fetchone()[0]
    except sqlite3.Error:
        return 0


def recorded_postgres(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(
                "SELECT count(*) FROM tracks WHERE status != 'pending'").scalar()
    except sa.exc.SQLAlchemyError:
        return 0
    finally:
        engine.dispose()


def watch_one(library: str, source: str, config: Config) -> dict:
    """The daemon on the cluster: the initial scan of ``library``, then one file dropped in."""
    import shutil

    from tagger.service.watch import Watcher

    config = dataclasses.replace(
        config, watch=dataclasses.replace(config.watch, settle_seconds=1.0),
        library=dataclasses.replace(config.library, settle_seconds=1.0))
    target = os.path.join(library, "dropped-" + os.path.basename(source))
    expected = {os.path.join(library, name) for name in os.listdir(library)} | {target}
    recorded_paths: list[str] = []
    everything = threading.Event()

    def note(path: str) -> None:
        recorded_paths.append(path)
        if expected <= set(recorded_paths):
            everything.set()

    watcher = Watcher([library], config, recorded=note)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    if not watcher.started.wait(300):
        raise SystemExit("the daemon did not start")
    shutil.copyfile(source, target)
    ok = everything.wait(300)
    watcher.stop()
    thread.join(120)
    return {"all_recorded": ok, "recorded": recorded_paths,
            "engine": type(watcher.engine).__name__, "target": target}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("library")
    parser.add_argument("database")
    parser.add_argument("state_dir")
    parser.add_argument("--kill-after", type=int, default=0)
    parser.add_argument("--watch", metavar="FILE")
    args = parser.parse_args(argv)

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    config = dataclasses.replace(
        Config(state_dir=args.state_dir, database=args.database if args.database.startswith(
            "postgresql") else f"sqlite:///{args.database}"),
        cluster=ClusterConfig(engine="ray", address=cluster.address))
    killed = {}

    def killer() -> None:
        while recorded(args.database) < args.kill_after:
            time.sleep(0.05)
        killed["after"] = recorded(args.database)
        cluster.remove_node(worker, allow_graceful=False)

    if args.kill_after:
        threading.Thread(target=killer, daemon=True).start()
    if args.watch:
        try:
            print(json.dumps(watch_one(args.library, args.watch, config)))
        finally:
            cluster.shutdown()
        return 0
    with Catalogue(config.database_url) as catalogue:
        engine = RayEngine(config, catalogue)
        try:
            summary = scan([args.library], config, catalogue, engine=engine)
        finally:
            engine.close()
            cluster.shutdown()
    out = {k: v for k, v in vars(summary).items() if k != "failures"}
    out["failures"] = dict(summary.failures)
    out["failed"] = summary.failed
    out["killed_after"] = killed.get("after")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
