"""Honest evaluation: stratified k-fold *by track*, accuracy per segment and per track.

The folds, the per-genre metrics and the confusion matrices are scikit-learn's; the plot is
matplotlib's.

The folds split tracks, never segments: all segments of a track (and of every file with the
same audio) are on the same side, so a test track was never heard in training. Splitting
segments at random instead lets the head recognise the recording rather than the genre,
which is how 91-95 % GTZAN figures leak. Track accuracy is measured after the same vote
``tagger classify`` runs (:func:`tagger.model.vote.vote`).

:func:`cross_validate` trains a fresh head per fold; :func:`evaluate_head` scores a fixed
model (the default genre map, or a trained bundle) on every track. Both return the report
dict that ``tagger eval --report`` writes; :mod:`tagger.learn.eval_report` prints it and
draws its confusion matrix.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from sklearn.model_selection import StratifiedGroupKFold

from tagger.errors import ConfigError
from tagger.learn.datasets import EmbeddedSet
from tagger.library.genres import genre_key
from tagger.model.embeddings import Backbones
from tagger.model.heads import HeadOptions, fit_head
from tagger.model.vote import vote

# ---------------------------------------------------------------- splitting

#: what ``--group-by`` keeps on one side of every split
GROUPINGS = ("artist", "album", "track")


def groups_for(tracks: Sequence, by: str = "artist",
               identities: Sequence[str] | None = None) -> list[str]:
    """The fold group of every track: its artist, else its album, else its audio identity.

    ``by="album"`` starts at the album, ``by="track"`` uses the identity alone. ``tracks``
    need ``artist`` and ``album`` attributes (:class:`tagger.learn.datasets.LabelledTrack`);
    ``identities`` are their audio identities (default: their paths). Names compare
    case-insensitively. Files with the same audio always share a group, whatever their tags
    say, so one recording never lands on both sides.
    """
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}; choose from {', '.join(GROUPINGS)}")
    tracks = list(tracks)
    identities = [t.path for t in tracks] if identities is None else list(identities)
    if len(identities) != len(tracks):
        raise ValueError("need one identity per track")
    keys = []
    for track, identity in zip(tracks, identities):
        key = None
        if by == "artist" and (track.artist or "").strip():
            key = "artist:" + track.artist.strip().casefold()
        if key is None and by in ("artist", "album") and (track.album or "").strip():
            key = "album:" + track.album.strip().casefold()
        keys.append(key or "track:" + identity)
    # union-find over "same key" and "same audio": a group is a connected set of tracks
    parent = list(range(len(tracks)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, (key, identity) in enumerate(zip(keys, identities)):
        for name in (key, "audio:" + identity):
            if name in first:
                parent[find(i)] = find(first[name])
            else:
                first[name] = i
    return [keys[find(i)] for i in range(len(tracks))]


def default_grouping(tracks: Sequence) -> str:
    """``artist`` when any track carries an artist or album tag, else ``track``."""
    tagged = any((t.artist or "").strip() or (t.album or "").strip() for t in tracks)
    return "artist" if tagged else "track"


def stratified_folds(labels: Sequence, k: int, seed: int = 0,
                     groups: Sequence | None = None) -> np.ndarray:
    """The fold (0..k-1) of every track, by scikit-learn's ``StratifiedGroupKFold``.

    Every fold holds about 1/k of each genre's tracks (shuffled, seeded), and tracks sharing a
    group always go to the same fold. ``groups`` is the grouping key of each track (default:
    each track alone; see :func:`groups_for`). With fewer groups than ``k``, there are as many
    folds as groups.
    """
    n = len(labels)
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    groups = list(range(n)) if groups is None else list(groups)
    if len(groups) != n:
        raise ValueError("need one group per track")
    # scikit-learn needs a genre with at least k tracks, and k groups
    k = min(k, len(set(groups)), max(Counter(labels).values(), default=0))
    if k < 2:
        raise ConfigError("cross-validation needs at least 2 groups (artists, albums or "
                          "tracks); try --group-by track")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = np.full(n, -1, dtype=np.int64)
    with warnings.catch_warnings():
        # a genre with fewer than k tracks is simply not in every fold
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        for fold, (_, test) in enumerate(splitter.split(np.zeros(n), list(labels), groups)):
            folds[test] = fold
    return folds


def segment_split(segment_tracks: np.ndarray, folds: np.ndarray,
                  fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) segment indices of one fold: test = the segments of that fold's tracks."""
    test_mask = folds[segment_tracks] == fold
    return np.flatnonzero(~test_mask), np.flatnonzero(test_mask)


