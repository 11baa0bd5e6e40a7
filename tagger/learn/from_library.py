"""``tagger learn``: a genre head from the library's own labels, measured against the default
map on the same folds, calibrated, and (``--adopt``) made the library's model.

1. The labels: ``catalogue.labelled_tracks()`` (the genres the user set in the files and their
   corrections; never a genre tagger wrote), the genre map applied, case unified; genres with
   fewer than ``min_tracks`` tracks are left out (reported). Another library's labels come in
   through :func:`labels_from_rows` (the beets plugin's).
2. The embeddings: read from the cache scan fills; only what is missing is decoded.
3. The folds: ``StratifiedGroupKFold``, grouped by artist (album, then the audio identity when
   the tags lack it; ``group_by``), and, for comparison, by track.
4. On the very same folds: a head trained per fold on each feature set (musicnn's embedding,
   the content gate's AudioSet embedding, both: :data:`FEATURE_SETS`), the default genre map
   (no training: its genres matched to the labels case-insensitively), and optionally the
   MFCC baseline. ``features="auto"`` keeps the head on musicnn unless the grouped folds say
   another set is better (:func:`choose_features`).
5. Calibration of the chosen head and of the default map on the grouped held-out folds
   (:mod:`tagger.learn.calibrate`), with the ``tags.min_confidence = "auto"`` threshold.
6. ``adopt``: the head trained on every labelled track is written to
   ``<state>/models/<name>-<sha12>`` with its calibration in the card, and recorded with
   ``catalogue.record_adoption``; calibrations go to ``catalogue.record_calibration``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tagger.config import Config
from tagger.errors import ConfigError, WriteError
from tagger.learn.calibrate import (
    DEFAULT_METHOD,
    MIN_TRACKS,
    CalibrationReport,
    calibrate,
)
from tagger.learn.datasets import Dataset, EmbeddedSet, GenreMap, LabelledTrack
from tagger.learn.evaluate import (
    HeldOut,
    fixed_held_out,
    groups_for,
    head_held_out,
    held_out_report,
    stratified_folds,
)
from tagger.learn.train import embed, load_backbones, load_gate, train_bundle
from tagger.library.genres import genre_key
from tagger.model.embeddings import FEATURE_SETS, Backbones, needs_pooled
from tagger.model.heads import HeadOptions

log = logging.getLogger(__name__)

#: the embedding ``learn`` trains on: the one scan caches for every track (no decode)
LEARN_EMBEDDING = "penultimate"
MODELS_DIR = "models"
#: ``--features``: a feature set, or auto (the rule of :func:`choose_features`)
FEATURE_CHOICES = ("auto", *FEATURE_SETS)


@dataclass
class Labels:
    """The library's labels after the genre map and ``min_tracks``."""

    dataset: Dataset
    too_few: dict[str, int] = field(default_factory=dict)  # genre -> tracks (< min_tracks)
    mapped_away: dict[str, int] = field(default_factory=dict)  # value -> tracks
    sources: dict[str, int] = field(default_factory=dict)  # "tag"/"correction" -> tracks


def library_labels(catalogue, *, prefixes: Sequence[str] | None = None,
                   genre_map: GenreMap | None = None, min_tracks: int = 5) -> Labels:
    """The labelled tracks of the catalogue (below ``prefixes``), ready to learn from."""
    rows = catalogue.labelled_tracks(list(prefixes) if prefixes else None)
    return labels_from_rows(rows, location=catalogue.url, genre_map=genre_map,
                            min_tracks=min_tracks)


