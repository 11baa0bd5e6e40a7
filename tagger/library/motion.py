"""Whether a file is at rest: not modified within the settle time and not open for writing by
any process. A library is alive (downloads, rsync, a slow copy kept open between chunks), and
replacing a file that another program is still writing sends that program's remaining bytes
to an unlinked inode: the track is cut short, silently. So nothing reads a file in motion for
classification and nothing writes one.

How "open for writing" is told, on Linux:

1. A read lease (``fcntl(F_SETLEASE, F_RDLCK)``), taken and dropped at once. The kernel grants
   it only while no process at all holds the file open for writing (it checks the inode's own
   count of writers), so it sees every program, whoever runs it, in any container, at the
   cost of one system call. It needs the caller to own the file (or CAP_LEASE) and a local
   file system that supports leases.
2. Where the kernel refuses a lease for those reasons (EACCES, EINVAL, ENOLCK, EOPNOTSUPP: a
   file of another user, NFS, CIFS, FUSE), the open files listed under ``/proc/PID/fd`` with
   their access mode in ``/proc/PID/fdinfo``. That sees the processes this user may inspect on
   this machine (all of them for root), which is where a copy into the library runs.

A lease's holder is told of a lease break by a signal, SIGIO by default, which ends a Python
process; the probe asks for SIGURG instead, which is ignored unless handled, for the
microseconds it holds the lease.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import time
from dataclasses import dataclass

from tagger.errors import WriteError
from tagger.results import FailureKind

F_SETLEASE = getattr(fcntl, "F_SETLEASE", 1024)
F_SETSIG = getattr(fcntl, "F_SETSIG", 10)
#: lease refusals that say "no leases here", not "a writer holds it" (EAGAIN)
_NO_LEASE = {errno.EACCES, errno.EPERM, errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP,
             errno.ENOSYS}


class FileInMotion(WriteError):
    """A file that is not at rest: not read or written now, tried again later (a transient
    failure: ``kind`` is :attr:`FailureKind.BUSY` or :attr:`FailureKind.CHANGED`)."""

    def __init__(self, message: str, path: str, kind: FailureKind):
        super().__init__(message, path)
        self.kind = kind


@dataclass(frozen=True)
class FileState:
    """A file as it was read or recorded: size and mtime, and its inode when known (the
    catalogue keeps no inode)."""

    size: int
    mtime_ns: int
    ino: int | None = None

    @classmethod
    def of(cls, st: os.stat_result) -> FileState:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)

    def matches(self, st: os.stat_result) -> bool:
        return ((self.size, self.mtime_ns) == (st.st_size, st.st_mtime_ns)
                and self.ino in (None, st.st_ino))


def writer_pids(path: str) -> list[int] | None:
    """The processes holding ``path`` open for writing, as ``/proc`` shows them to this
    user; None where ``/proc`` cannot say (not Linux)."""
    try:
        target = os.stat(path)
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return None
    me = os.getpid()
    found = []
    for pid in pids:
        if pid == me:
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or not ours to see
            continue
        for fd in fds:
            try:
                st = os.stat(f"{fd_dir}/{fd}")
                if (st.st_ino, st.st_dev) != (target.st_ino, target.st_dev):
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as info:
                    flags = next((int(line.split()[1], 8) for line in info
                                  if line.startswith("flags:")), 0)
            except (OSError, ValueError):
                continue
            if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                found.append(pid)
                break
    return found


def open_for_writing(path: str) -> bool:
    """Whether any process holds ``path`` open for writing (see the module docstring)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False  # the read or write that follows says why it cannot open it
    try:
        try:
            fcntl.fcntl(fd, F_SETSIG, signal.SIGURG)
            fcntl.fcntl(fd, F_SETLEASE, fcntl.F_RDLCK)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EBUSY):
                return True
            if exc.errno not in _NO_LEASE:
                raise
        else:
            fcntl.fcntl(fd, F_SETLEASE, fcntl.F_UNLCK)
            return False
    finally:
        os.close(fd)
    return bool(writer_pids(path))


def check_at_rest(path: str, st: os.stat_result, settle_seconds: float) -> None:
    """Raise :class:`FileInMotion` (busy) unless the file whose stat is ``st`` was last
    modified at least ``settle_seconds`` ago and no process holds it open for writing.

    A modification time in the future (a clock that was wrong) does not count as recent.
    """
    age = time.time() - st.st_mtime
    if 0 <= age < settle_seconds:
        raise FileInMotion(f"modified {age:.1f} s ago, it may still be arriving (at rest "
                           f"after library.settle_seconds = {settle_seconds:g}); left for "
                           "later", path, FailureKind.BUSY)
    if open_for_writing(path):
        raise FileInMotion("open for writing by another program (still being copied or "
                           "downloaded?); left for later", path, FailureKind.BUSY)


def check_unchanged(path: str, st: os.stat_result, expected: FileState | None) -> None:
    """Raise :class:`FileInMotion` (changed) when the file whose stat is ``st`` is not the
    one that was read (``expected``: inode, size, mtime)."""
    if expected is not None and not expected.matches(st):
        raise FileInMotion("changed since it was read; not written, it will be read again",
                           path, FailureKind.CHANGED)


@dataclass(frozen=True)
class AtRest:
    """What a tag write demands of its file before it copies it: still the file that was
    read (``expected``, when the caller knows it), not modified within ``settle_seconds``
    unless it is in a state already known to be at rest (``settled``: the one a worker found
    at rest when it read it, or the catalogue recorded after tagger's own write), and never
    open for writing (checked here and again right before the rename)."""

    settle_seconds: float = 0.0
    expected: FileState | None = None
    settled: FileState | None = None

    def check(self, path: str, st: os.stat_result) -> None:
        """Raise :class:`FileInMotion` unless the file whose stat is ``st`` qualifies."""
        check_unchanged(path, st, self.expected)
        known = self.settled is not None and self.settled.matches(st)
        check_at_rest(path, st, 0.0 if known else self.settle_seconds)
