"""``tagger learn`` by feature set (issue #26): musicnn's embedding, the content gate's AudioSet
embedding, both, on the same folds, by artist and by track, for several seeds.

    python bench/learn_features.py --config TAGGER.TOML [--seeds 0 1 2]
                                   [--map "Romantic Classical=classical" ...]

Runs :func:`tagger.learn.from_library.learn` (``features="auto"``, nothing adopted) on the
catalogue that ``--config`` names, once per seed (the seed deals the folds and initialises the
heads), and prints one markdown table: held-out track accuracy and balanced accuracy of the
default map and of the head on each feature set, grouped by artist and by track, as the mean
and the standard deviation over the seeds, the set ``--features auto`` chose for each seed,
and what was decoded. The library must be scanned first (``tagger scan``; the content gate on)
for the figures to need no decode. docs/training.md, "Learning from your library, measured":
the library and the map used there.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from tagger.config import load_config
from tagger.learn.datasets import GenreMap
from tagger.learn.from_library import learn
from tagger.library.catalogue import open_catalogue

MODELS = (("default", "default map (musicnn)"), ("head:musicnn", "head on musicnn (penultimate)"),
          ("head:audioset", "head on AudioSet (EfficientAT)"),
          ("head:both", "head on both"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--map", action="append", default=[], metavar="SRC=DST")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    from tagger.model.heads import HeadOptions

    figures: dict[tuple[str, str, str], list[float]] = {}
    chosen, decoded = [], []
    started = time.perf_counter()
    with open_catalogue(config.database_url) as catalogue:
        for seed in args.seeds:
            outcome = learn(catalogue, config, genre_map=GenreMap.parse(args.map),
                            folds=args.folds,
                            options=HeadOptions(embedding="penultimate", seed=seed))
            chosen.append(outcome.features.chosen)
            stats = outcome.embedded.stats
            decoded.append((stats.decoded, stats.gate_cached, stats.gate_computed))
            for comparison in outcome.comparisons:
                for key, _ in MODELS:
                    report = comparison.reports.get(key)
                    if report is None:
                        continue
                    for metric in ("track_accuracy", "balanced_track_accuracy"):
                        figures.setdefault((key, comparison.grouping, metric), []).append(
                            report[metric])
            tracks = len(outcome.embedded.tracks)
    print(f"{tracks} labelled tracks, seeds {args.seeds}, {args.folds} folds; "
          f"{time.perf_counter() - started:.0f} s in all")
    print(f"decoded, gate rows cached, gate rows computed per seed: {decoded}")
    print(f"--features auto chose: {', '.join(chosen)}")
    print()
    print("| model | by artist | balanced | by track | balanced |")
    print("|---|---:|---:|---:|---:|")
    for key, name in MODELS:
        cells = []
        for grouping in ("artist", "track"):
            for metric in ("track_accuracy", "balanced_track_accuracy"):
                values = figures.get((key, grouping, metric))
                cells.append("-" if not values else
                             f"{np.mean(values):.3f} ± {np.std(values):.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
