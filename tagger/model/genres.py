"""The genre vocabulary: which model tags make up each genre, and which are only descriptors.

Both musicnn models emit 50 independent sigmoid tag scores. MSD (Last.fm tags) knows jazz,
hip-hop, blues, folk, punk... but has no classical tag; MTT (MagnaTagATune) has classical but
few popular genres. A genre's score in a segment is the **highest** score among its member tags
from either model (docs/genres.md has the figures behind this rule). Tags that are no genre
(moods, decades, voices, instruments) are reported as descriptors and never vote.
``[genres]`` in tagger.toml can rename, merge or drop genres.

With the content gate on, the AudioSet genres musicnn cannot name (:data:`AUDIOSET_GENRES`)
join the map: EfficientAT's class scores for the gate's segment that covers each musicnn
segment, counted only where they reach :data:`AUDIOSET_GENRE_FLOOR` (below it, 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from tagger.config import GenreConfig
from tagger.errors import ConfigError

# genre -> member tags, keyed "<model prefix>:<tag>" as in the JSON output
DEFAULT_GENRES: dict[str, tuple[str, ...]] = {
    "rock": ("msd:rock", "msd:alternative", "msd:alternative rock", "msd:indie",
             "msd:indie rock", "msd:classic rock", "msd:hard rock", "msd:Progressive rock",
             "mtt:rock"),
    "pop": ("msd:pop", "msd:indie pop", "mtt:pop"),
    "electronic": ("msd:electronic", "msd:electronica", "msd:electro", "mtt:electronic",
                   "mtt:techno"),
    "dance": ("msd:dance", "msd:House", "mtt:dance"),
    "hip-hop": ("msd:Hip-Hop",),
    "r&b/soul": ("msd:soul", "msd:rnb", "msd:funk"),
    "jazz": ("msd:jazz",),
    "blues": ("msd:blues",),
    "country": ("msd:country", "mtt:country"),
    "folk": ("msd:folk",),
    "metal": ("msd:metal", "msd:heavy metal", "mtt:metal"),
    "punk": ("msd:punk",),
    "classical": ("mtt:classical", "mtt:classic", "mtt:opera"),
    "ambient": ("msd:ambient", "msd:chillout", "mtt:ambient", "mtt:new age"),
    "easy listening": ("msd:easy listening",),
    "experimental": ("msd:experimental",),
    "world": ("mtt:indian",),
}

#: AudioSet genres (EfficientAT's classes, columns 216-265) that the map above cannot name,
#: under their genre-tree names. Left out: the genres musicnn names (rock, pop, jazz,
#: classical, ...), the music of a region ("Music of Asia"), of a use ("Music for
#: children", "Christian music") and of a form ("Vocal music", "Independent music").
AUDIOSET_GENRES: dict[str, tuple[str, ...]] = {
    "reggae": ("audioset:Reggae",),
    "ska": ("audioset:Ska",),
    "disco": ("audioset:Disco",),
    "funk": ("audioset:Funk",),
    "soul": ("audioset:Soul music",),
    "gospel": ("audioset:Gospel music",),
    "swing": ("audioset:Swing music",),
    "bluegrass": ("audioset:Bluegrass",),
    "latin": ("audioset:Music of Latin America",),
    "salsa": ("audioset:Salsa music",),
    "flamenco": ("audioset:Flamenco",),
    "afrobeat": ("audioset:Afrobeat",),
    "drum & bass": ("audioset:Drum and bass",),
    "dubstep": ("audioset:Dubstep",),
    "trance": ("audioset:Trance music",),
}
#: an AudioSet genre takes part in a segment's vote only from this score: EfficientAT's
#: genre classes are sparse and low (Classical music 0.07-0.22 on orchestral tracks); on 176
#: music tracks of known genres only drum & bass, trance and bluegrass reach it, each in the
#: label's family, and none wins a track (docs/genres.md "AudioSet genres in the default
#: map", bench/genre_candidates.py)
AUDIOSET_GENRE_FLOOR = 0.3
AUDIOSET_PREFIX = "audioset:"


@dataclass(frozen=True)
class Vocabulary:
    """Genres with the output columns that feed each, and the descriptor columns."""

    genres: tuple[str, ...]
    members: tuple[np.ndarray, ...]  # per genre: indices into the concatenated model outputs
    descriptor_keys: tuple[str, ...]
    descriptor_columns: np.ndarray
    #: columns of AudioSet scores (evidence below :data:`AUDIOSET_GENRE_FLOOR` counts as 0)
    floored_columns: np.ndarray = field(default_factory=lambda: np.array([], dtype=int))
    floor: float = AUDIOSET_GENRE_FLOOR

    @property
    def hears_audioset(self) -> bool:
        """Whether a genre of the map reads AudioSet scores (they follow musicnn's)."""
        return bool(self.floored_columns.size)

    def genre_scores(self, tag_scores: np.ndarray) -> np.ndarray:
        """(segments, outputs) tag scores -> (segments, genres), each the max of its members."""
        if self.floored_columns.size:
            tag_scores = np.array(tag_scores, copy=True)
            evidence = tag_scores[:, self.floored_columns]
            evidence[evidence < self.floor] = 0.0
            tag_scores[:, self.floored_columns] = evidence
        return np.stack([tag_scores[:, cols].max(axis=1) for cols in self.members], axis=1)

    def descriptors(self, tag_scores: np.ndarray, threshold: float, limit: int) -> dict[str, float]:
        """Non-genre tags whose mean score reaches ``threshold``, best first, at most ``limit``."""
        means = tag_scores[:, self.descriptor_columns].mean(axis=0)
        order = np.argsort(-means)[:limit]
        return {self.descriptor_keys[i]: round(float(means[i]), 4)
                for i in order if means[i] >= threshold}


def build_vocabulary(output_keys: Sequence[str], config: GenreConfig = GenreConfig(),
                     genres: Mapping[str, Sequence[str]] = DEFAULT_GENRES,
                     floor: float = AUDIOSET_GENRE_FLOOR) -> Vocabulary:
    """Apply ``[genres]`` (merge, then drop, then rename) to the default genre map
    (``floor``: where AudioSet evidence starts to count)."""
    merged: dict[str, list[str]] = {name: list(tags) for name, tags in genres.items()}
    for source, target in config.merge.items():
        if source not in merged:
            raise ConfigError(f"'genres.merge': unknown genre {source!r}")
        merged.setdefault(target, []).extend(merged.pop(source))
    for name in config.drop:
        if merged.pop(name, None) is None:
            raise ConfigError(f"'genres.drop': unknown genre {name!r}")
    renamed: dict[str, list[str]] = {}
    for name, tags in merged.items():
        new = config.rename.get(name, name)
        renamed.setdefault(new, []).extend(tags)
    unknown = set(config.rename) - set(merged)
    if unknown:
        raise ConfigError(f"'genres.rename': unknown genre {sorted(unknown)[0]!r}")
    if not renamed:
        raise ConfigError("'genres': every genre was dropped")
    index = {key: i for i, key in enumerate(output_keys)}
    members = []
    for name, tags in renamed.items():
        missing = [t for t in tags if t not in index]
        if missing:
            raise ConfigError(f"genre {name!r} refers to unknown model tag {missing[0]!r}")
        members.append(np.array(sorted({index[t] for t in tags})))
    # every tag of the default map is a genre tag, even if the genre was dropped: never a
    # descriptor; AudioSet's classes are the gate's, never descriptors either
    genre_tags = {t for tags in genres.values() for t in tags}
    descriptor_keys = tuple(k for k in output_keys if k not in genre_tags
                            and not k.startswith(AUDIOSET_PREFIX))
    return Vocabulary(
        genres=tuple(renamed),
        members=tuple(members),
        descriptor_keys=descriptor_keys,
        descriptor_columns=np.array([index[k] for k in descriptor_keys]),
        floored_columns=np.array(sorted({int(c) for cols in members for c in cols
                                         if output_keys[c].startswith(AUDIOSET_PREFIX)}),
                                 dtype=int),
        floor=floor,
    )


def default_genres(audioset: bool) -> dict[str, tuple[str, ...]]:
    """The default map: musicnn's genres, and with ``audioset`` the AudioSet ones after them."""
    return {**DEFAULT_GENRES, **(AUDIOSET_GENRES if audioset else {})}
