"""How fast the model can go on this CPU: its arithmetic against the CPU's own matrix speed.

    python bench/model_floor.py [--rounds 7] [--write]

Counts the floating-point work of the fast inference pass (torch's FlopCounterMode over one
batch: every matrix product of ``tagger.model.fastconv``, both shipped networks), times that
pass on one thread, and times one large square matrix product in the same precision: the
best rate this CPU's oneDNN reaches. From the three it prints the model's share of that peak
and the least time per track the model can take on this machine's cores if every product ran
at that peak, which is the floor any end-to-end target in ms per track has to clear.
Medians of interleaved rounds; thread CPU time, so other processes on the machine bend the
figures less than wall time would.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from results import write_section
from torch.utils.flop_counter import FlopCounterMode

from tagger.model.classify import SHIPPED_MODELS, cpu_has_native_bf16
from tagger.model.musicnn import load_musicnn

SEGMENTS_PER_TRACK = 10
BATCH = 20  # patches a model stream takes at a time (Backbones.chunk with 2 streams)


def thread_ms(fn, repeat: int) -> float:
    fn()
    start = time.thread_time()
    for _ in range(repeat):
        fn()
    return (time.thread_time() - start) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dtype = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    networks = [load_musicnn(name).network for name in SHIPPED_MODELS]
    patches = torch.randn(BATCH, 187, 96)
    flops = 0
    with torch.inference_mode():
        for net in networks:
            net.inference_dtype = dtype
            with FlopCounterMode(display=False) as counter:
                net(patches)
            flops += counter.get_total_flops()
    gmac_per_segment = flops / 2 / BATCH / 1e9

    square = torch.randn(2048, 2048).to(dtype)
    model_ms, peak = [], []
    with torch.inference_mode():
        for _ in range(args.rounds):
            model_ms.append(sum(thread_ms(lambda n=net: n(patches), 2) for net in networks)
                            / BATCH)
            seconds = thread_ms(lambda: square @ square, 3) / 1000
            peak.append(2048 ** 3 / seconds / 1e9)
    ms_segment = statistics.median(model_ms)
    peak_gmac = statistics.median(peak)
    cores = os.cpu_count() or 1
    achieved = gmac_per_segment / ms_segment * 1000
    floor_cpu = gmac_per_segment * SEGMENTS_PER_TRACK / peak_gmac * 1000
    rows = [
        ("precision", "bf16" if dtype == torch.bfloat16 else "fp32"),
        ("work per segment, both networks (fast path)", f"{gmac_per_segment:.3f} G multiply-adds"),
        ("model time per segment, one thread", f"{ms_segment:.1f} ms"),
        ("rate the model reaches", f"{achieved:.0f} G multiply-adds/s per core"),
        ("this CPU's peak (2048x2048 product, one thread)",
         f"{peak_gmac:.0f} G multiply-adds/s per core"),
        ("model's share of the peak", f"{achieved / peak_gmac:.0%}"),
        ("model CPU time per track now", f"{ms_segment * SEGMENTS_PER_TRACK:.0f} ms"),
        ("model CPU time per track at the peak", f"{floor_cpu:.0f} ms"),
        (f"least model time per track on {cores} cores (every product at the peak)",
         f"{floor_cpu / cores:.0f} ms"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if args.write:
        table = "\n".join(["| figure | value |", "|---|---|"]
                          + [f"| {name} | {value} |" for name, value in rows])
        write_section("model-floor", "The model's floor on this CPU (`bench/model_floor.py`)",
                      f"torch {torch.__version__}, {cores} cores, medians of {args.rounds} "
                      "interleaved rounds, thread CPU time.\n\n" + table + "\n")


if __name__ == "__main__":
    main()
