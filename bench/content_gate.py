"""The content gate (issue #26): is every music track kept, every other sound gated out, and
what does it cost per track?

    python bench/content_gate.py [--tracks 12] [--rounds 3] [--cost-only] [--write]

1. Precision and recall of the gate (``content.gate``: tagger.model.content) through the
   scan's own code (``prepare_track``, ``Classifier.hear``): every clip of shared/music/
   (LICENSES.md says which are music), the middle 30 s of Debian's game albums (Battle for
   Wesnoth, Warzone 2100: every track, all music; ``--tracks`` of each, evenly spread), and
   espeak-ng speech in three voices.
2. The decode: one window decoded at 32 kHz and halved to musicnn's 16 kHz (what the scan does
   with the gate on) against decoding at 16 kHz alone (the gate off) and against a second
   resampling of the source; what halving changes in musicnn's genre scores and votes.
3. The cost per track, gate on against gate off: decode + features, then the models, on one
   core one after the other (CPU time of this process and wall time), interleaved rounds,
   quiet and beside two busy processes (``python -c 'while 1: pass'``).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from results import write_section

from tagger.audio.decode import decode_window, resample
from tagger.audio.features import GATE_SAMPLE_RATE, SAMPLE_RATE, prepare_track, segment
from tagger.config import Config, ContentConfig
from tagger.model.classify import Classifier

SHARED = Path(__file__).resolve().parents[2] / "shared" / "music"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/music")
NOT_MUSIC = {"198-209-0000.ogg": "speech", "glacier-bay-humpback.ogg": "animal",
             # Wesnoth's music folder holds a 10 s silent filler (peak -78 dBFS, above the
             # decoder's -80 dBFS silence check): no music, whatever its folder says
             "silence.ogg": "other"}
GAMES = {"Wesnoth": Path("/usr/share/games/wesnoth"),
         "Warzone 2100": Path("/usr/share/games/warzone2100/music")}
SPEECH = ("It was the best of times, it was the worst of times, it was the age of wisdom, it "
          "was the age of foolishness, it was the epoch of belief, it was the epoch of "
          "incredulity, it was the season of Light, it was the season of Darkness.")
VOICES = ("en", "en-us+f3", "de")


def game_tracks(count: int) -> list[tuple[str, Path]]:
    out = []
    for album, root in GAMES.items():
        files = sorted(p for p in root.rglob("*") if p.suffix in (".ogg", ".opus")
                       and "music" in str(p))
        step = max(1, len(files) // count) if count else 1
        out += [(album, p) for p in files[::step][:count or None]]
    return out


def espeak_clips(folder: Path) -> list[Path]:
    out = []
    for voice in VOICES:
        path = folder / f"espeak-{voice}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), SPEECH], check=True)
        out.append(path)
    return out


def gate_table(classifier: Classifier, config: Config, clips: list[tuple[str, Path, bool]]
               ) -> tuple[list[str], dict]:
    lines = ["| source | track | truth | gate says | music | speech | animal | other |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}  # positive: gated out (not music)
    for source, path, music in clips:
        content, _ = classifier.hear(prepare_track(str(path), config))
        gated = not content.is_music
        counts[("tp" if gated else "fn") if not music else ("fp" if gated else "tn")] += 1
        s = content.scores
        wrong = " **(wrong)**" if gated == music else ""
        lines.append(f"| {source} | {path.name} | {'music' if music else 'not music'} | "
                     f"{content.kind.value}{wrong} | {s['music']:.2f} | {s['speech']:.2f} | "
                     f"{s['animal']:.2f} | {s['other']:.2f} |")
        print(lines[-1], flush=True)
    return lines, counts


def decode_figures(paths: list[Path], rounds: int) -> list[str]:
    """CPU ms per track of the three ways to the two rates, and what halving changes."""
    ways = {
        "16 kHz only (gate off)": lambda p: decode_window(p, sample_rate=SAMPLE_RATE),
        "32 kHz, halved to 16 kHz (the scan)": lambda p: resample(
            decode_window(p, sample_rate=GATE_SAMPLE_RATE).samples, GATE_SAMPLE_RATE,
            SAMPLE_RATE),
        "32 kHz and 16 kHz, each from the source": lambda p: (
            decode_window(p, sample_rate=GATE_SAMPLE_RATE),
            decode_window(p, sample_rate=SAMPLE_RATE)),
    }
    times = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            start = time.process_time()
            for p in paths:
                way(str(p))
            times[name].append((time.process_time() - start) * 1000 / len(paths))
    lines = ["| decode of the middle 30 s | CPU ms per track (median) |", "|---|---:|"]
    lines += [f"| {name} | {statistics.median(t):.0f} |" for name, t in times.items()]
    return lines


def halving_effect(classifier: Classifier, paths: list[Path]) -> str:
    """The genre scores musicnn gives halved 32 kHz audio against 16 kHz straight from the
    source: the largest difference, and whether any track's vote changed."""
    worst, changed = 0.0, 0
    for p in paths:
        direct = decode_window(str(p), sample_rate=SAMPLE_RATE).samples
        halved = resample(decode_window(str(p), sample_rate=GATE_SAMPLE_RATE).samples,
                          GATE_SAMPLE_RATE, SAMPLE_RATE)
        scores = [classifier.head.genre_scores(classifier.backbones.run(
            segment(x).patches, embeddings=False)) for x in (direct, halved)]
        worst = max(worst, float(np.abs(scores[0] - scores[1]).max()))
        changed += bool((scores[0].argmax(1) != scores[1].argmax(1)).any())
    return (f"Halving the 32 kHz window instead of resampling the source to 16 kHz moves "
            f"musicnn's genre scores by at most {worst:.4f} over {len(paths)} tracks; "
            f"segments voting otherwise: in {changed} of them.")


