"""The classifier: models loaded once, segments of many tracks batched through them, then the
vote."""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, Protocol, Sequence

import numpy as np
import torch

from tagger.audio.features import PreparedTrack, prepare_track
from tagger.config import Config
from tagger.errors import ReadError, TaggerError
from tagger.model.bundle import DEFAULT_BUNDLE, TrainedHead, load_bundle, resolve_bundle_path
from tagger.model.embeddings import BackboneOutput, Backbones, combined_sha256
from tagger.model.genres import Vocabulary, build_vocabulary
from tagger.model.musicnn import LoadedModel, load_musicnn
from tagger.model.vote import vote
from tagger.results import ModelInfo, SegmentResult, TrackResult

SHIPPED_MODELS = ("MSD_musicnn", "MTT_musicnn")


def configure_threads(threads: int) -> int:
    """Set torch's intra-op threads once (0: one per core); returns the count used."""
    count = threads or os.cpu_count() or 1
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


class GenreHead(Protocol):
    """Turns the backbones' outputs for a batch of segments into per-segment genre scores."""

    info: ModelInfo  # the model the catalogue records for each prediction
    genres: tuple[str, ...]  # the columns of genre_scores, the genres voted over
    needs_embeddings: bool  # whether genre_scores reads the embeddings (else tag scores only)
    score_keys: tuple[str, ...]  # keys of the genre scores in each segment's scores; () none

    def genre_scores(self, outputs: BackboneOutput) -> np.ndarray:
        """(segments, genres) scores."""
        ...


class VocabularyHead:
    """The default: the genre map over the backbones' tags (tagger.model.genres; docs/genres.md)."""

    needs_embeddings = False
    score_keys: tuple[str, ...] = ()

    def __init__(self, vocabulary: Vocabulary, backbones_sha256: str):
        self.vocabulary = vocabulary
        self.genres = vocabulary.genres
        self.info = ModelInfo(name=DEFAULT_BUNDLE, sha256=backbones_sha256,
                              vocabulary=vocabulary.genres)

    def genre_scores(self, outputs: BackboneOutput) -> np.ndarray:
        return self.vocabulary.genre_scores(outputs.tag_scores)


def genre_head(config: Config, models: Sequence[LoadedModel],
               vocabulary: Vocabulary | None = None) -> GenreHead:
    """The genre head ``model.bundle`` selects: the genre map, or a trained bundle (verified)."""
    if config.model.bundle == DEFAULT_BUNDLE:
        if vocabulary is None:
            keys = tuple(f"{m.prefix}:{label}" for m in models for label in m.labels)
            vocabulary = build_vocabulary(keys, config.genres)
        return VocabularyHead(vocabulary, combined_sha256(models))
    return TrainedHead(load_bundle(resolve_bundle_path(config), models, config))


class Classifier:
    """Genre classification with the shipped musicnn pair (MSD + MTT).

    The genres come from the genre map over their tags, or, when ``model.bundle`` names a
    trained bundle, from its head over their embeddings (descriptors always come from the
    tags). Construct once: loading checks the weights' sha256 against the model card (and a
    bundle's own sha256 and backbones). Then call :meth:`classify` with paths, or
    :meth:`classify_prepared` with tracks that worker processes already decoded.
    """

    def __init__(self, config: Config):
        self.config = config
        configure_threads(config.model.threads)
        self.models: tuple[LoadedModel, ...] = tuple(load_musicnn(n) for n in SHIPPED_MODELS)
        self.backbones = Backbones(self.models, config.model.batch_segments)
        self.output_keys = tuple(
            f"{m.prefix}:{label}" for m in self.models for label in m.labels
        )
        self.vocabulary = build_vocabulary(self.output_keys, config.genres)
        self.head = genre_head(config, self.models, self.vocabulary)
        self.info = self.head.info

    def tag_scores(self, patches: np.ndarray) -> np.ndarray:
        """Sigmoid scores of every model output, shape (patches, outputs), in batches."""
        return self.backbones.run(patches, embeddings=False).tag_scores

    def backbone_outputs(self, patches: np.ndarray) -> BackboneOutput:
        """Tag scores of every patch, and the embeddings when the genre head reads them."""
        return self.backbones.run(patches, embeddings=self.head.needs_embeddings)

    def result_for(self, track: PreparedTrack, tag_scores: np.ndarray,
                   genre_scores: np.ndarray) -> TrackResult:
        """Vote over one track's segment genre scores and assemble its result."""
        outcome = vote(self.head.genres, genre_scores)
        keys = self.output_keys + self.head.score_keys
        rows = (np.concatenate([tag_scores, genre_scores], axis=1) if self.head.score_keys
                else tag_scores)
        segments = tuple(
            SegmentResult(
                start_s=start,
                genre=winner,
                scores={k: round(float(v), 6) for k, v in zip(keys, row)},
                genre_scores={g: round(float(v), 4) for g, v in zip(self.head.genres, votes)},
            )
            for start, winner, row, votes in zip(track.starts_s, outcome.segment_winners, rows,
                                                 genre_scores)
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
        outputs = self.backbone_outputs(np.concatenate([t.patches for t in tracks]))
        genre_scores = self.head.genre_scores(outputs)
        results, start = [], 0
        for track in tracks:
            stop = start + len(track.patches)
            results.append(self.result_for(track, outputs.tag_scores[start:stop],
                                           genre_scores[start:stop]))
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
                    error = ReadError(f"unexpected {type(exc).__name__}: {exc}", path)
                    pending.append((path, error))
                if queued >= target or not in_flight:
                    yield from self._flush(pending)
                    pending, queued = [], 0

    def _flush(self, pending: list[tuple[str, PreparedTrack | TaggerError]]) -> list[TrackResult]:
        prepared = [item for _, item in pending if isinstance(item, PreparedTrack)]
        done = iter(self.classify_prepared(prepared))
        return [next(done) if isinstance(item, PreparedTrack) else self.failure(path, item)
                for path, item in pending]
