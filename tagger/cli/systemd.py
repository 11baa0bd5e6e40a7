"""systemd readiness (``Type=notify``): READY=1 once the daemon watches, STOPPING=1 at the end.

The protocol is one datagram to ``$NOTIFY_SOCKET``; ten lines here instead of a dependency.
Nothing happens when systemd did not start us.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from typing import Iterator


def notify(message: str) -> bool:
    """Send ``message`` (e.g. ``READY=1``) to systemd; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True


@contextlib.contextmanager
def notify_when_started(started: threading.Event) -> Iterator[None]:
    """READY=1 when ``started`` is set (after the initial reconcile), STOPPING=1 on exit."""
    done = threading.Event()

    def wait() -> None:
        while not done.is_set():
            if started.wait(0.5):
                notify("READY=1\nSTATUS=watching")
                return

    thread = threading.Thread(target=wait, name="tagger-sd-notify", daemon=True)
    if os.environ.get("NOTIFY_SOCKET"):
        thread.start()
    try:
        yield
    finally:
        done.set()
        notify("STOPPING=1")
