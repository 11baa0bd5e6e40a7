"""The classifier: models loaded once, segments of many tracks batched through them, then the
vote."""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, Mapping, NamedTuple, Protocol, Sequence

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from tagger.audio.features import PreparedTrack, prepare_in_order
from tagger.config import Config
from tagger.errors import ConfigError, TaggerError
from tagger.model.backbone import Backbone, output_keys
from tagger.model.bundle import (
    DEFAULT_BUNDLE,
    TrainedHead,
    card_features,
    load_bundle,
    read_card,
    resolve_bundle_path,
)
from tagger.model.cache import EmbeddingCache
from tagger.model.calibration import Calibrator
from tagger.model.content import (
    AUDIOSET_CLASSES,
    check_labels,
    content_of,
    gate_settings,
    nearest_gate_segments,
)
from tagger.model.efficientat import load_efficientat
from tagger.model.efficientat import read_card as read_efficientat_card
from tagger.model.embeddings import (
    BackboneOutput,
    Backbones,
    TrackEmbeddings,
    combined_sha256,
    gate_embeddings,
    reads_gate,
)
from tagger.model.genres import Vocabulary, build_vocabulary, default_genres
from tagger.model.musicnn import load_musicnn, read_model_card
from tagger.model.vote import calibrated, vote
from tagger.results import Content, ModelInfo, SegmentResult, TrackResult

SHIPPED_MODELS = ("MSD_musicnn", "MTT_musicnn")


PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")


def configure_threads(threads: int) -> int:
    """The model's threads (0: one per core), as that many single-threaded streams.

    torch itself is set to one intra-op thread: the parallelism is across chunks of the batch
    (:class:`Backbones`), which keeps its pace when other processes compete for the cores.
    numpy's BLAS goes to one thread as well: the decode threads beside the model (classify,
    learn) would otherwise each wake a BLAS team for the log-mel product, whose threads then
    spin-wait on the cores the model streams need (measured: 2x the decode's CPU time).
    Returns the number of streams.
    """
    count = threads or os.cpu_count() or 1
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    threadpool_limits(1, user_api="blas")
    return count


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX), as oneDNN needs.

    Without it torch emulates bf16 products, which is slower than float32.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_device(device: str) -> str:
    """``model.device``: auto is cuda when torch sees a GPU, else cpu."""
    if device not in DEVICES:
        raise ConfigError(f"'model.device' must be one of {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("'model.device' is cuda but torch sees no CUDA device "
                          "(a CPU-only torch build, or no GPU)")
    return device


def resolve_precision(precision: str, device: str) -> torch.dtype:
    """``model.precision``: auto is bf16 on a CPU with native bf16 products, else fp32.

    On CUDA auto stays fp32 (the GPU is not the bottleneck; decoding is); bf16 there runs
    under autocast.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"'model.precision' must be one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if device == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


class GenreHead(Protocol):
    """Turns the backbones' outputs for a batch of segments into per-segment genre scores."""

    info: ModelInfo  # the model the catalogue records for each prediction
    genres: tuple[str, ...]  # the columns of genre_scores, the genres voted over
    needs_embeddings: bool  # whether genre_scores reads the embeddings (else tag scores only)
    needs_pooled: bool  # whether it reads the pooled features (not in a scan's cache rows)
    reads_gate: bool  # whether it reads the content gate's outputs (``gate`` of genre_scores)
    needs_gate: bool  # whether it cannot do without them (a track not heard: no prediction)
    score_keys: tuple[str, ...]  # keys of the genre scores in each segment's scores; () none
    calibrator: Calibrator | None  # the head's own calibration (a trained bundle's card)

    def genre_scores(self, outputs: BackboneOutput,
                     gate: BackboneOutput | None = None) -> np.ndarray:
        """(segments, genres) scores; ``gate``: the content gate's outputs for the same
        segments, each the gate segment covering it (:meth:`Classifier.aligned_gate`; zeros
        for a track the gate did not hear)."""
        ...


