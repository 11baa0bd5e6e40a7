"""The classifier: models loaded once, segments of many tracks batched through them, then the vote."""

from __future__ import annotations

import hashlib
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from tagger.config import Config
from tagger.errors import ReadError, TaggerError
from tagger.features import PreparedTrack, prepare_track
from tagger.genres import build_vocabulary
from tagger.model import LoadedModel, load_musicnn
from tagger.result import ModelInfo, SegmentResult, TrackResult
from tagger.vote import vote

SHIPPED_MODELS = ("MSD_musicnn", "MTT_musicnn")


def configure_threads(threads: int) -> int:
    """Set torch's intra-op threads once (0: one per core); returns the count used."""
    count = threads or os.cpu_count() or 1
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


class Classifier:
    """Genre classification with the shipped musicnn pair (MSD + MTT).

    Construct once: loading checks the weights' sha256 against the model card. Then call
    :meth:`classify` with paths, or :meth:`classify_prepared` with tracks that worker
    processes already decoded.
    """

    def __init__(self, config: Config):
        self.config = config
        configure_threads(config.model.threads)
        self.models: tuple[LoadedModel, ...] = tuple(load_musicnn(n) for n in SHIPPED_MODELS)
        self.output_keys = tuple(
            f"{m.prefix}:{label}" for m in self.models for label in m.labels
        )
        self.vocabulary = build_vocabulary(self.output_keys, config.genres)
        combined = hashlib.sha256("|".join(f"{m.name}:{m.sha256}" for m in self.models).encode())
        self.info = ModelInfo(name="musicnn", sha256=combined.hexdigest(),
                              vocabulary=self.vocabulary.genres)

    def tag_scores(self, patches: np.ndarray) -> np.ndarray:
        """Sigmoid scores of every model output, shape (patches, outputs), in batches."""
        batch = self.config.model.batch_segments
        out = np.empty((len(patches), len(self.output_keys)), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(patches), batch):
                chunk = torch.from_numpy(np.ascontiguousarray(patches[start:start + batch]))
                scores = [torch.sigmoid(m.network(chunk)) for m in self.models]
                out[start:start + batch] = torch.cat(scores, dim=1).numpy()
        return out

    def result_for(self, track: PreparedTrack, tag_scores: np.ndarray) -> TrackResult:
        """Vote over one track's segment scores and assemble its result."""
        genre_scores = self.vocabulary.genre_scores(tag_scores)
        outcome = vote(self.vocabulary.genres, genre_scores)
        segments = tuple(
            SegmentResult(
                start_s=start,
                genre=winner,
                scores={k: round(float(v), 6) for k, v in zip(self.output_keys, row)},
            )
            for start, winner, row in zip(track.starts_s, outcome.segment_winners, tag_scores)
        )
        model = self.config.model
        descriptors = self.vocabulary.descriptors(
            tag_scores, model.descriptor_threshold, model.max_descriptors)
        return TrackResult(path=track.path, model=self.info, vote=outcome, segments=segments,
                           descriptors=descriptors, duration_s=track.duration_s)

    def classify_prepared(self, tracks: Sequence[PreparedTrack]) -> list[TrackResult]:
        """Run the models once over all segments of ``tracks`` and vote per track."""
        if not tracks:
            return []
        scores = self.tag_scores(np.concatenate([t.patches for t in tracks]))
        results, start = [], 0
        for track in tracks:
            stop = start + len(track.patches)
            results.append(self.result_for(track, scores[start:stop]))
            start = stop
        return results

    def failure(self, path: str, error: TaggerError | str) -> TrackResult:
        return TrackResult(path=str(path), model=self.info, error=str(error))

    def classify(self, paths: Iterable[str], prepare_threads: int = 2) -> Iterator[TrackResult]:
        """Classify files in order; decoding overlaps inference, segments batch across tracks.

        A file that cannot be read yields a result with ``error`` set; the rest go on.
        """
        target = self.config.model.batch_segments
        with ThreadPoolExecutor(max_workers=max(1, prepare_threads)) as pool:
            in_flight: deque = deque()
            pending: list[tuple[str, PreparedTrack | TaggerError]] = []
            queued = 0
            paths = iter(paths)

            def submit_next() -> None:
                path = next(paths, None)
                if path is not None:
                    in_flight.append((path, pool.submit(prepare_track, path, self.config)))

            for _ in range(prepare_threads * 2):
                submit_next()
            while in_flight:
                path, future = in_flight.popleft()
                submit_next()
                try:
                    prepared = future.result()
                    queued += len(prepared.patches)
                    pending.append((path, prepared))
                except TaggerError as exc:
                    pending.append((path, exc))
                except Exception as exc:  # a decoder bug must not stop the other files
                    pending.append((path, ReadError(f"unexpected {type(exc).__name__}: {exc}", path)))
                if queued >= target or not in_flight:
                    yield from self._flush(pending)
                    pending, queued = [], 0

    def _flush(self, pending: list[tuple[str, PreparedTrack | TaggerError]]) -> list[TrackResult]:
        prepared = [item for _, item in pending if isinstance(item, PreparedTrack)]
        done = iter(self.classify_prepared(prepared))
        return [next(done) if isinstance(item, PreparedTrack) else self.failure(path, item)
                for path, item in pending]