def labels_from_rows(rows: Sequence, *, location: str, genre_map: GenreMap | None = None,
                     min_tracks: int = 5) -> Labels:
    """Labels from rows shaped as ``Catalogue.labelled_tracks`` gives them (``path``,
    ``genre``, ``artist``, ``album``, ``source``), from the catalogue or from another
    library (the beets plugin): the genre map applied, case unified, ``min_tracks`` kept."""
    genre_map = genre_map or GenreMap()
    mapped, mapped_away = [], Counter()
    for row in rows:
        label = genre_map(row.genre)
        if label is None:
            mapped_away[row.genre] += 1
        else:
            mapped.append((row, label))
    spellings: dict[str, Counter] = {}
    for _, label in mapped:
        spellings.setdefault(genre_key(label), Counter())[label] += 1
    canonical = {k: min(c, key=lambda v: (-c[v], v)) for k, c in spellings.items()}
    counts = Counter(canonical[genre_key(label)] for _, label in mapped)
    tracks, too_few, sources = [], {}, Counter()
    for row, label in mapped:
        genre = canonical[genre_key(label)]
        if counts[genre] >= min_tracks:
            tracks.append(LabelledTrack(row.path, genre, row.artist, row.album))
            sources[row.source.value] += 1
        else:
            too_few[genre] = counts[genre]
    dataset = Dataset(name="library", source="library", location=location,
                      tracks=tuple(tracks),
                      dropped={**dict(mapped_away), **too_few})
    return Labels(dataset, too_few, dict(mapped_away), dict(sources))


@dataclass
class Comparison:
    """The models on one set of folds."""

    grouping: str  # artist | album | track
    folds: np.ndarray
    # "default", "head:<feature set>" for each set evaluated, "head" (the chosen set's),
    # "baseline"
    held: dict[str, HeldOut]
    reports: dict[str, dict]


@dataclass(frozen=True)
class FeatureChoice:
    """Which feature set the head reads, and why."""

    requested: str  # auto or a feature set
    evaluated: tuple[str, ...]  # the sets cross-validated, musicnn first
    chosen: str
    reason: str


def choose_features(grouped: Comparison, evaluated: Sequence[str], requested: str = "auto"
                    ) -> FeatureChoice:
    """The feature set of the head: ``requested``, unless it is auto. Auto keeps musicnn
    unless another set's held-out **balanced** track accuracy on the grouped folds (by
    artist, by default) is strictly higher than musicnn's (at the report's four decimals);
    of several that are, the highest, ties to the one with fewer inputs (audioset, then
    both). musicnn is the cheaper default: a head on it needs no content gate."""
    def balanced(features: str) -> float:
        value = grouped.reports[f"head:{features}"]["balanced_track_accuracy"]
        return -1.0 if value is None else value

    evaluated = tuple(evaluated)
    scores = ", ".join(f"{f} {balanced(f):.3f}" for f in evaluated)
    where = f"balanced accuracy by {grouped.grouping}: {scores}"
    if requested != "auto":
        return FeatureChoice(requested, evaluated, requested, f"asked for ({where})")
    best = "musicnn"
    for features in evaluated:
        if balanced(features) > balanced(best):
            best = features
    if best == "musicnn":
        reason = (f"no other feature set beats musicnn ({where})" if len(evaluated) > 1
                  else "the content gate is off ([content] gate = false): musicnn only")
    else:
        reason = f"beats musicnn ({where})"
    return FeatureChoice(requested, evaluated, best, reason)


@dataclass
class LearnOutcome:
    labels: Labels
    embedded: EmbeddedSet
    options: HeadOptions  # the chosen head's (``features``: the chosen set)
    unknown_to_default: list[str]  # labels the default map cannot name at all
    comparisons: list[Comparison]  # the grouped one first
    calibrations: dict[str, CalibrationReport | None]  # "head" / "default"
    default_sha256: str
    features: FeatureChoice
    target_precision: float = 0.9
    baseline_stats: object | None = None
    bundle: object | None = None  # the adopted Bundle
    adoption_id: int | None = None

    @property
    def grouped(self) -> Comparison:
        return self.comparisons[0]

    def figures(self) -> dict:
        """The report without file names: what the adoption records and ``--report`` writes."""
        out = {
            "tracks": len(self.embedded.tracks),
            "labels": list(self.embedded.labels),
            "tracks_per_genre": self.embedded.tracks_per_label(),
            "too_few_tracks": self.labels.too_few,
            "mapped_away": self.labels.mapped_away,
            "unknown_to_default_map": self.unknown_to_default,
            "label_sources": self.labels.sources,
            "embedding": self.options.embedding,
            "features": {"requested": self.features.requested,
                         "evaluated": list(self.features.evaluated),
                         "chosen": self.features.chosen, "reason": self.features.reason},
            "head": self.options.kind,
            "embeddings": {"cached": self.embedded.stats.cached,
                           "decoded": self.embedded.stats.decoded,
                           "unreadable": self.embedded.stats.failed,
                           "gate_cached": self.embedded.stats.gate_cached,
                           "gate_computed": self.embedded.stats.gate_computed},
            "folds": {},
            "calibration": {k: (v.as_dict() if v else None)
                            for k, v in self.calibrations.items()},
        }
        for comparison in self.comparisons:
            out["folds"][comparison.grouping] = {
                "folds": int(len(set(comparison.folds.tolist()))),
                "models": {name: {k: r[k] for k in (
                    "track_accuracy", "balanced_track_accuracy", "segment_accuracy",
                    "per_genre", "per_fold", "confusion", "chance") if k in r}
                    for name, r in comparison.reports.items()},
            }
        return out