def cost(configs: dict[str, Config], paths: list[Path], rounds: int) -> dict[str, dict]:
    """Per track, for each config: CPU ms (this process, all threads) and wall ms of the
    decode and features (``prepare_track``, what a scan's worker does) and of the models
    (``classify_embedded``: the musicnn pair, the gate when on, the vote), one after the
    other on one core; medians of interleaved rounds."""
    classifiers = {name: Classifier(c) for name, c in configs.items()}
    for name, classifier in classifiers.items():  # warm: first calls load and compile
        classifier.classify_embedded([prepare_track(str(p), configs[name]) for p in paths[:2]])
    times = {name: {k: [] for k in ("decode cpu", "decode wall", "model cpu", "model wall")}
             for name in configs}
    for _ in range(rounds):
        for name, classifier in classifiers.items():
            cpu, wall = time.process_time(), time.perf_counter()
            tracks = [prepare_track(str(p), configs[name]) for p in paths]
            times[name]["decode cpu"].append(time.process_time() - cpu)
            times[name]["decode wall"].append(time.perf_counter() - wall)
            cpu, wall = time.process_time(), time.perf_counter()
            classifier.classify_embedded(tracks)
            times[name]["model cpu"].append(time.process_time() - cpu)
            times[name]["model wall"].append(time.perf_counter() - wall)
    return {name: {k: statistics.median(v) * 1000 / len(paths) for k, v in by.items()}
            for name, by in times.items()}


def cost_lines(figures: dict[str, dict[str, dict]]) -> list[str]:
    lines = ["| machine | gate | decode + features, CPU ms | models, CPU ms | per track, "
             "CPU ms | vs off | per track, wall ms | vs off |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for load, by_config in figures.items():
        off = by_config["off"]
        off_cpu, off_wall = (off["decode cpu"] + off["model cpu"],
                             off["decode wall"] + off["model wall"])
        for name, t in by_config.items():
            cpu, wall = t["decode cpu"] + t["model cpu"], t["decode wall"] + t["model wall"]
            lines.append(f"| {load} | {name} | {t['decode cpu']:.0f} | {t['model cpu']:.0f} | "
                         f"{cpu:.0f} | {(cpu / off_cpu - 1) * 100:+.1f} % | {wall:.0f} | "
                         f"{(wall / off_wall - 1) * 100:+.1f} % |")
    return lines


def quiet_and_busy(configs: dict[str, Config], paths: list[Path], rounds: int
                   ) -> dict[str, dict]:
    """:func:`cost` on a quiet machine, then beside two busy processes."""
    figures = {"quiet": cost(configs, paths, rounds)}
    busy = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(2)]
    try:
        figures["beside two busy processes"] = cost(configs, paths, rounds)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    return figures


