"""Which backbone features should a genre head read? Cross-validated accuracy of each choice.

    python tools/compare_embeddings.py DATASET [--config tagger.toml] [--folds 5] [--seeds 3]

For every embedding (tags: the 100 tag scores; penultimate: 200 + 200 dense activations;
pooled: 1506 + 1506 mid-end features; both) and head (linear, mlp), runs ``tagger eval``'s
k-fold cross-validation by track with several seeds (different folds and initialisations)
and prints a Markdown table: mean track and segment accuracy, the spread over seeds, and the
time per cross-validation. The embeddings come from the state directory's cache (decoded on
first use). docs/training.md has the figures behind the default.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from tagger.config import load_config
from tagger.learn.datasets import folder_dataset
from tagger.learn.evaluate import cross_validate
from tagger.learn.train import embed, load_backbones
from tagger.model.embeddings import EMBEDDINGS
from tagger.model.heads import HEADS, HeadOptions

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--config", help="tagger.toml (its state_dir holds the cache)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--embeddings", nargs="*", default=list(EMBEDDINGS))
    parser.add_argument("--heads", nargs="*", default=list(HEADS))
    args = parser.parse_args(argv)

    config = load_config(args.config)
    backbones = load_backbones(config)
    embedded = embed(folder_dataset(args.dataset, config.library), config, backbones)
    counts = ", ".join(f"{g} {n}" for g, n in embedded.tracks_per_label().items())
    print(f"{args.dataset.name}: {len(embedded.tracks)} tracks ({counts}), "
          f"{len(embedded.segment_tracks)} segments; {args.folds}-fold CV by track, "
          f"{args.seeds} seeds\n")
    print("| embedding | dims | head | track accuracy | segment accuracy | balanced | "
          "s per CV |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for embedding in args.embeddings:
        dims = embedded.features(embedding, backbones).shape[1]
        for kind in args.heads:
            tracks, segments, balanced, seconds = [], [], [], []
            for seed in range(args.seeds):
                options = HeadOptions(embedding=embedding, kind=kind, seed=seed)
                start = time.perf_counter()
                report = cross_validate(embedded, backbones, options, args.folds, seed)
                seconds.append(time.perf_counter() - start)
                tracks.append(report["track_accuracy"])
                segments.append(report["segment_accuracy"])
                balanced.append(report["balanced_track_accuracy"])
            print(f"| {embedding} | {dims} | {kind} | {np.mean(tracks):.3f} ± "
                  f"{np.std(tracks):.3f} | {np.mean(segments):.3f} ± {np.std(segments):.3f} | "
                  f"{np.mean(balanced):.3f} | {np.mean(seconds):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
