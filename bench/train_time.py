"""How long ``tagger train`` takes for 1 000 tracks on this machine.

    python bench/train_time.py FOLDER [--limit 24] [--tracks 1000] [--write]

FOLDER: real music, ideally a labelled dataset (``FOLDER/<genre>/...``, e.g. the one
tools/build_game_music_dataset.py builds; otherwise labels are dealt round-robin).

1. Embedding extraction, the part that dominates: ``--limit`` real tracks are decoded, cut
   and run through both backbones into an empty cache (a temporary state directory), exactly
   as ``tagger train`` does on first use; then read back from the cache, as a retrain does.
2. Head training on 1 000 tracks: the real embeddings of step 1 are *replicated* (each copy
   a separate track for the folds) to reach ``--tracks`` tracks; the head is cross-validated
   (5 folds, the ``tagger train`` default) and trained on everything, for every head and
   embedding shape.

Prints the measured rates and the projected totals for ``--tracks`` tracks;
``--write`` replaces this script's section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from results import write_section

from tagger.config import AUDIO_EXTENSIONS, Config
from tagger.learn.datasets import Dataset, EmbeddedSet, LabelledTrack
from tagger.learn.evaluate import cross_validate
from tagger.learn.train import load_backbones
from tagger.model.embeddings import EmbeddingCache, ExtractStats, extract
from tagger.model.heads import HeadOptions, fit_head

REPO = Path(__file__).resolve().parent.parent

SECTION = "train"


def labelled_files(folder: Path, limit: int) -> list[LabelledTrack]:
    """Up to ``limit`` files, taken in turn from each genre folder (round-robin labels else)."""
    by_genre: dict[str, list[str]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower().lstrip(".") in AUDIO_EXTENSIONS:
            genre = path.relative_to(folder).parts[0] if path.parent != folder else ""
            by_genre.setdefault(genre, []).append(str(path))
    picked: list[LabelledTrack] = []
    queues = [list(v) for v in by_genre.values()]
    while len(picked) < limit and any(queues):
        for genre, queue in zip(by_genre, queues):
            if queue and len(picked) < limit:
                picked.append(LabelledTrack(queue.pop(0), genre))
    if len(by_genre) < 2:
        picked = [LabelledTrack(t.path, f"g{i % 3}") for i, t in enumerate(picked)]
    return picked


def replicate(tracks, embeddings, count: int) -> EmbeddedSet:
    out_tracks, out_embeddings = [], []
    for i in range(count):
        j = i % len(tracks)
        out_tracks.append(LabelledTrack(f"{tracks[j].path}#{i}", tracks[j].genre))
        out_embeddings.append(dataclasses.replace(embeddings[j], key=f"{embeddings[j].key}#{i}"))
    dataset = Dataset("replicated", "folder", "", tuple(out_tracks))
    return EmbeddedSet(dataset, out_tracks, out_embeddings, ExtractStats())


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=24, help="real tracks to extract")
    parser.add_argument("--tracks", type=int, default=1000, help="tracks to project for")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)

    picked = labelled_files(args.folder, args.limit)
    if len(picked) < 2:
        parser.error(f"need at least 2 audio files in {args.folder}")
    with tempfile.TemporaryDirectory(prefix="tagger-bench-") as state:
        config = Config(state_dir=state)
        backbones, load_s = timed(load_backbones, config)
        threads = torch.get_num_threads()
        cache = EmbeddingCache.for_config(config)
        paths = [t.path for t in picked]
        load_before = os.getloadavg()[0]
        (embeddings, stats), extract_s = timed(extract, paths, config, backbones, cache)
        load_during = (load_before + os.getloadavg()[0]) / 2  # other work on the machine
        (_, cached_stats), cached_s = timed(extract, paths, config, backbones, cache)
        cache.close()
    ok = [(t, e) for t, e in zip(picked, embeddings) if e is not None]
    if len(ok) < 2:
        parser.error("fewer than 2 tracks could be read")
    segments = sum(e.segments for _, e in ok) / len(ok)
    per_track = extract_s / max(stats.decoded, 1)
    per_cached = cached_s / max(cached_stats.cached, 1)
    print(f"{len(ok)} real tracks ({segments:.1f} segments each), torch threads {threads}, "
          f"{os.cpu_count()} cores; backbones loaded in {load_s:.2f} s")
    print(f"extraction (decode + features + both backbones + cache write): "
          f"{per_track:.3f} s/track ({1 / per_track:.2f} tracks/s), load average "
          f"{load_during:.1f} on {os.cpu_count()} cores")
    print(f"from the cache: {per_cached * 1000:.1f} ms/track")

    embedded = replicate([t for t, _ in ok], [e for _, e in ok], args.tracks)
    rows = []
    for embedding in ("penultimate", "pooled"):
        for kind in ("linear", "mlp"):
            options = HeadOptions(embedding=embedding, kind=kind)
            x = embedded.features(embedding, backbones)
            fit, fit_s = timed(fit_head, x, embedded.segment_labels, len(embedded.labels),
                               options)
            _, cv_s = timed(cross_validate, embedded, backbones, options, args.folds)
            rows.append((embedding, kind, x.shape[1], fit_s, cv_s))
            print(f"head {kind:<6} on {embedding:<11} ({x.shape[1]:>4}-d), {args.tracks} tracks "
                  f"({len(x)} segments): fit {fit_s:.1f} s, {args.folds}-fold CV {cv_s:.1f} s")

    default = next(r for r in rows if (r[0], r[1]) == (HeadOptions.embedding, HeadOptions.kind))
    head_s = default[3] + default[4]
    first = args.tracks * per_track + head_s
    again = args.tracks * per_cached + head_s
    print(f"tagger train on {args.tracks} tracks (defaults: {default[1]} on {default[0]}, "
          f"{args.folds}-fold CV): {first / 60:.1f} min the first time "
          f"({args.tracks * per_track / 60:.1f} min extraction), {again:.0f} s to retrain "
          "from the cache")

    if args.write:
        lines = [
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"with {threads} threads (head training: 1). Real tracks: {len(ok)} from "
            f"`{args.folder.name}` ({segments:.1f} segments of 3 s each). Load average during "
            f"extraction: {load_during:.1f} (the machine is shared: other work slows it).",
            "",
            "| stage | time |",
            "|---|---|",
            f"| embedding extraction (decode 30 s, log-mel, MSD + MTT backbones, cache write) "
            f"| {per_track:.3f} s/track ({1 / per_track:.2f} tracks/s) |",
            f"| embedding read from the cache | {per_cached * 1000:.1f} ms/track |",
        ]
        for embedding, kind, dim, fit_s, cv_s in rows:
            lines.append(f"| head `{kind}` on `{embedding}` ({dim}-d), {args.tracks} tracks: "
                         f"fit / {args.folds}-fold CV | {fit_s:.1f} s / {cv_s:.1f} s |")
        lines += [
            f"| **`tagger train`, {args.tracks} tracks, first time** | "
            f"**{first / 60:.1f} min** ({args.tracks * per_track / 60:.1f} min of it extraction) |",
            f"| **retrain from the cache** | **{again:.0f} s** |",
            "",
            f"Head training ran on the real embeddings of the {len(ok)} tracks replicated to "
            f"{args.tracks} tracks (each copy its own track for the folds): the time depends "
            "on the number of segments, not on what they hold.",
        ]
        write_section(SECTION, "Training time (`bench/train_time.py`)", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