def learn(catalogue, config: Config, *, prefixes: Sequence[str] | None = None,
          genre_map: GenreMap | None = None, min_tracks: int = 5, folds: int = 5,
          group_by: str = "artist", options: HeadOptions | None = None,
          features: str = "auto",
          baseline: bool = False, adopt: bool = False, name: str = "library",
          calibration_method: str = DEFAULT_METHOD, target: float | None = None,
          min_calibration_tracks: int = MIN_TRACKS,
          threads: int = 2, backbones: Backbones | None = None,
          progress: Callable[[int, int], None] | None = None,
          on_labels: Callable[[Labels], None] | None = None,
          labels: Labels | None = None) -> LearnOutcome:
    """Everything ``tagger learn`` does (see the module docstring); prints nothing.

    ``labels``: labels made elsewhere (:func:`labels_from_rows`; ``prefixes`` and
    ``genre_map`` then do not apply); the catalogue still records the calibrations and
    the adoption. ``features``: auto (every set the config allows, chosen by
    :func:`choose_features`), ``musicnn`` (that set alone: no content gate), or a set that
    reads the gate (every set evaluated, that one adopted; needs ``[content] gate``)."""
    options = options or HeadOptions(embedding=LEARN_EMBEDDING)
    if features not in FEATURE_CHOICES:
        raise ValueError(f"unknown feature set {features!r}; choose from "
                         f"{', '.join(FEATURE_CHOICES)}")
    evaluated = (("musicnn",) if features == "musicnn"
                 or (features == "auto" and not config.content.gate) else FEATURE_SETS)
    target = config.tags.target_precision if target is None else target
    if labels is None:
        labels = library_labels(catalogue, prefixes=prefixes, genre_map=genre_map,
                                min_tracks=min_tracks)
    if on_labels is not None:
        on_labels(labels)
    if len({t.genre for t in labels.dataset.tracks}) < 2:
        raise ConfigError(
            f"need at least 2 genres with {min_tracks} or more labelled tracks each; the "
            f"library has {len(labels.dataset.tracks)} labelled tracks"
            + (f" (too few: {', '.join(f'{g} {n}' for g, n in labels.too_few.items())})"
               if labels.too_few else "")
            + " ('tagger scan' first; then set genres, or lower --min-tracks)")
    backbones = backbones or load_backbones(config)
    from tagger.model.classify import genre_head, hears_audioset_genres

    # the gate's network for the sets that read it, and for the default map when its
    # AudioSet genres are on (a ConfigError when the gate is off and a set needs it)
    gate = (load_gate(config) if len(evaluated) > 1 or hears_audioset_genres(config)
            else None)
    # a head on penultimate (or tags) needs only what scan caches: no decode for a scanned
    # library (the content gate's rows included); pooled features, and the gate's rows of a
    # track scanned without the gate, are decoded (and cached) where missing
    embedded = embed(labels.dataset, config, backbones, threads=threads, progress=progress,
                     pooled=needs_pooled(options.embedding), gate=gate)
    default_config = _with_default_model(config)
    default = genre_head(default_config, backbones.models,
                         gate_models=gate.models if gate is not None else ())
    spelled = {genre_key(g) for g in default.genres}
    unknown = sorted(g for g in embedded.labels if genre_key(g) not in spelled)

    y = list(embedded.track_labels)
    groupings = [group_by] + (["track"] if group_by != "track" else [])
    baseline_features, baseline_stats = None, None
    if baseline:
        from tagger.learn.baseline import features_for

        baseline_features, baseline_stats = features_for(
            [t.path for t in embedded.tracks], config, threads=threads)
    comparisons = []
    for grouping in groupings:
        groups = groups_for(embedded.tracks, grouping, embedded.keys)
        fold_of = stratified_folds(y, folds, options.seed, groups=groups)
        held = {"default": fixed_held_out(embedded, backbones, default, fold_of, gate)}
        for feature_set in evaluated:
            held[f"head:{feature_set}"] = head_held_out(
                embedded, backbones, dataclasses.replace(options, features=feature_set),
                fold_of)
        if baseline_features is not None:
            from tagger.learn.baseline import baseline_held_out

            held["baseline"] = baseline_held_out(embedded, baseline_features, fold_of,
                                                 options.seed)
        reports = {k: held_out_report(h, embedded) for k, h in held.items()}
        comparisons.append(Comparison(grouping, fold_of, held, reports))
    grouped = comparisons[0]
    choice = choose_features(grouped, evaluated, features)
    options = dataclasses.replace(options, features=choice.chosen)
    for comparison in comparisons:
        comparison.held["head"] = comparison.held[f"head:{choice.chosen}"]
        comparison.reports["head"] = comparison.reports[f"head:{choice.chosen}"]
    calibrations = {
        "default": calibrate(grouped.held["default"], default.info.sha256,
                             method=calibration_method, target=target,
                             min_tracks=min_calibration_tracks),
        "head": calibrate(grouped.held["head"], "", method=calibration_method,
                          target=target, min_tracks=min_calibration_tracks),
    }
    outcome = LearnOutcome(labels, embedded, options, unknown, comparisons, calibrations,
                           default.info.sha256, choice, target, baseline_stats)
    if calibrations["default"] is not None:
        _record_calibration(catalogue, calibrations["default"])
    if adopt:
        _adopt(outcome, catalogue, config, backbones, name, gate)
    return outcome


