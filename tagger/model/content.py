"""The content gate: is a track music at all? EfficientAT (AudioSet) hears it first.

The 527 AudioSet classes come in the ontology's order (class_labels_indices.csv), so its
top-level groups are runs of indices; a group's score is the highest of its classes' scores
(AudioSet labels a parent with its child, so the best class is the group's evidence):

* music: "Music" and its subtree (instruments, genres, styles, moods; 137-282) and
  "Singing" with its kinds (choir, rapping, humming; 27-37, under "Human voice")
* speech: "Speech" and its kinds (male, female, child speech, conversation, narration,
  babbling, speech synthesizer; 0-7)
* animal: "Animal" and its subtree (72-136: pets, livestock, birds, insects, whales)
* other: every other class (the rest of the human sounds: laughter, applause, footsteps;
  natural sounds, sounds of things, source-ambiguous sounds, channel and environment; silence)

The track's scores are the mean over its segments: two 10 s segments (the length the network
was trained on) at the start and the end of the middle 30 s. Three segments cost 17-19 % more
CPU per track than the scan without the gate, over the issue's 15 %; two cost 11-20 %
(bench/RESULTS.md; the gate's network alone: 80 ms of thread CPU for two, 106 for three,
against musicnn's 573 per track). The rule, chosen to keep music in: a track is
music unless another group is heard clearly (score >= :data:`MIN_EVIDENCE`) *and* louder
than music. The figures behind it are in docs/genres.md ("Is it music?") and bench/RESULTS.md.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tagger.errors import ModelError
from tagger.results import Content, ContentKind

#: version of the rule and segmenting below: part of the gate's cache key
GATE_VERSION = 1
SEGMENTS = 2
SEGMENT_SECONDS = 10.0
#: a non-music group must reach this to gate a track out (on the 79 music tracks tried music
#: is 0.45-0.94, and louder than any other group, which reaches 0.48; speech 0.76-0.83, the
#: whale song's animal 0.41: bench/content_gate.py)
MIN_EVIDENCE = 0.3

# where each group's classes lie in AudioSet's output order (the ontology's own order)
_SPEECH = range(0, 8)
_SINGING = range(27, 38)
_ANIMAL = range(72, 137)
_MUSIC = range(137, 283)
#: how many classes AudioSet has (the gate's outputs)
AUDIOSET_CLASSES = 527
#: the first class of each group, checked against the model's labels at load
ANCHORS = {0: "Speech", 27: "Singing", 72: "Animal", 137: "Music", 283: "Wind"}


def check_labels(labels: Sequence[str]) -> None:
    """A ModelError unless ``labels`` are AudioSet's 527 classes in their usual order."""
    if len(labels) != AUDIOSET_CLASSES or any(labels[i] != name for i, name in ANCHORS.items()):
        raise ModelError("the content gate needs AudioSet's 527 classes in the ontology's "
                         "order (model card efficientat.json)")


def group_scores(scores: np.ndarray) -> dict[str, float]:
    """The four groups' scores from one row of 527 class scores (see the module)."""
    scores = np.asarray(scores, dtype=np.float64)
    grouped = np.zeros(len(scores), dtype=bool)
    out = {}
    for kind, parts in (("music", (_MUSIC, _SINGING)), ("speech", (_SPEECH,)),
                        ("animal", (_ANIMAL,))):
        indices = [i for part in parts for i in part]
        grouped[indices] = True
        out[kind] = float(scores[indices].max())
    out["other"] = float(scores[~grouped].max())
    return {k: round(v, 4) for k, v in out.items()}


def content_of(segment_scores: np.ndarray) -> Content:
    """The verdict on a track from its segments' class scores, shape (segments, 527)."""
    groups = group_scores(np.asarray(segment_scores, dtype=np.float64).mean(axis=0))
    best = max(("speech", "animal", "other"), key=lambda k: groups[k])
    if groups[best] >= MIN_EVIDENCE and groups[best] > groups["music"]:
        return Content(ContentKind(best), groups)
    return Content(ContentKind.MUSIC, groups)


def gate_segments(samples: np.ndarray, sample_rate: int
                  ) -> tuple[np.ndarray, tuple[float, ...]]:
    """Up to :data:`SEGMENTS` non-overlapping segments of :data:`SEGMENT_SECONDS` spread
    evenly over the samples, shape (segments, samples), and where they start (seconds);
    shorter audio is one segment, whole."""
    length = int(SEGMENT_SECONDS * sample_rate)
    fit = min(SEGMENTS, samples.size // length)
    if fit == 0:
        return np.ascontiguousarray(samples[None, :], dtype=np.float32), (0.0,)
    starts = (np.linspace(0, samples.size - length, fit).round().astype(int) if fit > 1
              else np.array([(samples.size - length) // 2]))
    segments = np.stack([samples[s:s + length] for s in starts]).astype(np.float32, copy=False)
    return segments, tuple(float(s) / sample_rate for s in starts)


def nearest_gate_segments(starts_s: Sequence[float], gate_starts_s: Sequence[float],
                          segment_seconds: float) -> np.ndarray:
    """For each musicnn segment (``starts_s``, each ``segment_seconds`` long), the index of the
    gate segment whose centre is nearest to its centre (ties: the earlier): what pairs a
    segment with the gate's embedding of the same stretch of audio. With the gate's two 10 s
    segments over a 30 s window, the first five 3 s segments take the first, the last five
    the second.

    Times count from each set's first start: musicnn's starts are seconds from the track's
    start, the gate's from the decoded window's, and both sets begin where the window does
    (a set of one segment needs no time: everything takes it)."""
    starts = np.asarray(starts_s, dtype=np.float64)
    gate = np.asarray(gate_starts_s, dtype=np.float64)
    if not len(starts) or not len(gate):
        raise ValueError("need at least one segment on each side")
    centres = starts - starts[0] + segment_seconds / 2
    gate_centres = gate - gate[0] + SEGMENT_SECONDS / 2
    return np.abs(centres[:, None] - gate_centres[None, :]).argmin(axis=1)


def gate_settings(window_seconds: float) -> str:
    """The cache key's segment part for the gate's rows."""
    return f"gate{GATE_VERSION}:{SEGMENTS}x{SEGMENT_SECONDS:g}s@{window_seconds:g}s"
