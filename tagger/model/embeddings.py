"""Per-segment embeddings from the frozen backbones (the musicnn pair), and their cache.

A trained genre head (:mod:`tagger.model.heads`) reads what the two shipped networks compute anyway
on every segment: the *penultimate* dense layer (200 values per network, 400 together) or the
*pooled* mid-end features before it (1506 per network, 3012 together). ``tags`` (the 100
sigmoid tag scores) is offered too, as a baseline. docs/training.md has the measured choice.

Decoding dominates the cost of an embedding (see bench/train_time.py), so every track's
embeddings are cached in ``<state_dir>/embeddings.sqlite``, keyed by the identity of its audio
payload (:func:`tagger.audio.identity.content_id`: retagging or renaming keeps the key), the
backbones' combined sha256 and the segment settings. Retraining, cross-validating and
evaluating read the cache and decode nothing. The cache never writes anywhere else.

The cache itself (torch-free, so that the scan's writer can fill it) is
:mod:`tagger.model.cache`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from tagger.audio.features import GATE_SAMPLE_RATE, PreparedTrack, prepare_in_order
from tagger.audio.identity import content_id
from tagger.config import Config
from tagger.errors import ReadError, TaggerError
from tagger.model.backbone import Backbone, common_input, file_sha256
from tagger.model.cache import (  # noqa: F401  (the cache's names, as they always were here)
    CACHE_FILE,
    CACHE_VERSION,
    STORED_DTYPE,
    EmbeddingCache,
    TrackEmbeddings,
    segment_settings,
)
from tagger.model.content import gate_segments

log = logging.getLogger(__name__)

#: embedding choices a head can be trained on
EMBEDDINGS = ("penultimate", "pooled", "both", "tags")


#: what feeds a head (docs/training.md, "AudioSet embeddings"): musicnn's embedding (the
#: ``embedding`` choice), the content gate's (EfficientAT's 512-value penultimate, the gate
#: segment covering each musicnn segment: :func:`tagger.model.content.nearest_gate_segments`),
#: or both side by side
FEATURE_SETS = ("musicnn", "audioset", "both")


def reads_gate(features: str) -> bool:
    """Whether a head on the feature set ``features`` reads the content gate's embeddings."""
    if features not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {features!r}; choose from "
                         f"{', '.join(FEATURE_SETS)}")
    return features != "musicnn"


def head_input(outputs: BackboneOutput, embedding: str, features: str = "musicnn",
               gate_penultimate: np.ndarray | None = None) -> np.ndarray:
    """The input of a head on ``features``: musicnn's ``embedding`` of each segment, the gate's
    embedding aligned to each segment (``gate_penultimate``, one row per segment), or both
    concatenated (musicnn's first), float32."""
    if not reads_gate(features):
        return outputs.features(embedding)
    if gate_penultimate is None or len(gate_penultimate) != len(outputs):
        raise ValueError(f"a head on {features!r} features needs the content gate's embedding "
                         "of every segment")
    audioset = np.asarray(gate_penultimate, dtype=np.float32)
    if features == "audioset":
        return audioset
    return np.concatenate([outputs.features(embedding), audioset], axis=1, dtype=np.float32)


def needs_pooled(embedding: str, features: str = "musicnn") -> bool:
    """Whether a head on ``embedding`` (and the feature set ``features``) reads the pooled
    features (which a scan does not cache: such a head needs the track decoded once more); a
    head on the AudioSet features alone reads no musicnn embedding at all."""
    return features != "audioset" and embedding in ("pooled", "both")


def combined_sha256(models: Sequence[Backbone]) -> str:
    """One identity for the set of backbones (the shipped pair: ``ModelInfo.sha256`` of musicnn)."""
    joined = "|".join(f"{m.name}:{m.sha256}" for m in models)
    return hashlib.sha256(joined.encode()).hexdigest()


