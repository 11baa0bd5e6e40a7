"""Labelled tracks to train and evaluate on: a folder per genre, or the library's own tags.

* :func:`folder_dataset`: ``ROOT/<genre>/**/*.<audio>`` (the GTZAN layout); the folder name is
  the label.
* :func:`tags_dataset`: every catalogued track whose file carries a genre the *user* set
  (``tagger scan`` first). A genre tagger itself wrote (logged in the catalogue's tag writes
  and still in the file) is no label: those tracks count as unlabelled, like tracks without a
  genre. Multi-valued genres count by their first value. A genre map applies first, then
  genres with fewer than ``min_tracks`` tracks are left out.

A genre map renames labels case-insensitively (``{"Hip Hop": "hip-hop"}``); mapping to ``""``
drops the label. Unmapped values that differ only in case are one genre, spelled the most
common way.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tagger.config import Config, LibraryConfig
from tagger.errors import ConfigError, ReadError, TaggerError
from tagger.library.discover import is_ignored, walk

# GenreMap moved to the library (scan uses it); kept here
from tagger.library.genres import GenreMap, genre_key
from tagger.model.content import gate_settings, nearest_gate_segments
from tagger.model.embeddings import (
    BackboneOutput,
    Backbones,
    EmbeddingCache,
    ExtractStats,
    TrackEmbeddings,
    extract_with_gate,
    head_input,
    reads_gate,
)

log = logging.getLogger(__name__)

#: catalogue statuses whose files can be used for training
USABLE_STATUSES = ("done", "pending", "failed")


@dataclass(frozen=True)
class LabelledTrack:
    path: str
    genre: str
    artist: str | None = None  # from the file's tags (or the catalogue): grouping the folds
    album: str | None = None


@dataclass(frozen=True)
class Dataset:
    """Labelled tracks, and what was left out."""

    name: str
    source: str  # "folder" or "tags"
    location: str  # the folder, or the catalogue URL (no password)
    tracks: tuple[LabelledTrack, ...]
    unlabelled: tuple[str, ...] = ()  # tracks: no genre, or only tagger's own
    dropped: dict[str, int] = field(default_factory=dict)  # genre -> tracks left out

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(sorted({t.genre for t in self.tracks}))

    def counts(self) -> dict[str, int]:
        counts = Counter(t.genre for t in self.tracks)
        return {label: counts[label] for label in self.labels}


# ---------------------------------------------------------------- genre maps


def read_artist_album(path: str) -> tuple[str | None, str | None]:
    """The file's artist and album tags (None where missing, or the tags unreadable: only
    the folds use them, to keep an artist on one side, so such a file simply has none)."""
    from tagger.library import tags

    try:
        info = tags.read_info(path)
    except TaggerError:
        return None, None
    return info.artist or None, info.album or None


def _unify_case(values: Sequence[str]) -> dict[str, str]:
    """value -> its genre: values equal but for case become the most common spelling."""
    spellings: dict[str, Counter] = {}
    for value in values:
        spellings.setdefault(genre_key(value), Counter())[value] += 1
    canonical = {key: min(c, key=lambda v: (-c[v], v)) for key, c in spellings.items()}
    return {value: canonical[genre_key(value)] for value in values}


# ---------------------------------------------------------------- the two sources


def folder_dataset(root: str | os.PathLike[str], library: LibraryConfig = LibraryConfig(),
                   genre_map: GenreMap | None = None) -> Dataset:
    """``ROOT/<genre>/...``: every audio file below a genre folder is one track of it."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise ConfigError("dataset folder not found", root)
    genre_map = genre_map or GenreMap()
    tracks, dropped = [], Counter()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if is_ignored(folder.name, library.ignore):
            continue
        label = genre_map(folder.name)
        files = sorted(f.path for f in walk([str(folder)], library))
        if label is None:
            dropped[folder.name] += len(files)
            continue
        tracks += [LabelledTrack(path, label, *read_artist_album(path)) for path in files]
    if not tracks:
        raise ConfigError("no audio files in genre folders (expected ROOT/<genre>/*.wav ...)",
                          root)
    return Dataset(name=root.name, source="folder", location=str(root), tracks=tuple(tracks),
                   dropped=dict(dropped))


def tags_dataset(catalogue, *, under: Sequence[str] | None = None,
                 genre_map: GenreMap | None = None, min_tracks: int = 5,
                 read_genres: Callable[[str], list[str]] | None = None) -> Dataset:
    """The catalogued tracks (below ``under``, default all) labelled by the user's genre tags."""
    from tagger.library import tags
    from tagger.library.journal import same_genres, written_genres

    read_genres = read_genres or tags.read_genres
    genre_map = genre_map or GenreMap()
    prefixes = [str(Path(p).expanduser().absolute()) for p in under] if under else None
    known = catalogue.known_files(prefixes)
    # the genre tagger wrote last in each file (unless reverted): not the user's label
    written = written_genres(catalogue, prefixes)
    raw: list[tuple[str, str]] = []
    unlabelled: list[str] = []
    unreadable = 0
    for path, (_, _, status) in sorted(known.items()):
        if status not in USABLE_STATUSES or not os.path.isfile(path):
            continue
        try:
            values = read_genres(path)
        except (ReadError, TaggerError) as exc:
            unreadable += 1
            log.debug("%s", exc)
            continue
        if not values or (path in written and same_genres(values, written[path])):
            unlabelled.append(path)
            continue
        raw.append((path, values[0]))
    dropped: Counter = Counter()
    mapped = []
    for path, value in raw:
        label = genre_map(value)
        if label is None:
            dropped[value.strip()] += 1
        else:
            mapped.append((path, label))
    spelling = _unify_case([label for _, label in mapped])
    counts = Counter(spelling[label] for _, label in mapped)
    tracks = []
    for path, label in mapped:
        genre = spelling[label]
        if counts[genre] >= min_tracks:
            tracks.append(LabelledTrack(path, genre))
        else:
            dropped[genre] += 1
    if unreadable:
        log.warning("%d catalogued files had unreadable tags and were left out", unreadable)
    return Dataset(name="library tags", source="tags", location=catalogue.url,
                   tracks=tuple(tracks), unlabelled=tuple(unlabelled), dropped=dict(dropped))


