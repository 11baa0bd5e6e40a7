"""Start tagger's private Ray (``cluster.address = ""``), then print as JSON every socket that
listens in this network namespace, with the process holding it, and the address a wildcard
bind would also serve.

Run by tests/test_cluster.py inside a network namespace of its own where, besides loopback, a
second interface (one end of a veth pair) holds the default route, as a machine's network
card does: a socket bound to every interface, or to that one, shows. Nothing leaves the
namespace. Usage::

    python ray_listeners.py STATE_DIR [--ray-imported-first]

``--ray-imported-first``: Ray is imported before tagger could keep it on loopback; the engine
must refuse to start it (the error is printed as ``refused``).
"""

from __future__ import annotations

import json
import os
import socket
import sys

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

from tagger.config import Config  # noqa: E402
from tagger.library.catalogue import Catalogue  # noqa: E402
from tagger.service.cluster import ClusterError, RayEngine  # noqa: E402

# /proc/net/tcp* states: 0A is LISTEN; a UDP socket not connected anywhere is 07 (CLOSE)
_LISTENING = {"tcp": "0A", "tcp6": "0A", "udp": "07", "udp6": "07"}


def socket_owners() -> dict[int, str]:
    """Socket inode -> "pid command" of each process that holds it."""
    owners: dict[int, str] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = os.path.basename(f.read().split(b"\0")[0].decode(errors="replace"))
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    owners[int(link[8:-1])] = f"{pid} {command}"
        except OSError:  # gone meanwhile
            continue
    return owners


def listening_sockets() -> list[dict]:
    """Every listening TCP socket and unconnected UDP socket of this network namespace."""
    owners = socket_owners()
    found = []
    for table, state in _LISTENING.items():
        family = socket.AF_INET6 if table.endswith("6") else socket.AF_INET
        with open(f"/proc/net/{table}", encoding="ascii") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] != state:
                    continue
                address, port = fields[1].split(":")
                raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.append({"table": table, "address": socket.inet_ntop(family, raw),
                              "port": int(port, 16),
                              "process": owners.get(int(fields[9]), "?")})
    return found


def route_address() -> str:
    """The address this machine's default route leaves from (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere
        return probe.getsockname()[0]


def main(state_dir: str, *flags: str) -> int:
    if "--ray-imported-first" in flags:
        import ray  # noqa: F401
    config = Config(state_dir=state_dir, database=f"sqlite:///{state_dir}/catalogue.sqlite")
    out = {"route_address": route_address(), "refused": None}
    with Catalogue(config.database_url) as catalogue:
        engine = RayEngine(config, catalogue)
        try:
            engine.start()  # the GCS, the raylet, the workers and the inference actor
        except ClusterError as exc:
            out["refused"] = exc.message
        out["listening"] = listening_sockets()
        engine.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