# ---------------------------------------------------------------- held-out predictions


@dataclass
class HeldOut:
    """One model's prediction for every track, each made without that track's fold.

    ``confidence`` is the winner's mean score over the track's segments (what ``classify``
    reports); ``correct`` says whether the prediction names the track's genre.
    """

    model: str
    true: list[str]
    predicted: list[str]
    confidence: np.ndarray
    folds: np.ndarray
    true_seg: list[str] | None = None
    pred_seg: list[str] | None = None

    @property
    def correct(self) -> np.ndarray:
        return np.array([a == b for a, b in zip(self.true, self.predicted)], dtype=bool)

    def per_fold(self) -> list[dict]:
        rows = []
        correct = self.correct
        for fold in sorted(set(self.folds.tolist())):
            mask = self.folds == fold
            rows.append({"fold": int(fold), "tracks": int(mask.sum()),
                         "track_accuracy": float(correct[mask].mean())})
        return rows


def check_trainable(embedded: EmbeddedSet) -> None:
    labels = embedded.labels
    if len(labels) < 2:
        raise ConfigError("cross-validation needs at least 2 genres")
    rare = [labels[i] for i, c in enumerate(np.bincount(embedded.track_labels)) if c < 2]
    if rare:
        # with one track, a genre would be tested without ever being trained on
        raise ConfigError(f"cross-validation needs at least 2 tracks per genre: {', '.join(rare)}")


def head_held_out(embedded: EmbeddedSet, backbones: Backbones, options: HeadOptions,
                  folds: np.ndarray) -> HeldOut:
    """Train a head on the other folds and predict each fold's tracks, for every fold."""
    check_trainable(embedded)
    labels = embedded.labels
    y_track = embedded.track_labels
    seg_tracks = embedded.segment_tracks
    x = embedded.head_input(options, backbones)
    y_seg = y_track[seg_tracks]
    pred_track = np.full(len(y_track), -1, dtype=np.int64)
    confidence = np.zeros(len(y_track))
    pred_seg = np.full(len(y_seg), -1, dtype=np.int64)
    for fold in sorted(set(folds.tolist())):
        train_idx, test_idx = segment_split(seg_tracks, folds, fold)
        if not len(test_idx) or not len(train_idx):
            continue
        assert not set(seg_tracks[train_idx]) & set(seg_tracks[test_idx])
        fit = fit_head(x[train_idx], y_seg[train_idx], len(labels), options)
        probs = fit.net.probabilities(x[test_idx])
        pred_seg[test_idx] = probs.argmax(axis=1)
        for t in np.unique(seg_tracks[test_idx]):
            outcome = vote(labels, probs[seg_tracks[test_idx] == t])
            pred_track[t] = labels.index(outcome.genre)
            confidence[t] = outcome.confidence
    return HeldOut("head", [labels[i] for i in y_track], [labels[i] for i in pred_track],
                   confidence, folds, [labels[i] for i in y_seg], [labels[i] for i in pred_seg])


def fixed_held_out(embedded: EmbeddedSet, backbones: Backbones, head,
                   folds: np.ndarray | None = None, gate: Backbones | None = None) -> HeldOut:
    """A fixed model (no training: the default genre map, or a bundle) on every track.

    Its genres are matched to the dataset's labels case-insensitively (``Classical`` is the
    default map's ``classical``), so that the comparison is about music, not spelling.
    ``gate``: the content gate's network, for a head that reads its outputs.
    """
    aligned = embedded.gate_outputs(gate) if head.reads_gate and gate is not None else None
    scores = head.genre_scores(embedded.outputs(backbones), aligned)
    genres = tuple(head.genres)
    spelled = {genre_key(label): label for label in embedded.labels}
    named = [spelled.get(genre_key(g), g) for g in genres]
    seg_tracks = embedded.segment_tracks
    pred_seg = [named[i] for i in scores.argmax(axis=1)]
    pred_track, confidence = [], []
    for t in range(len(embedded.tracks)):
        outcome = vote(genres, scores[seg_tracks == t])
        pred_track.append(named[genres.index(outcome.genre)])
        confidence.append(outcome.confidence)
    true_track = [t.genre for t in embedded.tracks]
    folds = np.zeros(len(true_track), dtype=np.int64) if folds is None else folds
    return HeldOut(head.info.name, true_track, pred_track, np.array(confidence), folds,
                   [true_track[t] for t in seg_tracks], pred_seg)


