"""Classifier throughput on full-length real tracks, against musicnn's TensorFlow originals.

    python bench/throughput.py FOLDER [--limit 16] [--contend 2] [--musicnn-dir DIR] [--write]

Prints tracks/s and per-stage milliseconds (decode, features, model) of tagger's pipeline, and
the end-to-end rate of what ``tagger classify`` runs (``classify_files``: decode worker
processes feeding the model in this process) on a quiet machine and with ``--contend N``
CPU-bound competitor processes (busy loops this script starts and stops itself) on the same
cores, side by side.
When TensorFlow is importable and the musicnn 0.1.0 checkpoints are at --musicnn-dir
(``pip download --no-deps musicnn==0.1.0`` and unzip), it also times, in the same run:
  * the original TF graphs on the identical segments (same batches, same threads);
  * the whole-track approach of musicnn's own tagger (``musicnn.extractor``): the whole file
    decoded with librosa, the whole log-mel, every 3 s patch run through the graph one at a
    time, graph and checkpoint loaded per call; and a kinder variant with the graph loaded
    once and all patches in one batch, to show where the gain comes from;
  * issue #12's baseline, "the TF graph the musicnn way" (each file decoded whole by librosa,
    then tagger's own 10 segments through both graphs), quiet and contended, in the same
    rounds as tagger's end-to-end runs. librosa reads M4A through audioread, which needs an
    ``ffmpeg`` on PATH.
``--agreement DIR...`` instead compares bf16 with fp32 inference on every track under the
folders (decoded once, the same segments through both): the share of tracks with the same
winning genre, and the largest and mean differences of the scores.
``--write`` replaces this script's section of bench/RESULTS.md with the figures.
TensorFlow is a dev-only tool here: nothing in tagger imports it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from results import write_section

from tagger.audio.decode import decode_window
from tagger.audio.features import FRAMES_PER_SEGMENT, PreparedTrack, segment
from tagger.config import AUDIO_EXTENSIONS, Config
from tagger.model.classify import Classifier
from tagger.service.classify import classify_files
from tagger.service.pool import DecodePool

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


#: The TF graph done the musicnn way (whole-file decode + the same 10 segments), as recorded
#: in issue #12 on this machine, for when TensorFlow is not importable in this run.
RECORDED_TF_MS = {"quiet": 684.0, "contended": 3064.0}


@contextmanager
def competitors(count: int):
    """``count`` CPU-bound processes (pure-Python busy loops), stopped on exit."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
             for _ in range(count)]
    try:
        time.sleep(0.5)  # let them reach the run queue
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def end_to_end(classifier: Classifier, paths: list[str]) -> float:
    """Seconds for ``tagger classify`` over ``paths`` with the model loaded and the workers
    up: decode worker processes feeding this process's model
    (:func:`tagger.service.classify.classify_files`), the decode overlapped with inference.
    The workers stay up between runs, as in a long run (fresh ones take a few files to reach
    their pace: ``cold_command`` times the whole command)."""
    start = time.perf_counter()
    results = list(classify_files(classifier.config, paths, classifier=classifier,
                                  decoders=decoders(classifier.config)))
    elapsed = time.perf_counter() - start
    failed = [r for r in results if r.error]
    if failed:
        print(f"{len(failed)} files failed: {failed[0].error}", file=sys.stderr)
    return elapsed


_decoders: list[DecodePool] = []


def decoders(config: Config) -> DecodePool:
    """The decode pool, kept up for the whole bench."""
    if not _decoders:
        _decoders.append(DecodePool(config))
    return _decoders[0]