class VocabularyHead:
    """The default: the genre map over the backbones' tags (tagger.model.genres; docs/genres.md)."""

    needs_embeddings = False
    needs_pooled = False
    needs_gate = False  # a track the gate did not hear has no AudioSet evidence: zeros
    score_keys: tuple[str, ...] = ()
    calibrator = None  # the genre map's calibration lives in the catalogue only

    def __init__(self, vocabulary: Vocabulary, backbones_sha256: str):
        self.vocabulary = vocabulary
        self.genres = vocabulary.genres
        self.reads_gate = vocabulary.hears_audioset
        self.info = ModelInfo(name=DEFAULT_BUNDLE, sha256=backbones_sha256,
                              vocabulary=vocabulary.genres)

    def genre_scores(self, outputs: BackboneOutput,
                     gate: BackboneOutput | None = None) -> np.ndarray:
        tag_scores = outputs.tag_scores
        if self.reads_gate:
            heard = (gate.tag_scores if gate is not None
                     else np.zeros((len(tag_scores), AUDIOSET_CLASSES), dtype=np.float32))
            tag_scores = np.concatenate([tag_scores, heard], axis=1)
        return self.vocabulary.genre_scores(tag_scores)


def hears_audioset_genres(config: Config) -> bool:
    """Whether the default map takes AudioSet genres as candidates (``[content] gate`` and
    ``[content] audioset_genres``)."""
    return config.content.gate and config.content.audioset_genres


def default_vocabulary(config: Config, models: Sequence[Backbone],
                       gate_models: Sequence[Backbone] = ()) -> Vocabulary:
    """The default genre map over ``models``' tags, with ``[genres]`` applied; with the gate's
    network in ``gate_models``, its AudioSet genres too (:func:`hears_audioset_genres`)."""
    audioset = bool(gate_models) and hears_audioset_genres(config)
    keys = output_keys(models) + (output_keys(gate_models) if audioset else ())
    return build_vocabulary(keys, config.genres, default_genres(audioset))


def genre_head(config: Config, models: Sequence[Backbone],
               vocabulary: Vocabulary | None = None,
               gate_models: Sequence[Backbone] = ()) -> GenreHead:
    """The genre head ``model.bundle`` selects: the genre map, or a trained bundle (verified;
    ``gate_models``: the content gate's network, for a bundle that reads its embeddings and
    for the AudioSet genres of the map, whose identity then covers it too)."""
    if config.model.bundle == DEFAULT_BUNDLE:
        if vocabulary is None:
            vocabulary = default_vocabulary(config, models, gate_models)
        identity = tuple(models) + (tuple(gate_models) if vocabulary.hears_audioset else ())
        return VocabularyHead(vocabulary, combined_sha256(identity))
    path = resolve_bundle_path(config)
    features = card_features(read_card(path))
    if reads_gate(features) and not gate_models:
        raise ConfigError(f"model bundle {path} reads the content gate's AudioSet embeddings "
                          f"(features {features}): it needs [content] gate = true")
    return TrainedHead(load_bundle(path, [*models, *gate_models], config))


class _Identity(NamedTuple):
    name: str
    sha256: str


def head_sha256(config: Config) -> str:
    """The identity the catalogue records for the predictions of the head ``model.bundle``
    selects (what ``Classifier(config).info.sha256`` is), read from the model cards alone: no
    weights loaded (loading them checks they are what the cards say). For what looks up that
    model's calibration without classifying (``tagger review``)."""
    if config.model.bundle == DEFAULT_BUNDLE:
        models = read_model_card()["models"]
        identity = [_Identity(n, models[n]["sha256"]) for n in SHIPPED_MODELS]
        if hears_audioset_genres(config):
            gate = read_efficientat_card()["models"]
            identity += [_Identity(n, card["sha256"]) for n, card in gate.items()]
        return combined_sha256(identity)
    return read_card(resolve_bundle_path(config))["sha256"]


