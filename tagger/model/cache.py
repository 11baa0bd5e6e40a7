"""The embedding cache: every track's per-segment embeddings in ``<state>/embeddings.sqlite``.

Kept free of torch: the scan's writer (on a Ray driver too) stores what the inference sends
back without loading the networks. Keyed by the identity of the audio payload
(:func:`tagger.audio.identity.content_id`: retagging, renaming or moving a file keeps its
rows), the backbones' combined sha256 and the segment settings.

Every row holds the *penultimate* embedding at half precision (400 values per segment: 8 KB
for ten segments); ``scan`` and ``watch`` store only that (the budget is 10 KB per track),
``train``/``eval`` add the *pooled* features (60 KB) when they decode a track. A row without
them serves ``penultimate`` and ``tags`` heads and the default genre map (re-prediction:
:meth:`tagger.model.classify.Classifier.classify_cached`); a ``pooled`` or ``both`` head
needs the track decoded once more. docs/training.md has the measurements behind the choice.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from tagger.config import Config
from tagger.errors import ReadError, WriteError
from tagger.private import PRIVATE_DIR_MODE, create_private_file

if TYPE_CHECKING:
    from tagger.model.embeddings import BackboneOutput

log = logging.getLogger(__name__)

CACHE_FILE = "embeddings.sqlite"
#: bump when what is cached for the same audio and settings changes
CACHE_VERSION = 1
#: the table of this layout (penultimate float16, pooled float16 or NULL); the version-1
#: table ``embeddings`` (penultimate float32, pooled always) is converted into it on open
TABLE = "segment_embeddings"
#: the precision every embedding is stored (and a head fed) at
STORED_DTYPE = np.float16


@dataclass(frozen=True)
class TrackEmbeddings:
    """The embeddings of every segment of one track, at the cache's half precision."""

    penultimate: np.ndarray  # (segments, 400) float16
    pooled: np.ndarray | None  # (segments, 3012) float16; None: not stored (scan rows)
    starts_s: tuple[float, ...]
    duration_s: float
    key: str = ""  # the cache key: identity of the audio (two files, same audio: same key)
    backbone: str = ""  # the backbones' combined sha256 (the cache key's second part)
    settings: str = ""  # the cache key's third part; "": :func:`segment_settings` (musicnn's)

    @property
    def segments(self) -> int:
        return len(self.penultimate)

    @classmethod
    def from_outputs(cls, outputs: BackboneOutput, starts_s: Sequence[float], duration_s: float,
                     key: str = "", backbone: str = "", settings: str = "") -> TrackEmbeddings:
        """One track's slice of the backbones' outputs, rounded for the cache."""
        stored = outputs.as_stored()
        return cls(np.array(stored.penultimate, copy=True),
                   None if stored.pooled is None else np.array(stored.pooled, copy=True),
                   tuple(starts_s), duration_s, key, backbone, settings)


def segment_settings(config: Config) -> str:
    """The part of the cache key that says which patches of a track were embedded."""
    m = config.model
    return f"v{CACHE_VERSION}:{m.segments}x{m.segment_seconds:g}s@{m.window_seconds:g}s"


def _blob(array: np.ndarray | None) -> bytes | None:
    if array is None:
        return None
    return np.ascontiguousarray(array, dtype=STORED_DTYPE).tobytes()