def cold_command(paths: list[str]) -> float:
    """Seconds for the whole ``tagger classify`` command over ``paths`` in a new process:
    start-up, model load, fresh workers."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tagger", "classify", *paths], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    return time.perf_counter() - start


def bench_tagger(paths: list[str], config: Config) -> dict:
    classifier, load_s = timed(Classifier, config)
    classifier.classify_prepared([_prepare(paths[0], config)[0]])  # warm-up
    list(classify_files(config, paths[:4], classifier=classifier, decoders=decoders(config)))
    decode_ms, features_ms, prepared = [], [], []
    for path in paths:
        track, (d, f) = _prepare(path, config)
        decode_ms.append(d * 1000)
        features_ms.append(f * 1000)
        prepared.append(track)
    patches = np.concatenate([t.patches for t in prepared])
    _, model_s = timed(classifier.tag_scores, patches)
    results, wall_s = timed(lambda: list(classify_files(config, paths, classifier=classifier,
                                                        decoders=decoders(config))))
    # the library's own call, decoding in threads of this process, for comparison
    _, threads_s = timed(lambda: list(classifier.classify(paths)))
    failures = [r for r in results if r.error]
    return {
        "classifier": classifier, "prepared": prepared, "patches": patches,
        "load_s": load_s, "decode_ms": decode_ms, "features_ms": features_ms,
        "model_ms_per_track": model_s * 1000 / len(paths),
        "model_ms_per_patch": model_s * 1000 / len(patches),
        "wall_s": wall_s, "tracks_per_s": len(paths) / wall_s, "failures": failures,
        "threads_ms_per_track": threads_s * 1000 / len(paths),
        "cold_s": cold_command(paths),
        "genres": [r.vote.genre if r.vote else r.error for r in results],
    }


def _prepare(path: str, config: Config) -> tuple[PreparedTrack, tuple[float, float]]:
    audio, decode_s = timed(lambda: decode_window(path, window_s=config.model.window_seconds))
    segments, features_s = timed(segment, audio.samples, config.model.segments)
    starts = tuple(round(audio.offset_s + start, 3) for start in segments.starts_s)
    track = PreparedTrack(path, segments.patches, starts, audio.duration_s)
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
        start = time.perf_counter()
        for name in self.graph_defs:
            mel = musicnn_mel(path)
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

    def musicnn_way(self, tracks: list[PreparedTrack]) -> float:
        """Seconds for the graphs "the musicnn way" over ``tracks``: each file decoded whole and
        its log-mel made as musicnn does, then tagger's own segments of it (the middle 30 s)
        through both graphs, loaded once, one batch per track. Issue #12's baseline."""
        start = time.perf_counter()
        n = FRAMES_PER_SEGMENT
        for track in tracks:
            mel = musicnn_mel(track.path)
            first = [min(round(s * 16000 / 256), len(mel) - n) for s in track.starts_s]
            patches = np.stack([mel[i:i + n] for i in first])
            for name in self.graph_defs:
                self.run(name, patches)
        return time.perf_counter() - start


def musicnn_mel(path: str) -> np.ndarray:
    """The whole file's log-mel as musicnn.extractor.batch_data makes it (float16 mel)."""
    import librosa

    audio, sr = librosa.load(path, sr=16000)
    mel = librosa.feature.melspectrogram(y=audio, sr=sr, hop_length=256, n_fft=512,
                                         n_mels=96).T.astype(np.float16)
    return np.log10(10000 * mel + 1)


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def report(args, paths, ours, tf_figures) -> str:
    durations = [t.duration_s for t in ours["prepared"]]
    n_patches = len(ours["patches"])
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"model threads {ours['classifier'].config.model.threads or os.cpu_count()} "
        f"({ours['classifier'].precision}); "
        f"{len(paths)} full-length tracks from `{args.folder}` "
        f"(median {median(durations):.0f} s, {n_patches} segments).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| tagger end to end (`tagger classify`: decode workers, model here) | "
        f"**{ours['tracks_per_s']:.2f} tracks/s** "
        f"({ours['wall_s'] * 1000 / len(paths):.0f} ms/track) |",
        "| `Classifier.classify` (decode in threads of the model's process) | "
        f"{ours['threads_ms_per_track']:.0f} ms/track |",
        f"| the whole `tagger classify` command, {len(paths)} files, new process | "
        f"{ours['cold_s']:.1f} s ({ours['cold_s'] * 1000 / len(paths):.0f} ms/track) |",
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


def agreement_report(folders: list[Path]) -> str:
    """bf16 against fp32 on the same segments of every track under ``folders``."""
    import dataclasses

    import torch

    from tagger.audio.features import prepare_track
    from tagger.errors import TaggerError
    from tagger.model.embeddings import BackboneOutput
    from tagger.model.vote import vote

    paths = sorted({p for folder in folders for p in audio_files(folder, 10**9)})
    config = Config()
    prepared = []
    for path in paths:
        try:
            prepared.append(prepare_track(path, config))
        except TaggerError:
            pass  # too short (jingles), or not music: not part of the comparison
    classifiers = {name: Classifier(dataclasses.replace(
        config, model=dataclasses.replace(config.model, precision=name))) for name in
        ("fp32", "bf16")}
    patches = np.concatenate([t.patches for t in prepared])
    scores, seconds = {}, {}
    for name, classifier in classifiers.items():
        classifier.tag_scores(patches[:20])  # warm-up
        start = time.perf_counter()
        tags = classifier.tag_scores(patches)
        seconds[name] = time.perf_counter() - start
        scores[name] = (tags, classifier.head.genre_scores(BackboneOutput(tags)))
    same, start = 0, 0
    winners = {"fp32": [], "bf16": []}
    for track in prepared:
        stop = start + len(track.patches)
        for name in winners:
            outcome = vote(classifiers[name].head.genres, scores[name][1][start:stop])
            winners[name].append(outcome.genre)
        same += winners["fp32"][-1] == winners["bf16"][-1]
        start = stop
    tag_diff = np.abs(scores["fp32"][0] - scores["bf16"][0])
    genre_diff = np.abs(scores["fp32"][1] - scores["bf16"][1])
    segment_same = float(np.mean(scores["fp32"][1].argmax(1) == scores["bf16"][1].argmax(1)))
    return "\n".join([
        f"bf16 against fp32 (`model.precision`), {len(prepared)} real full-length tracks "
        f"({len(patches)} segments) from {', '.join(f'`{f}`' for f in folders)}; torch "
        f"{torch.__version__}, native bf16: {classifiers['bf16'].dtype == torch.bfloat16}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| same winning genre (track vote) | **{same}/{len(prepared)} = "
        f"{same / len(prepared):.1%}** |",
        f"| same winning genre per segment | {segment_same:.1%} |",
        f"| genre scores: max / mean absolute difference | {genre_diff.max():.4f} / "
        f"{genre_diff.mean():.5f} |",
        f"| tag scores (100 outputs): max / mean absolute difference | {tag_diff.max():.4f} / "
        f"{tag_diff.mean():.5f} |",
        f"| model time, fp32 / bf16 | {seconds['fp32'] * 1000 / len(patches):.1f} / "
        f"{seconds['bf16'] * 1000 / len(patches):.1f} ms per segment (both models) -> "
        f"bf16 {seconds['fp32'] / seconds['bf16']:.2f}x |",
    ])


