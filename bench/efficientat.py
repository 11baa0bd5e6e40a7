"""What the second model (EfficientAT mn04_as, AudioSet) costs on this CPU, beside musicnn.

    python bench/efficientat.py [--rounds 9] [--write]

Times, on one thread as the model streams run (:func:`tagger.model.classify.configure_threads`),
in fp32 and in bf16:

* its mel front end (32 kHz waveform -> log-mel) and its network (the folded fast path, and
  the layer-by-layer modules for comparison) on 10 s segments, three at a time: a 30 s window
  cut as the network was trained;
* one pass over a whole 30 s window (what the reference scores of tests/test_efficientat.py
  are), front end included;
* the musicnn pair on one track's ten 3 s patches (the shipped classifier's model work per
  track), in the same rounds, so the ratio holds whatever else the machine is doing.

Counts the network's multiply-adds too (torch's FlopCounterMode). Thread CPU time, medians of
interleaved rounds: other processes on the cores bend the figures less than wall time would,
but cache sharing still shows. Without native bf16 products (AVX-512 BF16, AMX) torch emulates
them, so bf16 is slower here, and ``model.precision = "auto"`` runs fp32.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch
from results import write_section
from torch.utils.flop_counter import FlopCounterMode

from tagger.model.classify import SHIPPED_MODELS, cpu_has_native_bf16
from tagger.model.efficientat import SAMPLE_RATE, load_efficientat
from tagger.model.musicnn import load_musicnn

SEGMENT_S = 10
WINDOW_S = 30
SEGMENTS = WINDOW_S // SEGMENT_S
MUSICNN_PATCHES = 10  # a track's segments (model.segments)


def thread_ms(fn, repeat: int = 2) -> float:
    fn()
    start = time.thread_time()
    for _ in range(repeat):
        fn()
    return (time.thread_time() - start) / repeat * 1000


def waveform(seconds: int, batch: int) -> torch.Tensor:
    rng = np.random.default_rng(seconds * 10 + batch)
    t = np.arange(seconds * SAMPLE_RATE) / SAMPLE_RATE
    rows = [0.5 * np.sin(2 * np.pi * (220 + 110 * i) * t)
            + 0.1 * rng.standard_normal(t.size) for i in range(batch)]
    return torch.from_numpy(np.float32(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    net = load_efficientat().network
    musicnn = [load_musicnn(name).network for name in SHIPPED_MODELS]
    segments = waveform(SEGMENT_S, SEGMENTS)
    window = waveform(WINDOW_S, 1)
    patches = torch.randn(MUSICNN_PATCHES, 187, 96)
    with torch.inference_mode():
        mel = net.frontend(segments)
        with FlopCounterMode(display=False) as counter:
            net.features_reference(mel[:1])
    gmac_segment = counter.get_total_flops() / 2 / 1e9

    precisions = {"fp32": torch.float32, "bf16": torch.bfloat16}
    timings: dict[tuple[str, str], list[float]] = {}

    def timed(key, fn):
        timings.setdefault(key, []).append(thread_ms(fn))

    with torch.inference_mode():
        for _ in range(args.rounds):
            for name, dtype in precisions.items():
                net.inference_dtype = dtype
                for m in musicnn:
                    m.inference_dtype = dtype
                timed((name, "front end, per 10 s segment"),
                      lambda: net.frontend(segments))
                timed((name, "network (folded), per 10 s segment"),
                      lambda: net.features(mel))
                if dtype == torch.float32:
                    timed((name, "network (layer by layer), per 10 s segment"),
                          lambda: net.features_reference(mel))
                timed((name, "EfficientAT, three 10 s segments of a track"),
                      lambda: net(segments))
                timed((name, "EfficientAT, one pass over 30 s"), lambda: net(window))
                timed((name, "musicnn pair, a track's ten 3 s patches"),
                      lambda: [m(patches) for m in musicnn])
    rows = [("network work per 10 s segment", f"{gmac_segment * 1000:.0f} M multiply-adds")]
    for name in precisions:
        def median(label, divide=1, name=name):
            return statistics.median(timings[(name, label)]) / divide

        musicnn_ms = median("musicnn pair, a track's ten 3 s patches")
        track_ms = median("EfficientAT, three 10 s segments of a track")
        for label in ("front end, per 10 s segment", "network (folded), per 10 s segment",
                      "network (layer by layer), per 10 s segment"):
            if (name, label) in timings:
                rows.append((f"{name}: {label}", f"{median(label, SEGMENTS):.1f} ms"))
        rows += [
            (f"{name}: EfficientAT per track (three 10 s segments)", f"{track_ms:.1f} ms"),
            (f"{name}: EfficientAT per track (one 30 s pass)",
             f"{median('EfficientAT, one pass over 30 s'):.1f} ms"),
            (f"{name}: musicnn pair per track (ten 3 s patches), same rounds",
             f"{musicnn_ms:.1f} ms"),
            (f"{name}: EfficientAT (three 10 s) / musicnn pair", f"{track_ms / musicnn_ms:.0%}"),
        ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    if args.write:
        table = "\n".join(["| figure | value |", "|---|---|"]
                          + [f"| {label} | {value} |" for label, value in rows])
        write_section(
            "efficientat", "The second model's cost: EfficientAT mn04_as (`bench/efficientat.py`)",
            f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, native bf16: {'yes' if cpu_has_native_bf16() else 'no'}; "
            f"one thread, thread CPU time, medians of {args.rounds} interleaved rounds.\n\n"
            + table + "\n")


if __name__ == "__main__":
    main()
