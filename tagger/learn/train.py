"""``tagger train``: a genre head on the frozen musicnn backbones, written as a model bundle.

Steps: embed every labelled track (cached per audio identity, see :mod:`tagger.model.embeddings`);
cross-validate by track to measure the head honestly (:mod:`tagger.learn.evaluate`); train the
head on every track; write the bundle (:mod:`tagger.model.bundle`) with the training data summary
and the cross-validated metrics in its card. ``classify``, ``scan`` and ``watch`` then vote
with it when ``model.bundle`` (or ``--model``) names it.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tagger import __version__
from tagger.config import Config
from tagger.errors import ConfigError
from tagger.learn.datasets import Dataset, EmbeddedSet, embed_dataset
from tagger.learn.evaluate import cross_validate
from tagger.model.bundle import Bundle, write_bundle
from tagger.model.classify import SHIPPED_MODELS, configure_threads
from tagger.model.embeddings import Backbones, EmbeddingCache, reads_gate
from tagger.model.heads import HeadOptions, fit_head
from tagger.model.musicnn import load_musicnn

log = logging.getLogger(__name__)

#: report keys copied into a bundle's card (the per-track mistakes name files: left out)
CARD_METRICS = ("mode", "folds", "tracks", "segments", "labels", "track_accuracy",
                "segment_accuracy", "balanced_track_accuracy", "chance", "per_genre",
                "confusion", "per_fold", "per_fold_track_accuracy_sd", "seed")


def load_backbones(config: Config) -> Backbones:
    configure_threads(config.model.threads)
    return Backbones([load_musicnn(n) for n in SHIPPED_MODELS], config.model.batch_segments)


def load_gate(config: Config) -> Backbones:
    """The content gate's network (EfficientAT), for heads on its AudioSet embeddings; a
    ConfigError when ``[content] gate`` is off (then no scan computed them, and no classifier
    could feed such a head)."""
    if not config.content.gate:
        raise ConfigError("the AudioSet features are the content gate's embeddings: they need "
                          "[content] gate = true")
    from tagger.model.content import check_labels
    from tagger.model.efficientat import load_efficientat

    configure_threads(config.model.threads)
    audioset = load_efficientat()
    check_labels(audioset.labels)
    return Backbones([audioset], config.model.batch_segments)


def embed(dataset: Dataset, config: Config, backbones: Backbones, *, use_cache: bool = True,
          threads: int = 2, progress: Callable[[int, int], None] | None = None,
          pooled: bool = True, gate: Backbones | None = None) -> EmbeddedSet:
    """Embed a dataset through the state directory's cache (``use_cache=False``: no cache;
    ``pooled`` False: the head reads no pooled features, a scan's cached row will do;
    ``gate``: the content gate's embeddings too, :func:`load_gate`)."""
    if not dataset.tracks:
        raise ConfigError(f"{dataset.name}: no labelled tracks")
    cache = EmbeddingCache.for_config(config) if use_cache else None
    try:
        embedded = embed_dataset(dataset, config, backbones, cache, threads=threads,
                                 progress=progress, pooled=pooled, gate=gate)
    finally:
        if cache is not None:
            cache.close()
    if len(embedded.labels) < 2:
        raise ConfigError(f"{dataset.name}: need at least 2 genres with readable tracks, got "
                          f"{', '.join(embedded.labels) or 'none'}")
    return embedded


@dataclass(frozen=True)
class TrainOutcome:
    bundle: Bundle
    embedded: EmbeddedSet
    report: dict | None  # cross-validation, None when skipped
    fit_seconds: float


def train_bundle(embedded: EmbeddedSet, backbones: Backbones, config: Config, out: str | Path,
                 *, options: HeadOptions = HeadOptions(), folds: int = 5,
                 name: str | None = None, report: dict | None = None,
                 calibration: dict | None = None,
                 gate: Backbones | None = None) -> TrainOutcome:
    """Cross-validate (``folds`` >= 2), train on everything, write the bundle to ``out``.

    ``report``: a cross-validation report made already (``folds`` is then ignored);
    ``calibration``: the calibrator for the card (:mod:`tagger.learn.calibrate`); ``gate``:
    the content gate's network, whose identity a head on the AudioSet features records."""
    if reads_gate(options.features) and gate is None:
        raise ValueError(f"a head on {options.features!r} features needs the content gate")
    if report is None and folds >= 2:
        report = cross_validate(embedded, backbones, options, folds, options.seed)
    x = embedded.head_input(options, backbones)
    fit = fit_head(x, embedded.segment_labels, len(embedded.labels), options)
    dataset = embedded.dataset
    training = {
        "source": dataset.source,
        "dataset": dataset.name,
        "location": dataset.location,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "tagger_version": __version__,
        "tracks": len(embedded.tracks),
        "segments": int(len(x)),
        "tracks_per_genre": embedded.tracks_per_label(),
        "segments_per_genre": embedded.segments_per_label(),
        "left_out": {"unreadable": embedded.stats.failed, "genres_dropped": dataset.dropped,
                     "unlabelled": len(dataset.unlabelled)},
        "options": options.as_dict(),
        "train_seconds": round(fit.seconds, 3),
        "final_loss": round(fit.final_loss, 5),
    }
    metrics = {k: report[k] for k in CARD_METRICS if k in report} if report else None
    head = {"kind": options.kind, "input_dim": int(x.shape[1]),
            "hidden": options.hidden if options.kind == "mlp" else 0,
            "dropout": options.dropout if options.kind == "mlp" else 0.0}
    out = Path(out).expanduser().absolute()
    bundle = write_bundle(out, fit.net, name=name or out.name, labels=embedded.labels,
                          embedding=options.embedding, head=head,
                          backbones=[*backbones.models,
                                     *(gate.models if reads_gate(options.features) else ())],
                          config=config, training=training, metrics=metrics,
                          calibration=calibration, features=options.features)
    return TrainOutcome(bundle, embedded, report, fit.seconds)
