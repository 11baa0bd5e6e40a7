"""Per-segment embeddings from the frozen musicnn backbones, and their cache.

A trained genre head (:mod:`tagger.model.heads`) reads what the two shipped networks compute anyway
on every segment: the *penultimate* dense layer (200 values per network, 400 together) or the
*pooled* mid-end features before it (1506 per network, 3012 together). ``tags`` (the 100
sigmoid tag scores) is offered too, as a baseline. docs/training.md has the measured choice.

Decoding dominates the cost of an embedding (see bench/train_time.py), so every track's
embeddings are cached in ``<state_dir>/embeddings.sqlite``, keyed by the identity of its audio
payload (:func:`tagger.audio.identity.content_id`: retagging or renaming keeps the key), the
backbones' combined sha256 and the segment settings. Retraining, cross-validating and
evaluating read the cache and decode nothing. The cache never writes anywhere else.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from tagger.audio.features import PreparedTrack, prepare_track
from tagger.audio.identity import content_id
from tagger.config import Config
from tagger.errors import ReadError, TaggerError, WriteError
from tagger.model.musicnn import LoadedModel

log = logging.getLogger(__name__)

#: embedding choices a head can be trained on
EMBEDDINGS = ("penultimate", "pooled", "both", "tags")
CACHE_FILE = "embeddings.sqlite"
#: bump when what is cached for the same audio and settings changes
CACHE_VERSION = 1


def combined_sha256(models: Sequence[LoadedModel]) -> str:
    """One identity for the set of backbones (the shipped pair: ``ModelInfo.sha256`` of musicnn)."""
    joined = "|".join(f"{m.name}:{m.sha256}" for m in models)
    return hashlib.sha256(joined.encode()).hexdigest()


@dataclass(frozen=True)
class BackboneOutput:
    """What the backbones say about a batch of segments; embeddings only when asked for."""

    tag_scores: np.ndarray  # (segments, 100) sigmoid scores, MSD then MTT
    penultimate: np.ndarray | None = None  # (segments, 400) float32
    pooled: np.ndarray | None = None  # (segments, 3012) float32 or float16

    def __len__(self) -> int:
        return len(self.tag_scores)

    def features(self, kind: str) -> np.ndarray:
        """The input of a head trained on ``kind`` (one of :data:`EMBEDDINGS`), float32."""
        if kind == "tags":
            return np.asarray(self.tag_scores, dtype=np.float32)
        if self.penultimate is None or self.pooled is None:
            raise ValueError("these backbone outputs hold no embeddings")
        if kind == "penultimate":
            return np.asarray(self.penultimate, dtype=np.float32)
        if kind == "pooled":
            return np.asarray(self.pooled, dtype=np.float32)
        if kind == "both":
            return np.concatenate([self.penultimate, self.pooled], axis=1, dtype=np.float32)
        raise ValueError(f"unknown embedding {kind!r}; choose from {', '.join(EMBEDDINGS)}")


class Backbones:
    """The loaded networks, run over batches of patches for tag scores and embeddings."""

    def __init__(self, models: Sequence[LoadedModel], batch_segments: int = 80):
        self.models = tuple(models)
        self.batch = batch_segments
        self.sha256 = combined_sha256(self.models)
        self.names = tuple(m.name for m in self.models)

    def run(self, patches: np.ndarray, embeddings: bool = True) -> BackboneOutput:
        """Tag scores of every patch and, with ``embeddings``, both embeddings (one pass)."""
        n = len(patches)
        tags = np.empty((n, sum(len(m.labels) for m in self.models)), dtype=np.float32)
        pen = pooled = None
        if embeddings:
            pen = np.empty((n, sum(m.network.dense.out_features for m in self.models)), np.float32)
            pooled = np.empty((n, sum(m.network.dense.in_features for m in self.models)),
                              np.float32)
        with torch.inference_mode():
            for start in range(0, n, self.batch):
                chunk = torch.from_numpy(np.ascontiguousarray(patches[start:start + self.batch]))
                stop = start + len(chunk)
                if not embeddings:
                    tags[start:stop] = torch.cat(
                        [torch.sigmoid(m.network(chunk)) for m in self.models], dim=1).numpy()
                    continue
                outs = [m.network.embed(chunk) for m in self.models]
                pooled[start:stop] = torch.cat([p for p, _ in outs], dim=1).numpy()
                pen[start:stop] = torch.cat([q for _, q in outs], dim=1).numpy()
                tags[start:stop] = torch.cat(
                    [torch.sigmoid(m.network.output(q)) for m, (_, q) in zip(self.models, outs)],
                    dim=1).numpy()
        return BackboneOutput(tags, pen, pooled)

    def tag_scores_from_penultimate(self, penultimate: np.ndarray) -> np.ndarray:
        """The tag scores the networks' output layers give for cached penultimate embeddings."""
        out, col = [], 0
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(penultimate, dtype=np.float32))
            for m in self.models:
                width = m.network.dense.out_features
                out.append(torch.sigmoid(m.network.output(x[:, col:col + width])))
                col += width
        return torch.cat(out, dim=1).numpy()


