"""The scan on a real Ray cluster (two nodes on this machine) against the local engine.

The cluster runs in a child process inside a network namespace with only loopback: a cluster
of nodes listens on the machine's network interfaces (``ray.cluster_utils`` takes the
interface's address even when told 127.0.0.1), and a test must not send traffic anywhere but
loopback. The private Ray (``address = ""``) is checked in a namespace that also has a second
interface, which stays inside it. Needs root (``unshare -n``) or unprivileged user namespaces
(``unshare -rn``); CI runs as root.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.audio import DATA_DIR, SHORT_CLIP
from helpers.library import at_rest

from tagger.config import Config
from tagger.library import tags
from tagger.library.catalogue import Catalogue
from tagger.model.cache import CACHE_FILE, TABLE
from tagger.service.cluster import map_path
from tagger.service.scan import scan

pytest.importorskip("ray", reason="the cluster tests need Ray: pip install -e '.[test]'")

pytestmark = pytest.mark.slow
SCENARIO = Path(__file__).resolve().parent / "helpers" / "cluster_scenario.py"
LISTENERS = SCENARIO.with_name("ray_listeners.py")


def only_loopback() -> bool:
    """Whether this process's network namespace has no interface but lo."""
    with open("/proc/net/dev", encoding="ascii") as dev:
        names = [line.split(":")[0].strip() for line in dev.readlines()[2:]]
    return names == ["lo"]


def in_loopback_namespace(argv: list[str]) -> list[str]:
    """``argv`` run in a fresh network namespace with only loopback up."""
    if only_loopback():
        return argv
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    return [*unshare, "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *argv]


def in_namespace_with_a_network_card(argv: list[str]) -> list[str]:
    """``argv`` run in a fresh network namespace with loopback and one end of a veth pair
    (10.99.0.1/24) that holds the default route, as a machine's network card does. Both ends
    are inside the namespace: nothing sent there leaves it."""
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    setup = ("ip link set lo up && ip link add tg0 type veth peer name tg1 && "
             "ip addr add 10.99.0.1/24 dev tg0 && ip link set tg0 up && ip link set tg1 up && "
             "ip route add default via 10.99.0.2 dev tg0 onlink")
    return [*unshare, "sh", "-c", f'{setup} && exec "$0" "$@"', *argv]


def ray_env() -> dict[str, str]:
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_TOKEN": os.urandom(16).hex(),
            "PYTHONPATH": os.pathsep.join([str(SCENARIO.parents[2]), str(SCENARIO.parents[1])])}


def run_on_cluster(library: Path, database: Path | str, state: Path, *extra: str) -> dict:
    argv = in_loopback_namespace([sys.executable, str(SCENARIO), str(library), str(database),
                                  str(state), *extra])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=ray_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def mixed_library(format_files, hostile_files, tmp_path_factory) -> Path:
    """Real music in six formats, a real short clip and a text file named .mp3."""
    lib = tmp_path_factory.mktemp("cluster_lib")
    for clip in sorted(DATA_DIR.glob("*.ogg")):
        if clip.name != SHORT_CLIP:
            shutil.copy(clip, lib / clip.name)
    for name in ("mp3", "flac", "aac", "wav", "opus", "wma"):
        if name in format_files:
            shutil.copy(format_files[name], lib / format_files[name].name)
    shutil.copy(DATA_DIR / SHORT_CLIP, lib / SHORT_CLIP)
    shutil.copy(hostile_files["text_as_mp3"], lib / "notes.mp3")
    at_rest(lib)
    return lib


def copy_of(library: Path, dest: Path) -> Path:
    shutil.copytree(library, dest)
    return dest


def predictions(database: Path | str, root: Path) -> dict[str, tuple]:
    url = database if isinstance(database, str) else f"sqlite:///{database}"
    with Catalogue(url) as catalogue:
        known = catalogue.known_files([str(root)])
        out = {}
        for path in known:
            record = catalogue.track(path)
            p = record.prediction
            out[os.path.relpath(path, root)] = (
                record.status, len(record.predictions),
                (p.genre, round(p.confidence, 5), p.tie, p.tied) if p else None,
                (record.artist, record.album, record.file_genres, record.user_genres))
        return out