class Classifier:
    """Genre classification with the shipped musicnn pair (MSD + MTT).

    The genres come from the genre map over their tags, or, when ``model.bundle`` names a
    trained bundle, from its head over their embeddings (descriptors always come from the
    tags). Construct once: loading checks the weights' sha256 against the model card (and a
    bundle's own sha256 and backbones). Then call :meth:`classify` with paths,
    :meth:`classify_prepared` with tracks that worker processes already decoded
    (:meth:`classify_embedded` also hands back what the embedding cache keeps), or
    :meth:`classify_cached` with cached embeddings: no decode, no backbone pass.
    """

    def __init__(self, config: Config, calibrator: Calibrator | None = None):
        self.config = config
        #: maps the vote's confidence to the probability of being right (None: raw); the
        #: caller looks it up for ``self.info.sha256`` (the catalogue's calibrations)
        self.calibrator = calibrator
        streams = configure_threads(config.model.threads)
        self.device = resolve_device(config.model.device)
        self.dtype = resolve_precision(config.model.precision, self.device)
        self.models: tuple[Backbone, ...] = tuple(load_musicnn(n) for n in SHIPPED_MODELS)
        self.backbones = Backbones(self.models, config.model.batch_segments, streams=streams,
                                   device=self.device, dtype=self.dtype)
        self.output_keys = output_keys(self.models)
        #: the content gate's network (EfficientAT; tagger.model.content), None when off
        self.gate: Backbones | None = None
        if config.content.gate:
            audioset = load_efficientat()
            check_labels(audioset.labels)
            self.gate = Backbones([audioset], config.model.batch_segments, streams=streams,
                                  device=self.device, dtype=self.dtype)
            self.gate_settings = gate_settings(config.model.window_seconds)
        gate_models = self.gate.models if self.gate is not None else ()
        self.vocabulary = default_vocabulary(config, self.models, gate_models)
        self.head = genre_head(config, self.models, self.vocabulary, gate_models)
        self.info = self.head.info

    @property
    def head_calibrator(self) -> Calibrator | None:
        """The genre head's own calibration (a trained bundle's card), if any."""
        return self.head.calibrator

    @property
    def precision(self) -> str:
        """The arithmetic the model runs in: "fp32" or "bf16" (``model.precision`` resolved)."""
        return "bf16" if self.dtype == torch.bfloat16 else "fp32"

    def tag_scores(self, patches: np.ndarray) -> np.ndarray:
        """Sigmoid scores of every model output, shape (patches, outputs), in batches."""
        return self.backbones.run(patches, embeddings=False).tag_scores

    def backbone_outputs(self, patches: np.ndarray) -> BackboneOutput:
        """Tag scores and penultimate embedding of every patch (what the cache keeps), and
        the pooled features when the genre head reads them."""
        return self.backbones.run(patches, embeddings=True, pooled=self.head.needs_pooled)

    def result_for(self, track: PreparedTrack, tag_scores: np.ndarray,
                   genre_scores: np.ndarray) -> TrackResult:
        """Vote over one track's segment genre scores and assemble its result."""
        return self._result(track.path, track.starts_s, track.duration_s, tag_scores,
                            genre_scores)

    def _result(self, path: str, starts_s, duration_s: float | None, tag_scores: np.ndarray,
                genre_scores: np.ndarray) -> TrackResult:
        outcome = calibrated(vote(self.head.genres, genre_scores), self.calibrator)
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
            for start, winner, row, votes in zip(starts_s, outcome.segment_winners, rows,
                                                 genre_scores)
        )
        model = self.config.model
        descriptors = self.vocabulary.descriptors(
            tag_scores, model.descriptor_threshold, model.max_descriptors)
        return TrackResult(path=path, model=self.info, vote=outcome, segments=segments,
                           descriptors=descriptors, duration_s=duration_s)

    def hear(self, track: PreparedTrack) -> tuple[Content, TrackEmbeddings] | None:
        """The content gate's verdict on one decoded track, and the gate's embeddings as the
        cache keeps them (None: the gate is off, or the track was decoded without it)."""
        if self.gate is None or track.waveform is None:
            return None
        outputs, embeddings = gate_embeddings(self.gate, track, self.gate_settings)
        return content_of(outputs.tag_scores), embeddings

    def gate_cached(self, cache: EmbeddingCache, keys: Sequence[str]
                    ) -> dict[str, TrackEmbeddings]:
        """The content gate's cached embeddings (``{key: embeddings}``, for the keys cached)."""
        if self.gate is None or not keys:
            return {}
        return cache.get_many(keys, self.gate.sha256, self.gate_settings)

    def aligned_gate(self, tracks: Sequence[tuple[Sequence[float], TrackEmbeddings | None]]
                     ) -> BackboneOutput:
        """The content gate's outputs for every musicnn segment of ``tracks`` (``(segment
        starts, the gate's embeddings of the track)`` pairs, in order), each segment given the
        gate segment that covers it (:func:`tagger.model.content.nearest_gate_segments`); the
        tag scores are its output layer's over the embeddings, as from the cache. A track the
        gate did not hear (None) has zeros, or, when the genre head needs the gate, is a
        ValueError."""
        if self.gate is None:
            raise ValueError("the content gate is off")
        parts = []  # per track: its aligned penultimate, or the number of its segments
        for starts, heard in tracks:
            if heard is None:
                if self.head.needs_gate:
                    raise ValueError("this genre head reads the content gate's embeddings, "
                                     "and a track has none")
                parts.append(len(starts))
            else:
                parts.append(heard.penultimate[nearest_gate_segments(
                    starts, heard.starts_s, self.config.model.segment_seconds)])
        heard_rows = [p for p in parts if not isinstance(p, int)]
        pen = np.concatenate(heard_rows) if heard_rows else None
        scores = (self.gate.tag_scores_from_penultimate(pen) if pen is not None
                  else np.zeros((0, AUDIOSET_CLASSES), dtype=np.float32))
        if len(heard_rows) == len(parts):
            return BackboneOutput(scores, pen)
        out, at = [], 0
        for part in parts:
            if isinstance(part, int):
                out.append(np.zeros((part, scores.shape[1]), dtype=np.float32))
            else:
                out.append(scores[at:at + len(part)])
                at += len(part)
        return BackboneOutput(np.concatenate(out))

    def classify_embedded(self, tracks: Sequence[PreparedTrack]
                          ) -> list[tuple[TrackResult, tuple[TrackEmbeddings, ...]]]:
        """Run the models once over all segments of ``tracks`` and vote per track; with each
        result, the track's embeddings as the cache keeps them (key unset: the caller knows
        the audio's identity): musicnn's, then the content gate's when it heard the track."""
        if not tracks:
            return []
        outputs = self.backbone_outputs(np.concatenate([t.patches for t in tracks]))
        heard_all = [self.hear(track) for track in tracks]
        gate = (self.aligned_gate([(t.starts_s, h and h[1]) for t, h in zip(tracks, heard_all)])
                if self.head.reads_gate and self.gate is not None else None)
        genre_scores = self.head.genre_scores(outputs, gate)
        results, start = [], 0
        for track, heard in zip(tracks, heard_all):
            stop = start + len(track.patches)
            result = self.result_for(track, outputs.tag_scores[start:stop],
                                     genre_scores[start:stop])
            # the cache keeps the penultimate only: a scan's budget is 10 KB per track
            embeddings = (TrackEmbeddings.from_outputs(
                BackboneOutput(outputs.tag_scores[start:stop],
                               outputs.penultimate[start:stop]),
                track.starts_s, track.duration_s, backbone=self.backbones.sha256),)
            if heard is not None:
                result = dataclasses.replace(result, content=heard[0])
                embeddings += (heard[1],)
            results.append((result, embeddings))
            start = stop
        return results

    def classify_prepared(self, tracks: Sequence[PreparedTrack]) -> list[TrackResult]:
        """Run the models once over all segments of ``tracks`` and vote per track."""
        return [result for result, _ in self.classify_embedded(tracks)]

    def can_use_cached(self, embeddings: TrackEmbeddings,
                       gate: TrackEmbeddings | None = None) -> bool:
        """Whether :meth:`classify_cached` can re-predict from these embeddings: made by these
        backbones, with the pooled features when the genre head reads them, and with the
        content gate's (``gate``) when it reads those."""
        return (embeddings.backbone in ("", self.backbones.sha256)
                and (embeddings.pooled is not None or not self.head.needs_pooled)
                and (gate is not None or not self.head.needs_gate))

    def classify_cached(self, items: Sequence[tuple[str, TrackEmbeddings]],
                        gate: Mapping[str, TrackEmbeddings] | None = None
                        ) -> list[TrackResult]:
        """Re-predict tracks from their cached embeddings (``(path, embeddings)`` pairs): the
        same vote, confidence, candidates and segments as :meth:`classify` gives, within the
        cache's half precision, with no decode. The default genre map reads the tag scores
        of the networks' own output layers over the penultimate embedding; a trained head
        reads its embedding directly (a ``pooled`` head needs rows that hold it, one on the
        AudioSet features the content gate's rows, ``gate`` by key (:meth:`gate_cached`):
        see :meth:`can_use_cached`; a ValueError otherwise)."""
        if not items:
            return []
        gate = gate or {}
        for path, emb in items:
            if not self.can_use_cached(emb, gate.get(emb.key)):
                why = ("made by other backbones" if emb.backbone != self.backbones.sha256
                       else "no pooled features" if emb.pooled is None and self.head.needs_pooled
                       else "no content-gate embeddings")
                raise ValueError(f"{path}: its cached embeddings cannot feed this model ({why})")
        pen = np.concatenate([e.penultimate for _, e in items])
        pooled = (np.concatenate([e.pooled for _, e in items]) if self.head.needs_pooled
                  else None)
        tag_scores = self.backbones.tag_scores_from_penultimate(pen)
        aligned = (self.aligned_gate([(e.starts_s, gate.get(e.key)) for _, e in items])
                   if self.head.reads_gate and self.gate is not None else None)
        genre_scores = self.head.genre_scores(BackboneOutput(tag_scores, pen, pooled), aligned)
        results, start = [], 0
        for path, emb in items:
            stop = start + emb.segments
            result = self._result(path, emb.starts_s, emb.duration_s, tag_scores[start:stop],
                                  genre_scores[start:stop])
            heard = gate.get(emb.key) if self.gate is not None else None
            if heard is not None:  # the gate's verdict, heard again from its row
                result = dataclasses.replace(result, content=content_of(
                    self.gate.tag_scores_from_penultimate(heard.penultimate)))
            results.append(result)
            start = stop
        return results

    def vote_cached(self, path: str, embeddings: TrackEmbeddings,
                    gate: TrackEmbeddings | None = None) -> TrackResult:
        """:meth:`classify_cached` for one track (``gate``: the content gate's row for it)."""
        return self.classify_cached([(path, embeddings)],
                                    {embeddings.key: gate} if gate is not None else None)[0]

    def failure(self, path: str, error: TaggerError | str) -> TrackResult:
        return TrackResult(path=str(path), model=self.info, error=str(error))

    def classify(self, paths: Iterable[str], prepare_threads: int = 2) -> Iterator[TrackResult]:
        """Classify files in order; decoding overlaps inference, segments batch across tracks.

        The files decode in ``prepare_threads`` threads of this process (``tagger classify``
        decodes in worker processes instead: :func:`tagger.service.pool.decode_in_workers`
        feeding :meth:`classify_decoded`). A file that cannot be read yields a result with
        ``error`` set; the rest go on.
        """
        with ThreadPoolExecutor(max_workers=max(1, prepare_threads)) as pool:
            yield from self.classify_decoded(
                prepare_in_order(paths, self.config, pool, self.decode_ahead(prepare_threads)))

    def decode_ahead(self, decoders: int) -> int:
        """How many files to keep decoding with ``decoders`` decoders at work: a batch and a
        bit, so that the next batch decodes while the model runs this one."""
        model = self.config.model
        return max(decoders * 2, -(-model.batch_segments // model.segments) + decoders)

    def classify_decoded(self, decoded: Iterable[tuple[str, PreparedTrack | TaggerError]]
                         ) -> Iterator[TrackResult]:
        """Classify tracks decoded elsewhere, ``(path, track or its error)`` in order (as
        :func:`tagger.audio.features.prepare_in_order` gives them), batched across tracks."""
        pending: list[tuple[str, PreparedTrack | TaggerError]] = []
        queued = 0
        for path, prepared in decoded:
            pending.append((path, prepared))
            if isinstance(prepared, PreparedTrack):
                queued += len(prepared.patches)
            if queued >= self.config.model.batch_segments:
                yield from self._flush(pending)
                pending, queued = [], 0
        yield from self._flush(pending)

    def _flush(self, pending: list[tuple[str, PreparedTrack | TaggerError]]) -> list[TrackResult]:
        prepared = [item for _, item in pending if isinstance(item, PreparedTrack)]
        done = iter(self.classify_prepared(prepared))
        return [next(done) if isinstance(item, PreparedTrack) else self.failure(path, item)
                for path, item in pending]
