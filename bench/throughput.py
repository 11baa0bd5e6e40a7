"""Classifier throughput on full-length real tracks, against musicnn's TensorFlow originals.

    python bench/throughput.py FOLDER [--limit 16] [--musicnn-dir DIR] [--write]

Prints tracks/s and per-stage milliseconds (decode, features, model) of tagger's pipeline.
When TensorFlow is importable and the musicnn 0.1.0 checkpoints are at --musicnn-dir
(``pip download --no-deps musicnn==0.1.0`` and unzip), it also times, in the same run:
  * the original TF graphs on the identical segments (same batches, same threads);
  * the whole-track approach of musicnn's own tagger (``musicnn.extractor``): the whole file
    decoded with librosa, the whole log-mel, every 3 s patch run through the graph one at a
    time, graph and checkpoint loaded per call; and a kinder variant with the graph loaded
    once and all patches in one batch, to show where the gain comes from.
``--write`` replaces this script's section of bench/RESULTS.md with the figures.
TensorFlow is a dev-only tool here: nothing in tagger imports it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from results import write_section

from tagger.audio.decode import decode_window
from tagger.audio.features import FRAMES_PER_SEGMENT, PreparedTrack, segment
from tagger.config import AUDIO_EXTENSIONS, Config
from tagger.model.classify import Classifier

REPO = Path(__file__).resolve().parent.parent


def audio_files(folder: Path, limit: int) -> list[str]:
    files = sorted(
        str(p) for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower().lstrip(".") in AUDIO_EXTENSIONS
    )
    return files[:limit]


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def bench_tagger(paths: list[str], config: Config) -> dict:
    classifier, load_s = timed(Classifier, config)
    classifier.classify_prepared([_prepare(paths[0], config)[0]])  # warm-up
    decode_ms, features_ms, prepared = [], [], []
    for path in paths:
        track, (d, f) = _prepare(path, config)
        decode_ms.append(d * 1000)
        features_ms.append(f * 1000)
        prepared.append(track)
    patches = np.concatenate([t.patches for t in prepared])
    _, model_s = timed(classifier.tag_scores, patches)
    results, wall_s = timed(lambda: list(classifier.classify(paths)))
    failures = [r for r in results if r.error]
    return {
        "classifier": classifier, "prepared": prepared, "patches": patches,
        "load_s": load_s, "decode_ms": decode_ms, "features_ms": features_ms,
        "model_ms_per_track": model_s * 1000 / len(paths),
        "model_ms_per_patch": model_s * 1000 / len(patches),
        "wall_s": wall_s, "tracks_per_s": len(paths) / wall_s, "failures": failures,
        "genres": [r.vote.genre if r.vote else r.error for r in results],
    }


def _prepare(path: str, config: Config) -> tuple[PreparedTrack, tuple[float, float]]:
    audio, decode_s = timed(lambda: decode_window(path, window_s=config.model.window_seconds))
    segments, features_s = timed(segment, audio.samples, config.model.segments)
    track = PreparedTrack(path, segments.patches, segments.starts_s, audio.duration_s)
    return track, (decode_s, features_s)


def _load_tool(name: str):
    """A script of tools/ as a module (tools/ is not a package; the bench runs from anywhere)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TFGraphs:
    """musicnn's original graphs, frozen from the wheel's checkpoints (tools/convert_musicnn.py)."""

    def __init__(self, musicnn_dir: Path, threads: int):
        convert_musicnn = _load_tool("convert_musicnn")
        import tensorflow as tf

        tf.compat.v1.disable_eager_execution()
        self.tf, self.threads, self.musicnn_dir = tf, threads, musicnn_dir
        self.graph_defs = {
            name: convert_musicnn.frozen_graph_def(tf, musicnn_dir / name)[0]
            for name in ("MSD_musicnn", "MTT_musicnn")
        }
        self.sessions = {name: self.session(name) for name in self.graph_defs}

    def session(self, name: str):
        tf = self.tf
        graph = tf.Graph()
        with graph.as_default():
            tf.compat.v1.import_graph_def(self.graph_defs[name], name="")
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=self.threads,
                                          inter_op_parallelism_threads=1)
        session = tf.compat.v1.Session(graph=graph, config=config)
        flags = [op.outputs[0] for op in graph.get_operations()
                 if op.type == "Placeholder" and op.outputs[0].dtype == tf.bool]
        return session, flags

    def run(self, name: str, patches: np.ndarray, session=None) -> np.ndarray:
        session, flags = session or self.sessions[name]
        feed = {"model/Placeholder:0": patches, **{flag: False for flag in flags}}
        return session.run("model/Sigmoid:0", feed_dict=feed)

    def identical_segments(self, patches: np.ndarray, batch: int) -> float:
        """Seconds for both graphs over the same patches, in the same batch size."""
        for name in self.graph_defs:
            self.run(name, patches[:batch])  # warm-up
        start = time.perf_counter()
        for name in self.graph_defs:
            for i in range(0, len(patches), batch):
                self.run(name, patches[i:i + batch])
        return time.perf_counter() - start

    def whole_track(self, path: str, faithful: bool) -> float:
        """Seconds for musicnn's whole-track tagging of one file with both models."""
        import librosa

        start = time.perf_counter()
        for name in self.graph_defs:
            # musicnn.extractor.batch_data: whole file, float16 mel as in the original
            audio, sr = librosa.load(path, sr=16000)
            mel = librosa.feature.melspectrogram(y=audio, sr=sr, hop_length=256, n_fft=512,
                                                 n_mels=96).T.astype(np.float16)
            mel = np.log10(10000 * mel + 1)
            n = FRAMES_PER_SEGMENT
            patches = np.stack([mel[i:i + n] for i in range(0, mel.shape[0] - n + 1, n)])
            if faithful:  # graph built and restored per call, BATCH_SIZE = 1
                session = self.session(name)
                for i in range(len(patches)):
                    self.run(name, patches[i:i + 1], session)
                session[0].close()
            else:
                self.run(name, patches)
        return time.perf_counter() - start


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def report(args, paths, ours, tf_figures) -> str:
    durations = [t.duration_s for t in ours["prepared"]]
    n_patches = len(ours["patches"])
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch threads {ours['classifier'].config.model.threads or os.cpu_count()}; "
        f"{len(paths)} full-length tracks from `{args.folder}` "
        f"(median {median(durations):.0f} s, {n_patches} segments).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| tagger end to end (decode overlapped with inference) | "
        f"**{ours['tracks_per_s']:.2f} tracks/s** "
        f"({ours['wall_s'] * 1000 / len(paths):.0f} ms/track) |",
        "| decode, median per track (middle 30 s, ffmpeg seek + soxr) | "
        f"{median(ours['decode_ms']):.0f} ms |",
        "| features, median per track (log-mel + 10 segments) | "
        f"{median(ours['features_ms']):.1f} ms |",
        f"| model, per track (10 segments x MSD + MTT) | {ours['model_ms_per_track']:.0f} ms "
        f"({ours['model_ms_per_patch']:.1f} ms per segment, both models) |",
        f"| model load (both checkpoints, sha256 checked) | {ours['load_s'] * 1000:.0f} ms |",
    ]
    if tf_figures:
        tf_ms = tf_figures["identical_s"] * 1000 / len(paths)
        ours_track_ms = ours["wall_s"] * 1000 / len(paths)
        lines += [
            f"| original TF graphs on the identical segments | {tf_ms:.0f} ms/track -> "
            f"tagger's model is **{tf_ms / ours['model_ms_per_track']:.2f}x** faster |",
            f"| musicnn's own whole-track tagger (graph per call, batch 1), "
            f"{tf_figures['whole_n']} tracks | {tf_figures['faithful_ms']:.0f} ms/track -> "
            f"tagger end to end is **{tf_figures['faithful_ms'] / ours_track_ms:.1f}x** faster |",
            "| whole-track, graph loaded once, one batch | "
            f"{tf_figures['batched_ms']:.0f} ms/track "
            f"-> {tf_figures['batched_ms'] / ours_track_ms:.1f}x |",
        ]
    else:
        lines.append("| TensorFlow comparisons | not run (TensorFlow not importable) |")
    if ours["failures"]:
        lines.append(f"\n{len(ours['failures'])} files failed: {ours['failures'][0].error}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--whole-track-limit", type=int, default=4)
    parser.add_argument("--musicnn-dir", type=Path, default=Path("/tmp/musicnn/musicnn"))
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)

    paths = audio_files(args.folder, args.limit)
    if not paths:
        parser.error(f"no audio files in {args.folder}")
    config = Config()
    ours = bench_tagger(paths, config)
    tf_figures = None
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        print("TensorFlow not importable: skipping the TF comparisons", file=sys.stderr)
    else:
        graphs = TFGraphs(args.musicnn_dir, threads=ours["classifier"].config.model.threads
                          or os.cpu_count())
        whole = paths[:args.whole_track_limit]
        ours_again = bench_tagger(paths, config)  # interleave: both sides see the same machine
        ours["model_ms_per_track"] = min(ours["model_ms_per_track"],
                                         ours_again["model_ms_per_track"])
        tf_figures = {
            "identical_s": graphs.identical_segments(ours["patches"],
                                                     config.model.batch_segments),
            "whole_n": len(whole),
            "faithful_ms": 1000 * median([graphs.whole_track(p, True) for p in whole]),
            "batched_ms": 1000 * median([graphs.whole_track(p, False) for p in whole]),
        }
    text = report(args, paths, ours, tf_figures)
    print(text)
    if args.write:
        write_section("throughput", "Classifier throughput (`bench/throughput.py`)", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
