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
from tagger.cli.output import printable, printable_lines
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
        left = ", ".join(f"{printable(g)} ({n})" for g, n in sorted(dataset.dropped.items()))
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


#: what the default genre map reads of the networks (their tags: musicnn's feature set)
DEFAULT_MAP_FEATURES = "musicnn"


def _features_read(args: argparse.Namespace, config: Config) -> str:
    """The feature set the head of this command reads (a bundle's, or the one trained)."""
    if getattr(args, "model", None):
        from tagger.model.bundle import (
            DEFAULT_BUNDLE,
            card_features,
            read_card,
            resolve_bundle_path,
        )

        if config.model.bundle == DEFAULT_BUNDLE:
            return DEFAULT_MAP_FEATURES
        return card_features(read_card(resolve_bundle_path(config)))
    return args.features


def _reads_gate(args: argparse.Namespace, config: Config) -> bool:
    """Whether this command's head reads the content gate's outputs: a head on its
    embeddings, or the default map with its AudioSet genres (``--model musicnn``)."""
    from tagger.model.classify import hears_audioset_genres
    from tagger.model.embeddings import reads_gate

    features = _features_read(args, config)
    default_map = getattr(args, "model", None) and features == DEFAULT_MAP_FEATURES
    return reads_gate(features) or bool(default_map and hears_audioset_genres(config))


def _embedded(args: argparse.Namespace, config: Config):
    """The labelled set embedded, the musicnn backbones, and the content gate's network
    (None unless the head reads its AudioSet embeddings)."""
    from tagger.cli.progress import ScanDisplay
    from tagger.learn.train import embed, load_backbones, load_gate
    from tagger.model.embeddings import needs_pooled

    dataset = _labelled_dataset(args, config)
    backbones = load_backbones(config)
    gate = load_gate(config) if _reads_gate(args, config) else None
    progress = ScanDisplay(quiet=args.quiet, label="embedding")(len(dataset.tracks))
    last = [0]

    def advance(done: int, total: int) -> None:
        progress.advance(done - last[0])
        last[0] = done

    try:
        embedded = embed(dataset, config, backbones, threads=config.scan.workers or 2,
                         progress=advance,
                         pooled=needs_pooled(_embedding_read(args, config),
                                             _features_read(args, config)),
                         gate=gate)
    finally:
        progress.close()
    stats = embedded.stats
    print(f"embeddings: {stats.cached} cached, {stats.decoded} decoded, {stats.failed} "
          f"unreadable ({stats.seconds:.1f} s)" + _gate_stats(stats), file=sys.stderr)
    return embedded, backbones, gate


def _gate_stats(stats) -> str:
    if not stats.gate_cached and not stats.gate_computed:
        return ""
    return (f"; AudioSet (content gate): {stats.gate_cached} cached, "
            f"{stats.gate_computed} computed")


def _head_options(args: argparse.Namespace):
    from tagger.model.heads import HeadOptions

    given = {"embedding": args.embedding, "kind": args.head, "epochs": args.epochs,
             "features": args.features}
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

    embedded, backbones, gate = _embedded(args, config)
    outcome = train_bundle(embedded, backbones, config, args.out, options=_head_options(args),
                           folds=args.folds, name=args.name,  # folds < 2: no cross-validation
                           gate=gate)
    bundle, report = outcome.bundle, outcome.report
    counts = ", ".join(f"{printable(g)} {n}" for g, n in embedded.tracks_per_label().items())
    print(f"bundle {bundle.name} ({bundle.sha256[:12]}) written to {bundle.path}")
    options = bundle.card["training"]["options"]
    print(f"trained on {len(embedded.tracks)} tracks: {counts}; head {options['kind']} on "
          f"{_features_name(options['features'], options['embedding'])} in "
          f"{outcome.fit_seconds:.1f} s")
    if report:
        print(f"{report['folds']}-fold cross-validation: track accuracy "
              f"{report['track_accuracy']:.3f}, segment accuracy {report['segment_accuracy']:.3f}"
              f" (chance {report['chance']['uniform']:.3f})")
        if args.report:
            _write_json(args.report, report)
    print(f"use it: tagger classify --model {bundle.path} FILE..., or model.bundle in tagger.toml")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace, config: Config) -> int:
    from tagger.learn.calibrate import calibrate, plot_reliability
    from tagger.learn.eval_report import format_report, plot_confusion
    from tagger.learn.evaluate import evaluate_on_folds

    embedded, backbones, gate = _embedded(args, config)
    head = None
    if args.model:
        from tagger.model.classify import genre_head

        head = genre_head(config, backbones.models, gate_models=gate.models if gate else ())
    features = None
    if args.baseline and head is None:
        from tagger.learn.baseline import features_for

        bar, advance = _progress(args, len(embedded.tracks), "baseline features")
        try:
            features, stats = features_for([t.path for t in embedded.tracks], config,
                                           threads=config.scan.workers or 2, progress=advance)
        finally:
            bar.close()
        print(f"baseline features: {stats.cached} cached, {stats.decoded} decoded, "
              f"{stats.failed} unreadable ({stats.seconds:.1f} s)", file=sys.stderr)
    report, held = evaluate_on_folds(
        embedded, backbones, options=_head_options(args) if head is None else None, head=head,
        k=args.folds, seed=args.seed, group_by=args.group_by, baseline_features=features,
        gate=gate)
    sha = head.info.sha256 if head is not None else ""
    calibration = calibrate(held, sha, target=config.tags.target_precision)
    report["calibration"] = calibration.as_dict() if calibration else None
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(printable_lines(format_report(report)))
    if args.report:
        _write_json(args.report, report)
    if args.plot:
        plot_confusion(report, args.plot)
    if args.reliability:
        if calibration is None:
            print("no reliability plot: too few tracks to calibrate", file=sys.stderr)
        else:
            plot_reliability([calibration], args.reliability,
                             f"{embedded.dataset.name}: held-out folds by {report['grouped_by']}")
    return EXIT_OK