def _with_default_model(config: Config) -> Config:
    return dataclasses.replace(config, model=dataclasses.replace(config.model,
                                                                 bundle="musicnn"))


def _record_calibration(catalogue, report: CalibrationReport) -> int:
    return catalogue.record_calibration(
        report.model_sha256, report.calibrator.method, report.calibrator.parameters,
        ece_before=report.ece_before, ece_after=report.ece_after, tracks=report.tracks,
        target_precision=report.target_precision, threshold=report.threshold,
        precision=report.precision, coverage=report.coverage)


def _adopt(outcome: LearnOutcome, catalogue, config: Config, backbones: Backbones,
           name: str, gate: Backbones | None) -> None:
    """Train on every labelled track, write the bundle under the state dir, record it."""
    models = config.state_path / MODELS_DIR
    staging = models / f".{name}.new"
    head_cal = outcome.calibrations["head"]
    calibration = None
    if head_cal is not None:
        calibration = {**head_cal.calibrator.as_dict(),
                       **{k: v for k, v in head_cal.as_dict().items()
                          if k in ("ece_before", "ece_after", "tracks", "target_precision",
                                   "threshold", "precision", "coverage")}}
    grouped = outcome.grouped
    report = dict(grouped.reports["head"], mode="cross-validation",
                  folds=int(len(set(grouped.folds.tolist()))), grouped_by=grouped.grouping)
    trained = train_bundle(outcome.embedded, backbones, config, staging,
                           options=outcome.options, name=name, report=report,
                           calibration=calibration, gate=gate)
    bundle = trained.bundle
    final = models / f"{name}-{bundle.sha256[:12]}"
    try:
        if final.exists():  # the same head (same sha256) adopted before: replace it
            shutil.rmtree(final)
        os.replace(staging, final)
    except OSError as exc:
        raise WriteError(f"cannot place the bundle: {exc}", final) from None
    from tagger.model.bundle import load_bundle

    bundle = load_bundle(final, [*backbones.models, *(gate.models if gate else ())], config)
    if head_cal is not None:
        head_cal.model_sha256 = bundle.sha256
        _record_calibration(catalogue, head_cal)
    outcome.bundle = bundle
    outcome.adoption_id = catalogue.record_adoption(
        bundle.name, bundle.sha256, str(Path(final)), list(bundle.labels), outcome.figures())