def contention_report(args, paths: list[str], classifier: Classifier, tf_figures) -> str:
    """End-to-end ms/track quiet and with ``args.contend`` competitors, interleaved rounds;
    the TF graph the musicnn way in the same rounds when TensorFlow is importable."""
    graphs = tf_figures["graphs"] if tf_figures else None
    quiet, contended, tf_quiet, tf_contended = [], [], [], []
    for _ in range(args.rounds):
        quiet.append(end_to_end(classifier, paths) * 1000 / len(paths))
        if graphs:
            tf_quiet.append(graphs.musicnn_way(tf_figures["tracks"]) * 1000 / len(paths))
        with competitors(args.contend):
            contended.append(end_to_end(classifier, paths) * 1000 / len(paths))
            if graphs:
                tf_contended.append(graphs.musicnn_way(tf_figures["tracks"]) * 1000
                                    / len(paths))
    q, c = median(quiet), median(contended)
    if graphs:
        tf_q, tf_c, tf_note = median(tf_quiet), median(tf_contended), "this run"
    else:
        tf_q, tf_c = RECORDED_TF_MS["quiet"], RECORDED_TF_MS["contended"]
        tf_note = "recorded in issue #12 (TensorFlow not importable in this run)"
    load = os.getloadavg()[0]
    rounds = ("rounds (ms/track): quiet " + ", ".join(f"{v:.0f}" for v in quiet)
              + "; contended " + ", ".join(f"{v:.0f}" for v in contended))
    if graphs:
        rounds += ("; TF quiet " + ", ".join(f"{v:.0f}" for v in tf_quiet)
                   + "; TF contended " + ", ".join(f"{v:.0f}" for v in tf_contended))
    return "\n".join([
        f"End to end (`tagger classify`, model loaded: `classify_files`), {len(paths)} tracks, "
        f"median of {args.rounds} interleaved round(s); contended: {args.contend} CPU-bound "
        f"busy-loop processes on the same {os.cpu_count()} cores (fair share: "
        f"{os.cpu_count() / (os.cpu_count() + args.contend):.0%} of quiet throughput); "
        f"load average {load:.2f} after the runs.",
        "",
        "| | quiet | contended | throughput kept |",
        "|---|---|---|---|",
        f"| tagger, ms/track | {q:.0f} | {c:.0f} | **{q / c:.0%}** |",
        f"| TF graph the musicnn way, ms/track ({tf_note}) | {tf_q:.0f} | {tf_c:.0f} | "
        f"{tf_q / tf_c:.0%} |",
        f"| tagger faster than TF by | {tf_q / q:.1f}x | {tf_c / c:.1f}x | |",
        "",
        rounds,
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?")
    parser.add_argument("--agreement", type=Path, nargs="+", metavar="DIR",
                        help="compare bf16 with fp32 on every track under these folders")
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--whole-track-limit", type=int, default=4)
    parser.add_argument("--contend", type=int, default=2,
                        help="CPU-bound competitors for the contended run (0: none)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="quiet/contended pairs of end-to-end runs (medians reported)")
    parser.add_argument("--musicnn-dir", type=Path, default=Path("/tmp/musicnn/musicnn"))
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)
    if args.agreement:
        text = agreement_report(args.agreement)
        print(text)
        if args.write:
            write_section("precision", "bf16 against fp32 (`bench/throughput.py --agreement`)",
                          text)
        return 0
    if args.folder is None:
        parser.error("a FOLDER of tracks is needed (or --agreement DIR...)")
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
            "graphs": graphs, "tracks": ours["prepared"],
        }
    text = report(args, paths, ours, tf_figures)
    if args.contend:
        text += "\n\n" + contention_report(args, paths, ours["classifier"], tf_figures)
    for pool in _decoders:
        pool.close()
    print(text)
    if args.write:
        write_section("throughput", "Classifier throughput (`bench/throughput.py`)", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