# ---------------------------------------------------------------- one track's embeddings


@dataclass(frozen=True)
class TrackEmbeddings:
    """Both embeddings of every segment of one track."""

    penultimate: np.ndarray  # (segments, 400) float32
    pooled: np.ndarray  # (segments, 3012) float16 (stored at half precision)
    starts_s: tuple[float, ...]
    duration_s: float
    key: str = ""  # the cache key: identity of the audio (two files, same audio: same key)

    @property
    def segments(self) -> int:
        return len(self.penultimate)


def segment_settings(config: Config) -> str:
    """The part of the cache key that says which patches of a track were embedded."""
    m = config.model
    return f"v{CACHE_VERSION}:{m.segments}x{m.segment_seconds:g}s@{m.window_seconds:g}s"


class EmbeddingCache:
    """SQLite file of track embeddings, keyed by (audio identity, backbones, segment settings).

    Safe to share between processes (SQLite locking); one connection, used from one thread.
    """

    SCHEMA = """
        CREATE TABLE IF NOT EXISTS embeddings (
            content_id TEXT NOT NULL,
            backbone TEXT NOT NULL,
            settings TEXT NOT NULL,
            segments INTEGER NOT NULL,
            starts TEXT NOT NULL,
            duration_s REAL NOT NULL,
            penultimate BLOB NOT NULL,
            pooled BLOB NOT NULL,
            created REAL NOT NULL,
            PRIMARY KEY (content_id, backbone, settings)
        )"""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(self.SCHEMA)
            self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise WriteError(f"cannot open the embedding cache ({exc}); it is only a cache: "
                             "delete the file to rebuild it", self.path) from None

    @classmethod
    def for_config(cls, config: Config) -> EmbeddingCache:
        return cls(config.state_path / CACHE_FILE)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self, key: str, backbone: str, settings: str) -> TrackEmbeddings | None:
        try:
            row = self._db.execute(
                "SELECT segments, starts, duration_s, penultimate, pooled FROM embeddings "
                "WHERE content_id = ? AND backbone = ? AND settings = ?",
                (key, backbone, settings)).fetchone()
        except sqlite3.Error as exc:
            raise ReadError(f"cannot read the embedding cache ({exc}); it is only a cache: "
                             "delete the file to rebuild it", self.path) from None
        if row is None:
            return None
        segments, starts, duration, pen, pooled = row
        return TrackEmbeddings(
            penultimate=np.frombuffer(pen, dtype=np.float32).reshape(segments, -1),
            pooled=np.frombuffer(pooled, dtype=np.float16).reshape(segments, -1),
            starts_s=tuple(float(s) for s in starts.split(",")) if starts else (),
            duration_s=duration,
            key=key,
        )

    def put_many(self, items: Sequence[tuple[str, TrackEmbeddings]], backbone: str,
                 settings: str) -> None:
        rows = [
            (key, backbone, settings, e.segments, ",".join(f"{s:g}" for s in e.starts_s),
             e.duration_s, np.ascontiguousarray(e.penultimate, dtype=np.float32).tobytes(),
             np.ascontiguousarray(e.pooled, dtype=np.float16).tobytes(), time.time())
            for key, e in items
        ]
        try:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:
            raise WriteError(f"cannot write the embedding cache: {exc}", self.path) from None

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM embeddings").fetchone()[0]