# ---------------------------------------------------------------- embedded datasets


@dataclass
class EmbeddedSet:
    """A dataset's tracks that could be embedded, with their segments' embeddings."""

    dataset: Dataset
    tracks: list[LabelledTrack]
    embeddings: list[TrackEmbeddings]
    stats: ExtractStats
    labels: tuple[str, ...] = ()
    #: the content gate's embeddings of each track (None: not extracted), and the length of
    #: musicnn's segments that pairs them with its segments
    gate: list[TrackEmbeddings] | None = None
    segment_seconds: float = 3.0

    def __post_init__(self):
        self.labels = tuple(sorted({t.genre for t in self.tracks}))

    @property
    def track_labels(self) -> np.ndarray:
        index = {label: i for i, label in enumerate(self.labels)}
        return np.array([index[t.genre] for t in self.tracks], dtype=np.int64)

    @property
    def segment_tracks(self) -> np.ndarray:
        """For every segment (tracks in order), the index of its track."""
        return np.repeat(np.arange(len(self.tracks)), [e.segments for e in self.embeddings])

    @property
    def segment_labels(self) -> np.ndarray:
        return self.track_labels[self.segment_tracks]

    @property
    def keys(self) -> list[str]:
        return [e.key for e in self.embeddings]

    def outputs(self, backbones: Backbones) -> BackboneOutput:
        """Tag scores (from the cached embeddings) and both embeddings of every segment."""
        pen = np.concatenate([e.penultimate for e in self.embeddings])
        pooled = (None if any(e.pooled is None for e in self.embeddings)
                  else np.concatenate([e.pooled for e in self.embeddings]))
        return BackboneOutput(backbones.tag_scores_from_penultimate(pen), pen, pooled)

    def features(self, kind: str, backbones: Backbones) -> np.ndarray:
        return self.outputs(backbones).features(kind)

    def gate_penultimate(self) -> np.ndarray:
        """The content gate's embedding for every segment (tracks in order): each segment
        gets the gate segment covering it (:func:`~tagger.model.content.nearest_gate_segments`),
        as the classifier pairs them."""
        if self.gate is None:
            raise ValueError("this set was embedded without the content gate's embeddings")
        return np.concatenate([
            g.penultimate[nearest_gate_segments(e.starts_s, g.starts_s, self.segment_seconds)]
            for e, g in zip(self.embeddings, self.gate)])

    def gate_outputs(self, gate: Backbones) -> BackboneOutput:
        """:meth:`gate_penultimate` with the tag scores of ``gate``'s output layer over it."""
        pen = self.gate_penultimate()
        return BackboneOutput(gate.tag_scores_from_penultimate(pen), pen)

    def head_input(self, options, backbones: Backbones) -> np.ndarray:
        """What a head with ``options`` (:class:`~tagger.model.heads.HeadOptions`) reads of
        every segment: its embedding of musicnn, of the content gate, or both."""
        gate = self.gate_penultimate() if reads_gate(options.features) else None
        return head_input(self.outputs(backbones), options.embedding, options.features, gate)

    def segments_per_label(self) -> dict[str, int]:
        counts = Counter()
        for track, emb in zip(self.tracks, self.embeddings):
            counts[track.genre] += emb.segments
        return {label: counts[label] for label in self.labels}

    def tracks_per_label(self) -> dict[str, int]:
        counts = Counter(t.genre for t in self.tracks)
        return {label: counts[label] for label in self.labels}


def embed_dataset(dataset: Dataset, config: Config, backbones: Backbones,
                  cache: EmbeddingCache | None, *, threads: int = 2,
                  progress: Callable[[int, int], None] | None = None,
                  pooled: bool = True, gate: Backbones | None = None) -> EmbeddedSet:
    """Embeddings of every labelled track (cached ones read, the rest decoded and cached).

    ``pooled`` False: a scan's cached row (no pooled features) is enough, for a head on
    ``penultimate`` or ``tags`` (:func:`tagger.model.embeddings.needs_pooled`). ``gate``: the
    content gate's network: its embeddings too (the rows scan cached; a track without them
    is decoded once more), for heads on the AudioSet features."""
    paths = [t.path for t in dataset.tracks]
    embeddings, gated, stats = extract_with_gate(
        paths, config, backbones, cache, gate=gate,
        gate_settings=gate_settings(config.model.window_seconds), threads=threads,
        progress=progress, pooled=pooled)
    kept = [(t, e, g) for t, e, g in zip(dataset.tracks, embeddings, gated) if e is not None]
    if stats.failed:
        log.warning("%d of %d tracks could not be read and are left out", stats.failed,
                    len(paths))
    return EmbeddedSet(dataset, [t for t, _, _ in kept], [e for _, e, _ in kept], stats,
                       gate=None if gate is None else [g for _, _, g in kept],
                       segment_seconds=config.model.segment_seconds)
