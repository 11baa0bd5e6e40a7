"""Commands that learn: ``train`` and ``eval`` (docs/training.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from tagger.cli.common import (
    EXIT_OK,
    UsageError,
    catalogue_of,
)
from tagger.config import Config
from tagger.errors import TaggerError


def _labelled_dataset(args: argparse.Namespace, config: Config):
    """The labelled tracks ``train``/``eval`` work on: a genre-folder dataset or --from-tags."""
    from tagger.learn.datasets import GenreMap, folder_dataset, tags_dataset

    genre_map = GenreMap.parse(args.map or (), args.genre_map)
    if args.from_tags:
        with catalogue_of(config) as catalogue:
            dataset = tags_dataset(catalogue, under=[os.path.abspath(p) for p in args.source],
                                   genre_map=genre_map, min_tracks=args.min_tracks)
        left = ", ".join(f"{g} ({n})" for g, n in sorted(dataset.dropped.items()))
        print(f"library tags: {len(dataset.tracks)} labelled tracks, "
              f"{len(dataset.unlabelled)} without a genre of their own"
              + (f"; left out (fewer than {args.min_tracks} tracks or mapped away): {left}"
                 if left else ""), file=sys.stderr)
        return dataset
    if len(args.source) != 1:
        raise UsageError("give one DATASET folder (ROOT/<genre>/...) or --from-tags",
                         prog=f"tagger {args.command}")
    return folder_dataset(args.source[0], config.library, genre_map)


def _embedding_read(args: argparse.Namespace, config: Config) -> str:
    """The embedding the head of this command reads (a bundle's, or the one trained)."""
    if getattr(args, "model", None):
        from tagger.model.bundle import DEFAULT_BUNDLE, read_card, resolve_bundle_path

        if config.model.bundle == DEFAULT_BUNDLE:
            return "tags"
        return read_card(resolve_bundle_path(config))["embedding"]
    return _head_options(args).embedding


def _embedded(args: argparse.Namespace, config: Config):
    from tagger.cli.progress import ScanDisplay
    from tagger.learn.train import embed, load_backbones
    from tagger.model.embeddings import needs_pooled

    dataset = _labelled_dataset(args, config)
    backbones = load_backbones(config)
    progress = ScanDisplay(quiet=args.quiet, label="embedding")(len(dataset.tracks))
    last = [0]

    def advance(done: int, total: int) -> None:
        progress.advance(done - last[0])
        last[0] = done

    try:
        embedded = embed(dataset, config, backbones, threads=config.scan.workers or 2,
                         progress=advance, pooled=needs_pooled(_embedding_read(args, config)))
    finally:
        progress.close()
    stats = embedded.stats
    print(f"embeddings: {stats.cached} cached, {stats.decoded} decoded, {stats.failed} "
          f"unreadable ({stats.seconds:.1f} s)", file=sys.stderr)
    return embedded, backbones


def _head_options(args: argparse.Namespace):
    from tagger.model.heads import HeadOptions

    given = {"embedding": args.embedding, "kind": args.head, "epochs": args.epochs}
    return HeadOptions(seed=args.seed, **{k: v for k, v in given.items() if v is not None})


def _write_json(path: str, data: dict) -> None:
    try:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
    except OSError as exc:
        raise TaggerError(f"cannot write the report: {exc.strerror or exc}", path) from None


def cmd_train(args: argparse.Namespace, config: Config) -> int:
    from tagger.learn.train import train_bundle

    embedded, backbones = _embedded(args, config)
    outcome = train_bundle(embedded, backbones, config, args.out, options=_head_options(args),
                           folds=args.folds, name=args.name)  # folds < 2: no cross-validation
    bundle, report = outcome.bundle, outcome.report
    counts = ", ".join(f"{g} {n}" for g, n in embedded.tracks_per_label().items())
    print(f"bundle {bundle.name} ({bundle.sha256[:12]}) written to {bundle.path}")
    options = bundle.card["training"]["options"]
    print(f"trained on {len(embedded.tracks)} tracks: {counts}; head {options['kind']} on "
          f"{options['embedding']} embeddings in {outcome.fit_seconds:.1f} s")
    if report:
        print(f"{report['folds']}-fold cross-validation: track accuracy "
              f"{report['track_accuracy']:.3f}, segment accuracy {report['segment_accuracy']:.3f}"
              f" (chance {report['chance']['uniform']:.3f})")
        if args.report:
            _write_json(args.report, report)
    print(f"use it: tagger classify --model {bundle.path} FILE..., or model.bundle in tagger.toml")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace, config: Config) -> int:
    from tagger.learn.evaluate import cross_validate, evaluate_head, format_report, plot_confusion

    embedded, backbones = _embedded(args, config)
    if args.model:
        from tagger.model.classify import genre_head

        report = evaluate_head(embedded, backbones, genre_head(config, backbones.models))
    else:
        report = cross_validate(embedded, backbones, _head_options(args), args.folds, args.seed)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(format_report(report))
    if args.report:
        _write_json(args.report, report)
    if args.plot:
        plot_confusion(report, args.plot)
    return EXIT_OK