@dataclass(frozen=True)
class BackboneOutput:
    """What the backbones say about a batch of segments; embeddings only when asked for."""

    tag_scores: np.ndarray  # (segments, 100) sigmoid scores, MSD then MTT
    penultimate: np.ndarray | None = None  # (segments, 400) float32 or float16
    pooled: np.ndarray | None = None  # (segments, 3012) float32 or float16

    def __len__(self) -> int:
        return len(self.tag_scores)

    def features(self, kind: str) -> np.ndarray:
        """The input of a head trained on ``kind`` (one of :data:`EMBEDDINGS`), float32."""
        if kind not in EMBEDDINGS:
            raise ValueError(f"unknown embedding {kind!r}; choose from {', '.join(EMBEDDINGS)}")
        if kind == "tags":
            return np.asarray(self.tag_scores, dtype=np.float32)
        if self.penultimate is None:
            raise ValueError("these backbone outputs hold no embeddings")
        if kind == "penultimate":
            return np.asarray(self.penultimate, dtype=np.float32)
        if self.pooled is None:
            raise ValueError(f"a {kind!r} head needs the pooled features, which these outputs "
                             "do not hold")
        if kind == "pooled":
            return np.asarray(self.pooled, dtype=np.float32)
        return np.concatenate([self.penultimate, self.pooled], axis=1, dtype=np.float32)

    def as_stored(self) -> BackboneOutput:
        """The embeddings rounded to the precision the cache keeps (:data:`STORED_DTYPE`):
        what a head is trained on, so what it is given everywhere."""
        def rounded(x):
            return None if x is None else np.asarray(x).astype(STORED_DTYPE, copy=False)
        return BackboneOutput(self.tag_scores, rounded(self.penultimate), rounded(self.pooled))


def _malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_TRIM = _malloc_trim()


#: How many oneDNN primitives ideep (torch's glue for the bf16 products) keeps per thread. It
#: caches one, with its buffers, for every operand shape it meets, 1024 by default; a scan
#: brings many shapes (short tracks, each batch's last chunk), and the model threads' caches
#: held 50-70 MB of the scanning process's resident memory. With 32 a scan of 1000 tracks
#: stayed at 366-403 MB instead of 430-458, and the model measured no slower
#: (bench/RESULTS.md). ideep reads the variable when its cache is first used.
PRIMITIVE_CACHE_CAPACITY = "32"


def bound_primitive_cache() -> None:
    """Cap ideep's per-thread primitive cache (``LRU_CACHE_CAPACITY``), unless the user set
    it; only products run after this are affected, so it is called before the first one."""
    os.environ.setdefault("LRU_CACHE_CAPACITY", PRIMITIVE_CACHE_CAPACITY)


def _return_freed_memory() -> None:
    """Give the batch's freed intermediates back to the system (glibc keeps them per thread
    otherwise: ~60 MB more resident in a long scan with two streams); about a millisecond."""
    if _TRIM is not None:
        _TRIM(0)