def held_out_report(held: HeldOut, embedded: EmbeddedSet) -> dict:
    """:func:`build_report` of held-out predictions, with the per-fold track accuracy."""
    report = build_report(held.true, held.predicted, held.true_seg or held.true,
                          held.pred_seg or held.predicted,
                          paths=[t.path for t in embedded.tracks], true_labels=embedded.labels)
    if held.true_seg is None:
        report["segment_accuracy"] = None
        report.pop("segment_confusion", None)
        for row in report["per_genre"].values():
            row["segment_recall"] = None
    report["per_fold"] = held.per_fold()
    report["per_fold_track_accuracy_sd"] = float(
        np.std([f["track_accuracy"] for f in report["per_fold"]]))
    return report


# ---------------------------------------------------------------- the two evaluations


def cross_validate(embedded: EmbeddedSet, backbones: Backbones, options: HeadOptions,
                   k: int = 5, seed: int = 0, groups: Sequence | None = None,
                   folds: np.ndarray | None = None) -> dict:
    """Train a head on k-1 folds, test it on the k-th, for every fold; one pooled report.

    ``groups``: the grouping key of each track, kept on one side of every split (default:
    its audio identity, ``embedded.keys``; see :func:`groups_for`). ``folds``: the fold of
    every track, given (other models are then compared on the very same folds)."""
    return cross_validated(embedded, backbones, options, k, seed, groups, folds)[0]


def cross_validated(embedded: EmbeddedSet, backbones: Backbones, options: HeadOptions,
                    k: int = 5, seed: int = 0, groups: Sequence | None = None,
                    folds: np.ndarray | None = None) -> tuple[dict, HeldOut]:
    """:func:`cross_validate`, with the held-out predictions."""
    started = time.perf_counter()
    check_trainable(embedded)
    if folds is None:
        groups = list(embedded.keys) if groups is None else list(groups)
        folds = stratified_folds(list(embedded.track_labels), k, seed, groups=groups)
    held = head_held_out(embedded, backbones, options, folds)
    report = held_out_report(held, embedded)
    report.update({
        "mode": "cross-validation",
        "folds": int(len(set(folds.tolist()))),
        "folds_requested": k,
        "seed": seed,
        "model": {"name": "head trained per fold", "embedding": options.embedding,
                  "features": options.features, "head": options.kind,
                  "options": options.as_dict()},
        "elapsed_s": round(time.perf_counter() - started, 3),
    })
    return _with_dataset(report, embedded), held


def evaluate_head(embedded: EmbeddedSet, backbones: Backbones, head,
                  held: HeldOut | None = None) -> dict:
    """Score a fixed genre head (a :class:`tagger.model.classify.GenreHead`) on every track."""
    started = time.perf_counter()
    held = held or fixed_held_out(embedded, backbones, head)
    report = build_report(held.true, held.predicted, held.true_seg, held.pred_seg,
                          paths=[t.path for t in embedded.tracks], true_labels=embedded.labels)
    spelled = {genre_key(g) for g in head.genres}
    unknown = sorted(g for g in embedded.labels if genre_key(g) not in spelled)
    report.update({
        "mode": "fixed model",
        "folds": 0,
        "model": {"name": head.info.name, "sha256": head.info.sha256,
                  "vocabulary": list(head.genres)},
        "labels_unknown_to_model": unknown,
        "elapsed_s": round(time.perf_counter() - started, 3),
    })
    return _with_dataset(report, embedded)


def _summary(report: dict) -> dict:
    return {k: report.get(k) for k in ("track_accuracy", "balanced_track_accuracy",
                                        "segment_accuracy", "per_fold")}