class EmbeddingCache:
    """SQLite file of track embeddings, keyed by (audio identity, backbones, segment settings).

    Safe to share between processes (SQLite locking). One connection; the scan's single
    writer may use it from another thread than the one that opened it, never from two at once.
    """

    SCHEMA = f"""
        CREATE TABLE IF NOT EXISTS {TABLE} (
            content_id TEXT NOT NULL,
            backbone TEXT NOT NULL,
            settings TEXT NOT NULL,
            segments INTEGER NOT NULL,
            starts TEXT NOT NULL,
            duration_s REAL NOT NULL,
            penultimate BLOB NOT NULL,
            pooled BLOB,
            created REAL NOT NULL,
            PRIMARY KEY (content_id, backbone, settings)
        )"""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._make_private()
            self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # a cache: a power cut may lose the last rows, never corrupt the file (WAL), and
            # the scan commits one row per track without an fsync each
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(self.SCHEMA)
            self._db.commit()
            self._convert_version_1()
        except (OSError, sqlite3.Error) as exc:
            raise WriteError(f"cannot open the embedding cache ({exc}); it is only a cache: "
                             "delete the file to rebuild it", self.path) from None

    def _make_private(self) -> None:
        """The folder 0700 and the file 0600, like the catalogue (what was listened to is
        nobody else's business); SQLite gives its -wal and -shm files the file's mode."""
        self.path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        # one an older tagger made readable by all is tightened
        create_private_file(self.path, tighten=True)

    def _convert_version_1(self) -> None:
        """Rows of the first layout (penultimate float32) move into this one, rounded."""
        legacy = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'embeddings'"
        ).fetchone()
        if legacy is None:
            return
        with self._db:
            rows = self._db.execute(
                "SELECT content_id, backbone, settings, segments, starts, duration_s, "
                "penultimate, pooled, created FROM embeddings")
            self._db.executemany(
                f"INSERT OR IGNORE INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ((*r[:6], _blob(np.frombuffer(r[6], dtype=np.float32)), r[7], r[8])
                 for r in rows.fetchall()))
            self._db.execute("DROP TABLE embeddings")
        log.info("embedding cache %s converted to half-precision penultimate rows", self.path)

    @classmethod
    def for_config(cls, config: Config) -> EmbeddingCache:
        return cls(config.state_path / CACHE_FILE)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self, key: str, backbone: str, settings: str, *,
            pooled: bool = True) -> TrackEmbeddings | None:
        """The cached embeddings of one track, or None; with ``pooled``, only a row that
        holds the pooled features counts (a scan's row does not)."""
        return self.get_many([key], backbone, settings, pooled=pooled).get(key)

    def get_scan(self, key: str, backbone: str, settings: str) -> TrackEmbeddings | None:
        """The compact embeddings every scanned track has (penultimate; pooled when held)."""
        return self.get(key, backbone, settings, pooled=False)

    def get_many(self, keys: Sequence[str], backbone: str, settings: str, *,
                 pooled: bool = False) -> dict[str, TrackEmbeddings]:
        """``{key: embeddings}`` for the keys cached (with ``pooled``: with pooled features)."""
        out: dict[str, TrackEmbeddings] = {}
        keys = list(dict.fromkeys(keys))
        try:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                rows = self._db.execute(
                    "SELECT content_id, segments, starts, duration_s, penultimate, pooled "
                    f"FROM {TABLE} WHERE backbone = ? AND settings = ? AND content_id IN "
                    f"({', '.join('?' * len(chunk))})"
                    + (" AND pooled IS NOT NULL" if pooled else ""),
                    (backbone, settings, *chunk)).fetchall()
                for key, segments, starts, duration, pen, pool in rows:
                    out[key] = TrackEmbeddings(
                        penultimate=np.frombuffer(pen, dtype=STORED_DTYPE).reshape(segments, -1),
                        pooled=(None if pool is None else
                                np.frombuffer(pool, dtype=STORED_DTYPE).reshape(segments, -1)),
                        starts_s=tuple(float(s) for s in starts.split(",")) if starts else (),
                        duration_s=duration, key=key, backbone=backbone, settings=settings)
        except sqlite3.Error as exc:
            raise ReadError(f"cannot read the embedding cache ({exc}); it is only a cache: "
                             "delete the file to rebuild it", self.path) from None
        return out

    def put_many(self, items: Sequence[tuple[str, TrackEmbeddings]], backbone: str,
                 settings: str) -> None:
        """Store tracks' embeddings; a row without pooled features keeps those already held."""
        rows = [
            (key, backbone, settings, e.segments, ",".join(f"{s:g}" for s in e.starts_s),
             e.duration_s, _blob(e.penultimate), _blob(e.pooled), time.time())
            for key, e in items
        ]
        try:
            with self._db:
                self._db.executemany(
                    f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (content_id, backbone, settings) DO UPDATE SET "
                    "segments = excluded.segments, starts = excluded.starts, "
                    "duration_s = excluded.duration_s, penultimate = excluded.penultimate, "
                    "pooled = coalesce(excluded.pooled, pooled), created = excluded.created",
                    rows)
        except sqlite3.Error as exc:
            raise WriteError(f"cannot write the embedding cache: {exc}", self.path) from None

    def count(self) -> int:
        return self._db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