def test_map_path_uses_the_longest_prefix_and_whole_folder_names():
    path_map = {"/srv/music": "/mnt/nas", "/srv/music/live": "/mnt/live"}
    assert map_path("/srv/music/a/b.flac", path_map) == "/mnt/nas/a/b.flac"
    assert map_path("/srv/music/live/x.mp3", path_map) == "/mnt/live/x.mp3"
    assert map_path("/srv/musicals/x.mp3", path_map) == "/srv/musicals/x.mp3"
    assert map_path("/other/x.mp3", {}) == "/other/x.mp3"


def only_this_machine(address: str) -> bool:
    """Whether a socket bound to ``address`` is reachable from this machine only."""
    ip = ipaddress.ip_address(address)
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def private_ray_listeners(state: Path, *flags: str) -> dict:
    argv = in_namespace_with_a_network_card([sys.executable, str(LISTENERS), str(state), *flags])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=ray_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["route_address"] == "10.99.0.1"  # the namespace has a card Ray could take
    return out


def test_a_private_ray_listens_on_loopback_only(tmp_path_factory):
    out = private_ray_listeners(tmp_path_factory.mktemp("ray"))  # short: Ray's sockets go below

    assert out["refused"] is None
    listening = out["listening"]
    processes = {s["process"].split()[1] for s in listening}
    assert {"gcs_server", "raylet"} <= processes, listening  # Ray itself was up and listening
    beyond = [s for s in listening if not only_this_machine(s["address"])]
    assert not beyond, beyond  # no wildcard bind, nothing on the card


def test_a_private_ray_that_would_listen_beyond_loopback_is_not_started(tmp_path_factory):
    out = private_ray_listeners(tmp_path_factory.mktemp("ray"), "--ray-imported-first")

    assert "would listen on 10.99.0.1" in out["refused"], out["refused"]
    assert out["listening"] == []  # refused before anything was started


POSTGRES_URL = os.environ.get("TAGGER_TEST_POSTGRES_URL", "")