# ---------------------------------------------------------------- tagger learn


def _console():
    from rich.console import Console

    # a pipe or a file gets the whole table, not one folded to 80 columns; no markup: a
    # genre from a file's tags ("[red]...") is text
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 132,
                   highlight=False, markup=False)


def _features_name(features: str, embedding: str) -> str:
    """What a head reads, in words: ``penultimate``, ``AudioSet``, ``penultimate + AudioSet``."""
    return {"musicnn": embedding, "audioset": "AudioSet",
            "both": f"{embedding} + AudioSet"}[features]


def _f(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _progress(args: argparse.Namespace, total: int, label: str):
    from tagger.cli.progress import ScanDisplay

    bar = ScanDisplay(quiet=args.quiet, label=label)(total)
    last = [0]

    def advance(done: int, _total: int) -> None:
        bar.advance(done - last[0])
        last[0] = done

    return bar, advance


def cmd_learn(args: argparse.Namespace, config: Config) -> int:
    from tagger.learn.calibrate import DEFAULT_METHOD
    from tagger.learn.datasets import GenreMap
    from tagger.learn.from_library import LEARN_EMBEDDING, learn
    from tagger.model.heads import HeadOptions

    if args.folds < 2:
        raise UsageError("--folds must be at least 2", prog="tagger learn")
    genre_map = GenreMap.parse(args.map or (), args.genre_map)
    given = {"kind": args.head, "epochs": args.epochs}
    options = HeadOptions(seed=args.seed, embedding=args.embedding or LEARN_EMBEDDING,
                          **{k: v for k, v in given.items() if v is not None})
    prefixes = [os.path.abspath(os.path.expanduser(p)) for p in args.paths] or None
    bars = []

    def on_labels(labels) -> None:
        bar, advance = _progress(args, len(labels.dataset.tracks), "embedding")
        bars.append((bar, advance))

    def progress(done: int, total: int) -> None:
        bars[-1][1](done, total)

    with catalogue_of(config) as catalogue:
        try:
            outcome = learn(catalogue, config, prefixes=prefixes, genre_map=genre_map,
                            min_tracks=args.min_tracks, folds=args.folds,
                            group_by=args.group_by, options=options,
                            features=args.features,
                            baseline=args.baseline,
                            adopt=args.adopt, name=args.name,
                            calibration_method=args.calibration or DEFAULT_METHOD,
                            target=args.target_precision, threads=config.scan.workers or 2,
                            progress=progress, on_labels=on_labels)
        finally:
            for bar, _ in bars:
                bar.close()
    print_learn(outcome, args, config)
    if args.report:
        _write_json(args.report, outcome.figures())
    if args.plot:
        from tagger.learn.calibrate import plot_reliability

        reports = [r for r in (outcome.calibrations["default"], outcome.calibrations["head"])
                   if r is not None]
        if reports:
            plot_reliability(reports, args.plot, "reliability on held-out folds "
                             f"(grouped by {outcome.grouped.grouping})")
        else:
            print("no reliability plot: too few labelled tracks to calibrate", file=sys.stderr)
    return EXIT_OK


def print_learn(outcome, args: argparse.Namespace, config: Config) -> None:
    """The learn report as rich tables."""
    from rich.table import Table

    from tagger.learn.calibrate import MIN_TRACKS

    console = _console()
    labels, embedded = outcome.labels, outcome.embedded
    stats = embedded.stats
    sources = ", ".join(f"{n} from {k}s" for k, n in sorted(labels.sources.items()))
    console.print(f"labels: {len(embedded.tracks)} tracks in {len(embedded.labels)} genres"
                  + (f" ({sources})" if sources else ""))
    console.print(f"embeddings: {stats.cached} cached, {stats.decoded} decoded, "
                  f"{stats.failed} unreadable ({stats.seconds:.1f} s)" + _gate_stats(stats))
    if outcome.baseline_stats is not None:
        b = outcome.baseline_stats
        console.print(f"baseline features: {b.cached} cached, {b.decoded} decoded, "
                      f"{b.failed} unreadable ({b.seconds:.1f} s)")
    if labels.too_few:
        console.print(f"cannot learn (fewer than {args.min_tracks} tracks): " + ", ".join(
            f"{printable(g)} ({n})" for g, n in sorted(labels.too_few.items())))
    if labels.mapped_away:
        console.print("mapped away: " + ", ".join(
            f"{printable(g)} ({n})" for g, n in sorted(labels.mapped_away.items())))
    if outcome.unknown_to_default:
        unknown = ", ".join(map(printable, outcome.unknown_to_default))
        console.print(f"the default map cannot name: {unknown} (every such track counts as a "
                      "miss for it; --map renames labels)")

    options, choice = outcome.options, outcome.features
    names = {"default": "default map (musicnn)",
             "head": f"head ({options.kind} on "
                     f"{_features_name(choice.chosen, options.embedding)})",
             "baseline": "baseline (MFCC + logistic regression)"}
    for features in choice.evaluated:
        names[f"head:{features}"] = (f"head ({options.kind} on "
                                     f"{_features_name(features, options.embedding)})"
                                     + (" *" if features == choice.chosen
                                        and len(choice.evaluated) > 1 else ""))
    overall = Table(title="held-out accuracy on the same folds (tracks, after the vote)")
    overall.add_column("model")
    for comparison in outcome.comparisons:
        k = len(set(comparison.folds.tolist()))
        overall.add_column(f"by {comparison.grouping}\n{k} folds", justify="right")
        overall.add_column(f"by {comparison.grouping}\nbalanced", justify="right")
    for key in ("default", *(f"head:{f}" for f in choice.evaluated), "baseline"):
        if key not in outcome.grouped.reports:
            continue
        cells = []
        for comparison in outcome.comparisons:
            r = comparison.reports[key]
            cells += [_f(r["track_accuracy"]), _f(r["balanced_track_accuracy"])]
        overall.add_row(names[key], *cells)
    console.print(overall)
    console.print(f"features: {choice.chosen} ({'* above; ' if len(choice.evaluated) > 1 else ''}"
                  f"--features {choice.requested}): {choice.reason}")

    grouped = outcome.grouped
    per = Table(title=f"per genre (folds by {grouped.grouping}): precision / recall / F1")
    per.add_column("genre")
    per.add_column("tracks", justify="right")
    for key in ("default", "head", "baseline"):
        if key in grouped.reports:
            per.add_column(names[key].split(" (")[0], justify="right")
    for genre in embedded.labels:
        row = [printable(genre), str(grouped.reports["head"]["per_genre"][genre]["tracks"])]
        for key in ("default", "head", "baseline"):
            if key in grouped.reports:
                g = grouped.reports[key]["per_genre"].get(genre)
                row.append("-" if g is None else
                           f"{_f(g['precision'], 2)} / {_f(g['recall'], 2)} / {_f(g['f1'], 2)}")
        per.add_row(*row)
    console.print(per)

    cal = Table(title=f"calibration (held-out folds by {grouped.grouping}; 10-bin ECE; target "
                      f"precision {outcome.target_precision:g})")
    for column in ("model", "method", "tracks", "ECE raw", "ECE isotonic", "ECE temperature",
                   "auto threshold", "precision", "coverage"):
        cal.add_column(column, justify="left" if column in ("model", "method") else "right")
    any_cal = False
    for key in ("default", "head"):
        report = outcome.calibrations[key]
        if report is None:
            continue
        any_cal = True
        by = report.ece_after_by_method
        method = report.method if report.applied else "none (did not help)"
        cal.add_row(names[key], method, str(report.tracks), _f(report.ece_before),
                    _f(by.get("isotonic")), _f(by.get("temperature")),
                    _f(report.threshold), _f(report.precision), _f(report.coverage))
    if any_cal:
        console.print(cal)
    else:
        console.print(f"calibration: fewer than {MIN_TRACKS} labelled tracks, none fitted")
    if outcome.bundle is not None:
        b = outcome.bundle
        console.print(f"adopted: {b.name} ({b.sha256[:12]}) at {b.path}; scan, watch and "
                      "retag use it from now on")
    elif not args.adopt:
        console.print("nothing adopted: --adopt makes the head the library's model")
    if config.tags.min_confidence == "auto":
        key = "head" if outcome.bundle is not None else "default"
        report = outcome.calibrations[key]
        if report is not None and report.threshold is not None:
            console.print(f"tags.min_confidence = \"auto\": {report.threshold:.3f} for the "
                          f"{names[key]} (precision {report.precision:.3f}, coverage "
                          f"{report.coverage:.3f})")
