"""One writer per catalogue: an exclusive lock file beside the SQLite catalogue (named from
its real path, so no spelling of the URL and no other state directory gets around it), in the
state directory for other databases, and on a PostgreSQL catalogue also a server-side advisory
lock (writers on other hosts share no file)."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from pathlib import Path

from tagger.errors import WriteError
from tagger.library.paths import PRIVATE_FILE_MODE, private_dir

log = logging.getLogger(__name__)


def lock_path(state_dir: Path, database_url: str) -> Path:
    """The writer lock of a catalogue: ``<real path of the SQLite file>.lock``; for other
    databases, a file in the state directory named from the URL."""
    from tagger.library.catalogue import sqlite_file

    database = sqlite_file(database_url)
    if database is not None:
        real = Path(os.path.realpath(database))
        return real.with_name(real.name + ".lock")
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:12]
    return Path(state_dir) / f"writer-{digest}.lock"


#: the daemon's purpose, as its lock says it ("pid N (tagger watch)")
DAEMON = "tagger watch"


def what_to_do(holder: str) -> str:
    """The advice for whoever finds the lock taken by ``holder`` (the lock's own record:
    ``pid N (purpose)``, or the server's application name ``purpose pid N``)."""
    if holder.endswith(f"({DAEMON})") or holder.startswith(f"{DAEMON} pid "):
        return "stop it, or let the running daemon do the work"
    return "wait for it to finish, or stop it"


class WriterLock:
    """Held by the process that writes to a catalogue (``scan`` or the ``watch`` daemon).

    A second writer gets a WriteError naming the holder, instead of waiting or racing.
    The lock is released when the process exits, even on kill -9.
    """

    def __init__(self, state_dir: Path, database_url: str, purpose: str):
        self.state_dir = Path(state_dir)
        self.path = lock_path(self.state_dir, database_url)
        self.purpose = purpose
        self.database_url = database_url
        self._fd: int | None = None
        self._server_lock: _PostgresWriterLock | None = None

    def acquire(self) -> "WriterLock":
        private_dir(self.state_dir)
        if self.path.parent != Path(os.path.realpath(self.state_dir)):
            try:  # a catalogue elsewhere: its folder is the user's to set up
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise WriteError(f"cannot create the catalogue's folder: {exc.strerror}",
                                 self.path.parent) from None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
        except OSError as exc:
            raise WriteError(f"cannot create the writer lock: {exc.strerror}", self.path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise WriteError(f"the catalogue is being written by {holder}; only one writer at "
                             f"a time ({what_to_do(holder)})", self.path) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} ({self.purpose})".encode())
        except OSError as exc:
            os.close(fd)
            raise WriteError(f"cannot write the writer lock: {exc.strerror}", self.path) from None
        self._fd = fd
        if self.database_url.startswith("postgresql"):
            try:
                self._server_lock = _PostgresWriterLock(self.database_url, self.purpose)
            except BaseException:
                self.release()
                raise
        return self

    def holder(self) -> str | None:
        """Who holds the lock now (``"pid N (purpose)"``), or None when nobody does.

        Only probes: a shared lock taken and dropped at once, the file never written.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return os.read(fd, 200).decode(errors="replace").strip() or "another process"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def verify(self) -> None:
        """Raise LockLostError when this writer no longer holds its lock. A lock file held by
        this process cannot be lost; a PostgreSQL advisory lock goes with its session when the
        server restarts, and is taken again if nobody else took it meanwhile. The catalogue
        calls this before each write transaction (see :meth:`guard`)."""
        if self._server_lock is not None:
            self._server_lock.verify()

    def guard(self, catalogue) -> None:
        """Make ``catalogue`` verify this lock before each write transaction."""
        catalogue.add_write_guard(self.verify)

    def release(self) -> None:
        if self._server_lock is not None:
            self._server_lock.release()
            self._server_lock = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WriterLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# pg_advisory_lock key: the first 8 bytes of sha256("tagger catalogue writer"), signed
_ADVISORY_KEY = int.from_bytes(hashlib.sha256(b"tagger catalogue writer").digest()[:8], "big",
                               signed=True)


class LockLostError(WriteError):
    """The writer's lock went away under it (a restarted database server) and could not be
    taken back: another writer may be at work, so this one stops."""


class _PostgresWriterLock:
    """A session-level advisory lock, held on its own connection for the writer's lifetime
    (the server drops it when that connection ends, even if the process is killed)."""

    def __init__(self, database_url: str, purpose: str):
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool

        from tagger.library.catalogue import safe_url

        self._where = safe_url(sa.engine.make_url(database_url))
        self._engine = sa.create_engine(
            database_url, poolclass=NullPool,
            connect_args={"application_name": f"{purpose} pid {os.getpid()}"[:63]})
        try:
            self._lock()
        except BaseException:
            self._engine.dispose()
            raise

    def _lock(self) -> None:
        import sqlalchemy as sa

        try:
            self._conn = self._engine.connect()
            got = self._conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({_ADVISORY_KEY})")
            if not got.scalar():
                holder = self._holder() or "another process"
                self._conn.close()
                raise WriteError(f"the catalogue {self._where} is being written by {holder}; "
                                 f"only one writer at a time ({what_to_do(holder)})")
            self._conn.commit()  # keep the session (and its lock), end the transaction
        except sa.exc.SQLAlchemyError as exc:
            reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
            raise WriteError(f"cannot lock catalogue {self._where}: {reason}") from None

    def verify(self) -> None:
        """Check the lock's session is alive; after a server restart take the lock again, or
        raise LockLostError when that fails (another writer has it, or no server)."""
        import sqlalchemy as sa

        try:
            self._conn.exec_driver_sql("SELECT 1").scalar()
            self._conn.commit()
            return
        except sa.exc.SQLAlchemyError:
            pass  # the session is gone, and the server released its lock with it
        try:
            self._conn.close()
        except sa.exc.SQLAlchemyError:
            pass
        try:
            self._lock()
        except WriteError as exc:
            raise LockLostError(f"the writer lock on {self._where} was lost (database restart?)"
                                f" and cannot be taken again: {exc.message}; stopping") from None
        log.warning("the writer lock on %s was lost (database restart?) and taken again",
                    self._where)

    def _holder(self) -> str | None:
        row = self._conn.exec_driver_sql(
            "SELECT a.application_name, a.client_addr FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            f"AND l.classid::bigint = {(_ADVISORY_KEY >> 32) & 0xFFFFFFFF} "
            f"AND l.objid::bigint = {_ADVISORY_KEY & 0xFFFFFFFF}"  # the key's two halves
        ).first()
        if row is None:
            return None
        return f"{row[0] or 'a tagger'} on {row[1] or 'the database host'}"

    def release(self) -> None:
        try:
            self._conn.close()  # ends the session: the server releases the lock
        finally:
            self._engine.dispose()