def evaluate_on_folds(embedded: EmbeddedSet, backbones: Backbones, *,
                      options: HeadOptions | None = None, head=None, k: int = 5, seed: int = 0,
                      group_by: str | None = None, baseline_features=None,
                      gate: Backbones | None = None) -> tuple[dict, HeldOut]:
    """``tagger eval``: a head cross-validated (``options``) or a fixed ``head``, on folds
    grouped by ``group_by`` (default: :func:`default_grouping`), and again by track when
    that differs (``report["ungrouped"]``); the baseline on the same folds when its
    features are given (``report["baseline"]``). Returns the report and the held-out
    predictions of the grouped folds (for calibration). ``gate``: the content gate's network,
    for a fixed head that reads its outputs."""
    grouping = group_by or default_grouping(embedded.tracks)
    y = list(embedded.track_labels)
    try:
        fold_sets = {grouping: stratified_folds(
            y, k, seed, groups=groups_for(embedded.tracks, grouping, embedded.keys))}
        if grouping != "track":
            fold_sets["track"] = stratified_folds(y, k, seed, groups=list(embedded.keys))
    except ConfigError:
        if head is None:
            raise
        # a fixed model needs no folds: they only split its figures (and its calibration)
        grouping, fold_sets = "track", {"track": np.zeros(len(y), dtype=np.int64)}
    reports, helds = {}, {}
    for name, folds in fold_sets.items():
        if head is None:
            reports[name], helds[name] = cross_validated(embedded, backbones, options, k, seed,
                                                         folds=folds)
        else:
            helds[name] = fixed_held_out(embedded, backbones, head, folds, gate)
            reports[name] = evaluate_head(embedded, backbones, head, held=helds[name])
    report = reports[grouping]
    report["grouped_by"] = grouping
    if grouping != "track":
        report["ungrouped"] = _summary(reports["track"])
    if baseline_features is not None:
        from tagger.learn.baseline import baseline_held_out

        report["baseline"] = {}
        for name, folds in fold_sets.items():
            held = baseline_held_out(embedded, baseline_features, folds, seed)
            report["baseline"]["grouped" if name == grouping else "ungrouped"] = _summary(
                held_out_report(held, embedded))
    return report, helds[grouping]


def _with_dataset(report: dict, embedded: EmbeddedSet) -> dict:
    dataset = embedded.dataset
    report["dataset"] = {
        "name": dataset.name, "source": dataset.source, "location": dataset.location,
        "tracks_per_genre": embedded.tracks_per_label(),
        "segments_per_genre": embedded.segments_per_label(),
        "unreadable": embedded.stats.failed,
    }
    report["embeddings"] = {"cached": embedded.stats.cached, "decoded": embedded.stats.decoded,
                            "seconds": round(embedded.stats.seconds, 3)}
    return report


# ---------------------------------------------------------------- metrics


def build_report(true_track: Sequence[str], pred_track: Sequence[str],
                 true_seg: Sequence[str], pred_seg: Sequence[str], *,
                 paths: Sequence[str], true_labels: Sequence[str]) -> dict:
    """Accuracies, per-genre precision/recall/F1 and the confusion matrices (rows: truth)."""
    true_labels = list(true_labels)
    extra = sorted((set(pred_track) | set(pred_seg)) - set(true_labels))
    columns = true_labels + extra
    matrix = confusion_matrix(true_track, pred_track, labels=columns)
    seg_matrix = confusion_matrix(true_seg, pred_seg, labels=columns)
    # undefined ratios (nothing predicted / no such track) are NaN here, None in the report
    precision, recall, f1, support = precision_recall_fscore_support(
        true_track, pred_track, labels=columns, zero_division=np.nan)
    _, seg_recall, _, _ = precision_recall_fscore_support(
        true_seg, pred_seg, labels=columns, zero_division=np.nan)
    per_genre = {}
    for j, genre in enumerate(columns):
        p, r = _defined(precision[j]), _defined(recall[j])
        per_genre[genre] = {
            # F1 only where both precision and recall are defined
            "precision": _round(p), "recall": _round(r),
            "f1": _round(f1[j] if p is not None and r is not None else None),
            "tracks": int(support[j]), "predicted": int(matrix[:, j].sum()),
            "segment_recall": _round(_defined(seg_recall[j])),
        }
    n = len(true_track)
    recalls = [per_genre[g]["recall"] for g in true_labels if per_genre[g]["recall"] is not None]
    counts = Counter(true_track)
    return {
        "tracks": n,
        "segments": len(true_seg),
        "labels": true_labels,
        "track_accuracy": _round(np.mean([a == b for a, b in zip(true_track, pred_track)])),
        "segment_accuracy": _round(np.mean([a == b for a, b in zip(true_seg, pred_seg)])),
        "balanced_track_accuracy": _round(np.mean(recalls)) if recalls else None,
        "chance": {"uniform": _round(1 / len(true_labels)),
                   "majority": _round(max(counts.values()) / n)},
        "per_genre": per_genre,
        "confusion": {"labels": columns, "rows": "true genre", "columns": "predicted genre",
                      "matrix": matrix.tolist()},
        "segment_confusion": {"labels": columns, "matrix": seg_matrix.tolist()},
        "mistakes": [{"path": p, "genre": a, "predicted": b}
                     for p, a, b in zip(paths, true_track, pred_track) if a != b],
    }


def _defined(value) -> float | None:
    return None if np.isnan(value) else float(value)


def _round(value) -> float | None:
    return None if value is None else round(float(value), 4)