class Backbones:
    """The loaded networks, run over batches of inputs for tag scores and embeddings.

    Any :class:`tagger.model.backbone.Backbone` implementations that read the same input
    (``self.input``: a ValueError otherwise); their outputs are concatenated in order.

    On the CPU the patches are cut into small chunks that ``streams`` threads take from one
    queue, each running the networks with torch on one intra-op thread (see
    :func:`tagger.model.classify.configure_threads`). Independent single-threaded streams hold
    up when other processes compete for the cores; one OpenMP team over all of them does not:
    every parallel region waits at a barrier for its slowest thread, and a thread that lost its
    core holds all the others up (issue #12: 8.8x slower beside two busy processes). On CUDA
    one stream runs whole batches.
    """

    def __init__(self, models: Sequence[Backbone], batch_segments: int = 80,
                 streams: int = 1, device: str = "cpu", dtype: torch.dtype = torch.float32):
        bound_primitive_cache()
        self.models = tuple(models)
        self.input = common_input(self.models)
        self.batch = batch_segments
        self.sha256 = combined_sha256(self.models)
        self.names = tuple(m.name for m in self.models)
        self.device = torch.device(device)
        self.dtype = dtype
        self.streams = 1 if self.device.type != "cpu" else max(1, streams)
        # a chunk per stream and round, small enough that a stream slowed down by another
        # process leaves the rest of the batch to the others
        self.chunk = (self.batch if self.streams == 1
                      else max(4, -(-self.batch // (2 * self.streams))))
        self._pool: ThreadPoolExecutor | None = None
        for m in self.models:
            m.place(self.device, dtype)

    def _run_chunk(self, patches: np.ndarray, embeddings: bool, pooled: bool = True
                   ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        with torch.inference_mode(), self._autocast():  # both are per thread
            chunk = torch.from_numpy(np.ascontiguousarray(patches)).to(self.device)
            if not embeddings:
                tags = torch.cat([torch.sigmoid(m.logits(chunk).float()) for m in self.models],
                                 dim=1)
                return tags.cpu().numpy(), None, None
            outs = [tuple(t.float() for t in m.embed(chunk)) for m in self.models]
            tags = torch.cat([torch.sigmoid(m.logits_from_penultimate(q).float())
                              for m, (_, q) in zip(self.models, outs)], dim=1)
            pen = torch.cat([q for _, q in outs], dim=1).cpu().numpy()
            if not pooled:
                return tags.cpu().numpy(), pen, None
            return (tags.cpu().numpy(), pen,
                    torch.cat([p for p, _ in outs], dim=1).cpu().numpy())

    def _autocast(self):
        if self.device.type != "cpu" and self.dtype != torch.float32:
            return torch.autocast(self.device.type, dtype=self.dtype)
        return torch.autocast("cpu", enabled=False)  # the CPU fast path casts itself

    def run(self, patches: np.ndarray, embeddings: bool = True,
            pooled: bool = True) -> BackboneOutput:
        """Tag scores of every patch (a batch of ``self.input``) and, with ``embeddings``, the
        penultimate embedding and (with ``pooled``) the pooled features, in the same pass."""
        n = len(patches)
        tags = np.empty((n, sum(len(m.labels) for m in self.models)), dtype=np.float32)
        pen = pool = None
        pooled = embeddings and pooled
        if embeddings:
            pen = np.empty((n, sum(m.embedding_sizes[1] for m in self.models)), np.float32)
        if pooled:
            pool = np.empty((n, sum(m.embedding_sizes[0] for m in self.models)), np.float32)
        starts = range(0, n, self.chunk)

        def one(start: int) -> None:
            stop = min(start + self.chunk, n)
            t, q, p = self._run_chunk(patches[start:stop], embeddings, pooled)
            tags[start:stop] = t
            if embeddings:
                pen[start:stop] = q
            if pooled:
                pool[start:stop] = p

        if self.streams == 1 or len(starts) == 1:
            for start in starts:
                one(start)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="tagger-model")
            for future in [self._pool.submit(one, start) for start in starts]:
                future.result()
        _return_freed_memory()
        return BackboneOutput(tags, pen, pool)

    def tag_scores_from_penultimate(self, penultimate: np.ndarray) -> np.ndarray:
        """The tag scores the networks' output layers give for cached penultimate embeddings."""
        out, col = [], 0
        with torch.inference_mode():
            x = torch.from_numpy(np.require(penultimate, np.float32, ['C', 'W']))
            x = x.to(self.device)
            for m in self.models:
                width = m.embedding_sizes[1]
                out.append(torch.sigmoid(m.logits_from_penultimate(x[:, col:col + width])))
                col += width
        return torch.cat(out, dim=1).cpu().numpy()


# ---------------------------------------------------------------- one track's embeddings


# ---------------------------------------------------------------- extraction


@dataclass
class ExtractStats:
    """What one extraction did (:func:`extract`, and the baseline's features in learn)."""

    cached: int = 0  # read from the cache: nothing decoded
    decoded: int = 0  # decoded, embedded and cached
    failed: int = 0
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)  # path -> reason
    gate_cached: int = 0  # tracks whose content-gate embeddings came from the cache
    gate_computed: int = 0  # tracks whose content-gate embeddings were computed (decoded)


def audio_key(path: str) -> str:
    """The cache key of a file: its content id, else (unknown layout) the hash of its bytes."""
    try:
        return content_id(path)
    except ReadError:
        try:
            return "file:" + file_sha256(path)
        except OSError as exc:
            raise ReadError(f"cannot read: {exc.strerror or exc}", path) from None


def gate_embeddings(gate: Backbones, track: PreparedTrack, settings: str, key: str = ""
                    ) -> tuple[BackboneOutput, TrackEmbeddings]:
    """The content gate's network over a decoded track's window (its 32 kHz ``waveform``,
    cut by :func:`tagger.model.content.gate_segments`): its outputs, and its embeddings as the
    cache keeps them (``settings``: :func:`tagger.model.content.gate_settings`)."""
    if track.waveform is None:
        raise ValueError(f"{track.path}: decoded without the content gate's waveform")
    segments, starts = gate_segments(track.waveform, GATE_SAMPLE_RATE)
    outputs = gate.run(segments, embeddings=True, pooled=False)
    return outputs, TrackEmbeddings.from_outputs(outputs, starts, track.duration_s, key=key,
                                                 backbone=gate.sha256, settings=settings)


def extract(paths: Sequence[str], config: Config, backbones: Backbones,
            cache: EmbeddingCache | None, *, threads: int = 2,
            progress: Callable[[int, int], None] | None = None, pooled: bool = True,
            ) -> tuple[list[TrackEmbeddings | None], ExtractStats]:
    """Embeddings of every file, in order (None where a file cannot be read; see stats).

    Cached tracks are read, the others decoded in ``threads`` threads (ffmpeg and the
    features release the GIL) while the backbones run here, batched across tracks. With
    ``pooled`` False a scan's cached row (penultimate only) is enough; decoded tracks get
    both embeddings either way.
    """
    results, _, stats = extract_with_gate(paths, config, backbones, cache, threads=threads,
                                          progress=progress, pooled=pooled)
    return results, stats


def extract_with_gate(paths: Sequence[str], config: Config, backbones: Backbones,
                      cache: EmbeddingCache | None, *, gate: Backbones | None = None,
                      gate_settings: str = "", threads: int = 2,
                      progress: Callable[[int, int], None] | None = None, pooled: bool = True,
                      ) -> tuple[list[TrackEmbeddings | None], list[TrackEmbeddings | None],
                                 ExtractStats]:
    """:func:`extract`, and with ``gate`` (the content gate's network, ``config.content.gate``
    on) the gate's embeddings of every file too (``gate_settings``: their cache key's part):
    the rows a scan cached, else computed from one decode, which also gives musicnn's where
    they are missing; cached either way. Without ``gate`` the second list is all None."""
    started = time.perf_counter()
    stats = ExtractStats()
    settings = segment_settings(config)
    results: list[TrackEmbeddings | None] = [None] * len(paths)
    gated: list[TrackEmbeddings | None] = [None] * len(paths)
    done = 0
    if gate is not None and not config.content.gate:
        raise ValueError("the content gate's embeddings need a decode with the gate on")

    def fail(i: int, reason: str) -> None:
        stats.failed += 1
        stats.failures[paths[i]] = reason
        results[i] = gated[i] = None
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
        gate_hits = ({} if gate is None or cache is None else
                     cache.get_many([k for k in keys if k], gate.sha256, gate_settings))
        todo = []
        for i, key in enumerate(keys):
            if key is None:
                continue
            hit = (cache.get(key, backbones.sha256, settings, pooled=pooled)
                   if cache is not None else None)
            results[i] = hit
            if gate is not None and key in gate_hits:
                gated[i] = gate_hits[key]
                stats.gate_cached += 1
            if hit is not None and (gate is None or gated[i] is not None):
                stats.cached += 1
            else:
                todo.append(i)
        report(len(paths) - len(todo))

        pending: list[tuple[int, PreparedTrack]] = []
        queued = 0
        prepared = prepare_in_order([paths[i] for i in todo], config, pool, max(1, threads) * 2)
        for i, (_, track) in zip(todo, prepared, strict=True):  # in todo's order
            if isinstance(track, PreparedTrack):
                pending.append((i, track))
                queued += len(track.patches)
            else:
                fail(i, str(track))
                report(1)
            if queued >= backbones.batch:
                _embed_batch(pending, keys, results, backbones, cache, settings, stats)
                _gate_batch(pending, keys, gated, gate, cache, gate_settings, stats)
                report(len(pending))
                pending, queued = [], 0
        if pending:
            _embed_batch(pending, keys, results, backbones, cache, settings, stats)
            _gate_batch(pending, keys, gated, gate, cache, gate_settings, stats)
            report(len(pending))
    stats.seconds = time.perf_counter() - started
    return results, gated, stats


def _embed_batch(pending, keys, results, backbones: Backbones, cache, settings, stats) -> None:
    stats.decoded += len(pending)
    pending = [(i, track) for i, track in pending if results[i] is None]  # the gate's only
    if not pending:
        return
    out = backbones.run(np.concatenate([t.patches for _, t in pending]))
    start, fresh = 0, []
    for i, track in pending:
        stop = start + len(track.patches)
        emb = TrackEmbeddings.from_outputs(
            BackboneOutput(out.tag_scores[start:stop], out.penultimate[start:stop],
                           out.pooled[start:stop]),
            track.starts_s, track.duration_s, keys[i], backbones.sha256)
        results[i] = emb
        fresh.append((keys[i], emb))
        start = stop
    if cache is not None:
        cache.put_many(fresh, backbones.sha256, settings)


def _gate_batch(pending, keys, gated, gate: Backbones | None, cache, settings, stats) -> None:
    if gate is None:
        return
    fresh = []
    for i, track in pending:
        if gated[i] is None:
            gated[i] = gate_embeddings(gate, track, settings, keys[i])[1]
            fresh.append((keys[i], gated[i]))
    stats.gate_computed += len(fresh)
    if cache is not None and fresh:
        cache.put_many(fresh, gate.sha256, settings)