@pytest.fixture
def ray_catalogue(request, tmp_path):
    """Where the Ray scan writes: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield tmp_path / "ray.sqlite"
        return
    if not POSTGRES_URL:
        pytest.skip("set TAGGER_TEST_POSTGRES_URL (as .ci/run does) for the PostgreSQL run")
    import sqlalchemy as sa

    name = f"tagger_cluster_{os.getpid()}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(
            hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.mark.parametrize("ray_catalogue", ["sqlite", "postgresql"], indirect=True)
def test_ray_scan_matches_the_local_engine(mixed_library, ray_catalogue, tmp_path):
    local_lib = copy_of(mixed_library, tmp_path / "local")
    ray_lib = copy_of(mixed_library, tmp_path / "ray")
    config = Config(state_dir=str(tmp_path / "state"),
                    database=f"sqlite:///{tmp_path / 'local.sqlite'}")
    with Catalogue(config.database_url) as catalogue:
        local = scan([str(local_lib)], config, catalogue, workers=2)

    summary = run_on_cluster(ray_lib, ray_catalogue, tmp_path / "state_ray")

    files = len(list(mixed_library.iterdir()))
    assert summary["seen"] == local.seen == files
    for key in ("classified", "tagged", "skipped", "failed", "ties", "below_threshold"):
        want = local.failed if key == "failed" else getattr(local, key)
        assert summary[key] == want, key
    assert summary["classified"] >= files - 2  # all but the short clip and the text file
    mine = predictions(tmp_path / "local.sqlite", local_lib)
    theirs = predictions(ray_catalogue, ray_lib)
    assert mine.keys() == theirs.keys() and len(mine) == files
    # the file's own tags are recorded by the same Recorder: the same columns either way
    assert {n: v[3] for n, v in mine.items()} == {n: v[3] for n, v in theirs.items()}
    assert any(v[3][2] for v in mine.values())  # file_genres: the genres written
    for name in mine:
        (status_a, count_a, pred_a, _), (status_b, count_b, pred_b, _) = mine[name], theirs[name]
        assert (status_a, count_a) == (status_b, count_b), name
        if pred_a is None:
            assert pred_b is None, name
            continue
        assert pred_a[0] == pred_b[0] and pred_a[2:] == pred_b[2:], name
        assert abs(pred_a[1] - pred_b[1]) < 1e-4, name
    for name in mine:  # the tags written are the same too
        a, b = local_lib / name, ray_lib / name
        if mine[name][2] is not None:
            assert tags.read_genres(a) == tags.read_genres(b), name
    # the driver's Recorder cached what the actors sent back, as the local engine does
    local_rows, ray_rows = cached_embeddings(tmp_path / "state"), cached_embeddings(
        tmp_path / "state_ray")
    assert local_rows.keys() == ray_rows.keys()
    with Catalogue(config.database_url) as catalogue:
        classified = {catalogue.track(str(local_lib / name)).content_id
                      for name, p in mine.items() if p[2] is not None}
    assert set(local_rows) == classified and len(classified) >= files - 3
    for key, (segments, pen) in local_rows.items():
        assert ray_rows[key][0] == segments
        assert np.abs(ray_rows[key][1] - pen).max() < 1e-2, key


def cached_embeddings(state: Path) -> dict[str, tuple[int, np.ndarray]]:
    with sqlite3.connect(state / CACHE_FILE) as db:
        return {key: (n, np.frombuffer(pen, np.float16).astype(np.float32))
                for key, n, pen in db.execute(
                    f"SELECT content_id, segments, penultimate FROM {TABLE}")}


def test_a_node_killed_mid_scan_loses_nothing(mixed_library, tmp_path):
    lib = copy_of(mixed_library, tmp_path / "lib")
    originals = {p.name: p.read_bytes() for p in lib.iterdir()}
    database = tmp_path / "cat.sqlite"

    summary = run_on_cluster(lib, database, tmp_path / "state", "--kill-after", "2")

    assert summary["killed_after"] is not None and summary["killed_after"] < len(originals)
    assert not summary["interrupted"]
    accounted = summary["classified"] + summary["skipped"] + summary["failed"]
    assert accounted == summary["seen"] == len(originals)
    assert summary["failed"] == 1 and list(summary["failures"]) == [
        next(iter(summary["failures"]))]  # only the text file
    with Catalogue(f"sqlite:///{database}") as catalogue:
        for name, before in originals.items():
            record = catalogue.track(str(lib / name))
            assert record is not None and record.status != "pending", name
            assert len(record.predictions) <= 1, name  # classified into one row at most
            written = [w for w in record.tag_writes if "CONFIDENCE" not in w.field.upper()]
            assert len(written) <= 1, name  # no file written twice
            now = (lib / name).read_bytes()
            if written:  # fully tagged with what the catalogue says
                assert list(written[0].new) == tags.read_genres(lib / name), name
                # its own genre, or its album's (tags.scope = album, the default)
                album = record.album_decision
                genre = album.genre if album and album.genre and not album.per_track \
                    else record.prediction.genre
                assert genre.lower() in (g.lower() for g in tags.read_genres(lib / name)), name
            else:
                assert now == before, name  # or byte-identical to the original


def test_watch_hands_its_batches_to_the_cluster(mixed_library, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("Kevin_MacLeod_-_Vibe_Ace.ogg", "nexuiz_brainsukker_excerpt.ogg"):
        shutil.copy(mixed_library / name, lib / name)
    database = tmp_path / "cat.sqlite"
    dropped = DATA_DIR / ("Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_"
                          "(string_orchestra).ogg")

    out = run_on_cluster(lib, database, tmp_path / "state", "--watch", str(dropped))

    assert out["engine"] == "RayEngine"
    assert out["all_recorded"], out["recorded"]  # the two already there, then the new one
    assert len(out["recorded"]) == 3  # each classified once
    with Catalogue(f"sqlite:///{database}") as catalogue:
        record = catalogue.track(out["target"])
    assert record.status == "done" and len(record.predictions) == 1
    assert record.prediction.genre == "classical"
    assert [g.lower() for g in tags.read_genres(out["target"])] == ["classical"]