# ---------------------------------------------------------------- extraction


@dataclass
class ExtractStats:
    """What one :func:`extract` call did."""

    cached: int = 0  # read from the cache: nothing decoded
    decoded: int = 0  # decoded, embedded and cached
    failed: int = 0
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)  # path -> reason


def audio_key(path: str) -> str:
    """The cache key of a file: its content id, else (unknown layout) the hash of its bytes."""
    try:
        return content_id(path)
    except ReadError:
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            raise ReadError(f"cannot read: {exc.strerror or exc}", path) from None
        return "file:" + digest.hexdigest()


def extract(paths: Sequence[str], config: Config, backbones: Backbones,
            cache: EmbeddingCache | None, *, threads: int = 2,
            progress: Callable[[int, int], None] | None = None,
            ) -> tuple[list[TrackEmbeddings | None], ExtractStats]:
    """Embeddings of every file, in order (None where a file cannot be read; see stats).

    Cached tracks are read, the others decoded in ``threads`` threads (ffmpeg and the
    features release the GIL) while the backbones run here, batched across tracks.
    """
    started = time.perf_counter()
    stats = ExtractStats()
    settings = segment_settings(config)
    results: list[TrackEmbeddings | None] = [None] * len(paths)
    done = 0

    def fail(i: int, reason: str) -> None:
        stats.failed += 1
        stats.failures[paths[i]] = reason
        log.warning("%s", reason)

    def report(count: int) -> None:
        nonlocal done
        done += count
        if progress:
            progress(done, len(paths))

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        keys: list[str | None] = []
        for i, future in enumerate([pool.submit(audio_key, p) for p in paths]):
            try:
                keys.append(future.result())
            except TaggerError as exc:
                keys.append(None)
                fail(i, str(exc))
        todo = []
        for i, key in enumerate(keys):
            if key is None:
                continue
            hit = cache.get(key, backbones.sha256, settings) if cache is not None else None
            if hit is not None:
                results[i] = hit
                stats.cached += 1
            else:
                todo.append(i)
        report(len(paths) - len(todo))

        pending: list[tuple[int, PreparedTrack]] = []
        queued = 0
        remaining = iter(todo)
        in_flight: deque = deque()

        def submit_next() -> None:
            i = next(remaining, None)
            if i is not None:
                in_flight.append((i, pool.submit(prepare_track, paths[i], config)))

        for _ in range(max(1, threads) * 2):  # a bounded window: decoded tracks never pile up
            submit_next()
        while in_flight:
            i, future = in_flight.popleft()
            submit_next()
            try:
                track = future.result()
                pending.append((i, track))
                queued += len(track.patches)
            except TaggerError as exc:
                fail(i, str(exc))
                report(1)
            except Exception as exc:  # a decoder bug must not stop the others
                fail(i, f"{paths[i]}: unexpected {type(exc).__name__}: {exc}")
                report(1)
            if queued >= backbones.batch or not in_flight:
                _embed_batch(pending, keys, results, backbones, cache, settings, stats)
                report(len(pending))
                pending, queued = [], 0
    stats.seconds = time.perf_counter() - started
    return results, stats


def _embed_batch(pending, keys, results, backbones: Backbones, cache, settings, stats) -> None:
    if not pending:
        return
    out = backbones.run(np.concatenate([t.patches for _, t in pending]))
    start, fresh = 0, []
    for i, track in pending:
        stop = start + len(track.patches)
        emb = TrackEmbeddings(out.penultimate[start:stop].copy(),
                              out.pooled[start:stop].astype(np.float16), track.starts_s,
                              track.duration_s, keys[i])
        results[i] = emb
        fresh.append((keys[i], emb))
        start = stop
    stats.decoded += len(pending)
    if cache is not None:
        cache.put_many(fresh, backbones.sha256, settings)