def cost_only(configs: dict[str, Config], rounds: int, write: bool) -> None:
    """The cost per track alone, on the music clips of shared/music."""
    music = [p for p in sorted(SHARED.glob("*.ogg")) if p.name not in NOT_MUSIC][:8]
    costs = cost_lines(quiet_and_busy(configs, music, rounds))
    print("\n".join(costs))
    if write:
        text = "\n".join([
            f"torch {torch.__version__}, {platform.machine()}, one model thread, the "
            f"{len(music)} music clips of shared/music, medians of {rounds} interleaved "
            f"rounds; `python bench/content_gate.py --cost-only --rounds {rounds}`, the "
            "machine otherwise idle for the quiet rows.", "", *costs])
        write_section("content-gate-cost", "The content gate's cost per track, measured "
                      "again (`bench/content_gate.py --cost-only`, issue #26)", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=0,
                        help="game tracks of each album (0: all)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cost-only", action="store_true",
                        help="part 3 alone, on the shared/music clips (its own section)")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    base = Config(model=dataclasses.replace(Config().model, threads=1))
    configs = {"off": dataclasses.replace(base, content=ContentConfig(gate=False)),
               "on": base}
    if args.cost_only:
        cost_only(configs, args.rounds, args.write)
        return
    classifier = Classifier(base)

    with tempfile.TemporaryDirectory() as tmp:
        clips = [("shared/music", p, p.name not in NOT_MUSIC)
                 for p in sorted(SHARED.glob("*.ogg"))]
        clips += [(album, p, p.name not in NOT_MUSIC) for album, p in game_tracks(args.tracks)]
        clips += [("espeak-ng", p, False) for p in espeak_clips(Path(tmp))]
        table, counts = gate_table(classifier, base, clips)
    precision = counts["tp"] / max(1, counts["tp"] + counts["fp"])
    recall = counts["tp"] / max(1, counts["tp"] + counts["fn"])
    music_kept = counts["tn"] / max(1, counts["tn"] + counts["fp"])
    summary = (f"Gating out (not music = positive): precision {precision:.2f}, recall "
               f"{recall:.2f} ({counts['tp']} of {counts['tp'] + counts['fn']} non-music "
               f"clips gated out); music kept: {counts['tn']} of {counts['tn'] + counts['fp']} "
               f"({music_kept:.0%}).")
    print(summary)

    music = [p for _, p, is_music in clips if is_music and p.suffix == ".ogg"][:8]
    decode = decode_figures(music, args.rounds)
    print("\n".join(decode))
    halving = halving_effect(classifier, music)
    print(halving)

    costs = cost_lines(quiet_and_busy(configs, music, args.rounds))
    print("\n".join(costs))

    if args.write:
        text = "\n".join([
            f"torch {torch.__version__}, {platform.machine()}, one model thread, "
            f"{len(music)} music tracks of shared/music and the game albums, medians of "
            f"{args.rounds} interleaved rounds; figures from `python bench/content_gate.py "
            f"--tracks {args.tracks} --rounds {args.rounds}`.",
            "", "### Does the gate keep the music in?", "", summary, "", *table,
            "", "### Decoding once for both rates", "", *decode, "", halving,
            "", "### Cost per track (decode, features, musicnn pair, the gate)", "", *costs])
        write_section("content-gate", "The content gate: EfficientAT before any genre "
                      "(`bench/content_gate.py`, issue #26)", text)


if __name__ == "__main__":
    main()
