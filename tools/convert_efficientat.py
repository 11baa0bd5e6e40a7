"""One-off: convert the released EfficientAT mn04_as state dict to tagger's own module names.

    python tools/convert_efficientat.py ../shared/models/efficientat

The folder holds the release's ``mn04_as_mAP_432.pt`` (checked against its known sha256), its
MIT ``LICENSE`` and AudioSet's ``class_labels_indices.csv``. Writes
``models/efficientat_mn04_as.pt`` (our :class:`tagger.model.efficientat.EfficientAT`'s state
dict, float32, the same values under our names), the model card ``models/efficientat.json``
and the licence notice ``models/LICENSE-efficientat.md``; then checks the converted network
against the folder's ``reference.json`` (the original implementation's logits), if present.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

SOURCE_FILE = "mn04_as_mAP_432.pt"
SOURCE_SHA256 = "899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c"
SOURCE_URL = ("https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/"
              + SOURCE_FILE)
NAME, PREFIX, WIDTH = "EfficientAT_mn04_as", "audioset", 0.4
WEIGHTS = "efficientat_mn04_as.pt"
LICENCE = "LICENSE-efficientat.md"

ATTRIBUTION = """\
# EfficientAT mn04_as: licence and attribution

`efficientat_mn04_as.pt` holds the weights of the EfficientAT model mn04_as (MobileNetV3 at
width 0.4 trained on AudioSet, mAP 0.432) by Florian Schmid, Khaled Koutini and Gerhard Widmer,
"Efficient Large-Scale Audio Tagging via Transformer-to-CNN Knowledge Distillation", ICASSP
2023 (https://github.com/fschmid56/EfficientAT), converted to tagger's own module names by
tools/convert_efficientat.py (the same float32 values; the network code in
tagger/model/efficientat.py is tagger's own). The original file, {source}
(sha256 {sha}),
is released under the MIT licence below.

The class names in `efficientat.json` are those of the AudioSet ontology by Google
(https://research.google.com/audioset/), licensed under CC BY 4.0
(https://creativecommons.org/licenses/by/4.0/).

## MIT licence of EfficientAT

{licence}"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def our_key(key: str, block_layers: dict[int, list[str]]) -> str:
    """The release's key -> ours (features.0 stem, features.1-15 blocks, features.16 head,
    classifier.2 / .5 the hidden and output layers)."""
    parts = key.split(".")
    norm = {"0": "conv", "1": "norm"}
    if parts[0] == "classifier":
        return {"2": "hidden", "5": "output"}[parts[1]] + "." + ".".join(parts[2:])
    index = int(parts[1])
    if index == 0:
        return f"stem.{norm[parts[2]]}." + ".".join(parts[3:])
    if index == 16:
        return f"head.{norm[parts[2]]}." + ".".join(parts[3:])
    assert parts[2] == "block", key
    role = block_layers[index][int(parts[3])]
    if role == "excite":  # block.N.conc_se_layers.0.fc1|fc2.weight|bias
        layer = {"fc1": "reduce", "fc2": "expand"}[parts[6]]
        return f"blocks.{index - 1}.excite.{layer}.{parts[7]}"
    return f"blocks.{index - 1}.{role}.{norm[parts[4]]}.{parts[5]}"


def block_roles(state: dict) -> dict[int, list[str]]:
    """Per block, the role of each of its layers: [expand,] depthwise, [excite,] project."""
    layers: dict[int, dict[int, str]] = {}
    for key, value in state.items():
        match = re.fullmatch(r"features\.(\d+)\.block\.(\d+)\.(.*)", key)
        if not match:
            continue
        block, layer, rest = int(match[1]), int(match[2]), match[3]
        if rest.startswith("conc_se_layers"):
            layers.setdefault(block, {})[layer] = "excite"
        elif rest == "0.weight":
            layers.setdefault(block, {})[layer] = (
                "depthwise" if value.shape[1] == 1 and value.shape[2] > 1 else "1x1")
    roles = {}
    for block, found in layers.items():
        ordered = [found[i] for i in sorted(found)]
        named = []
        for i, role in enumerate(ordered):
            if role == "1x1":
                role = "expand" if i == 0 else "project"
            named.append(role)
        roles[block] = named
    return roles


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the folder of the released weights")
    parser.add_argument("--out", type=Path, default=REPO / "models")
    args = parser.parse_args(argv)

    import torch

    from tagger.model.efficientat import (
        HOP_LENGTH,
        N_FFT,
        N_MELS,
        SAMPLE_RATE,
        WIN_LENGTH,
        EfficientAT,
    )

    source = args.source / SOURCE_FILE
    if sha256(source) != SOURCE_SHA256:
        print(f"{source}: not the released file (sha256 differs)", file=sys.stderr)
        return 1
    with open(args.source / "class_labels_indices.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == list(range(len(rows)))
    release = torch.load(source, map_location="cpu", weights_only=True)
    roles = block_roles(release)
    state = {our_key(k, roles): v.float() if v.is_floating_point() else v
             for k, v in release.items()}
    network = EfficientAT(n_classes=len(rows), width=WIDTH)
    network.load_state_dict(state)  # strict: every key mapped, every shape right
    network.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / WEIGHTS
    torch.save({k: v.contiguous() for k, v in network.state_dict().items()}, weights)

    card = {
        "name": "efficientat",
        "description": ("EfficientAT mn04_as (Schmid, Koutini & Widmer, ICASSP 2023): a "
                        "MobileNetV3 at width 0.4 trained on AudioSet (mAP 0.432), ported to "
                        "PyTorch"),
        "source": f"{SOURCE_URL} (https://github.com/fschmid56/EfficientAT), MIT licence",
        "licence_file": LICENCE,
        "input": {
            "sample_rate": SAMPLE_RATE, "channels": 1,
            "preemphasis": "y[n] = x[n+1] - 0.97 x[n] (one sample shorter)",
            "n_fft": N_FFT, "win_length": WIN_LENGTH,
            "window": "Hann, symmetric (periodic=False), centred in n_fft",
            "hop_length": HOP_LENGTH, "center": "reflect padding", "n_mels": N_MELS,
            "mel": "Kaldi triangular banks, mel = 1127 ln(1 + f/700), 0-15000 Hz, power "
                   "spectrum, a zero weight for the Nyquist bin",
            "scaling": "(ln(mel + 1e-5) + 4.5) / 5",
            "frames": "(samples - 1) // 320 + 1 (100 per second)",
            "layout": "(batch, samples) float32 waveform; the front end is part of the module",
            "trained_on": "10 s clips (any length works: global pooling)",
        },
        "output": "sigmoid of the logits: one independent score per AudioSet class",
        "models": {
            NAME: {
                "file": WEIGHTS, "prefix": PREFIX, "width": WIDTH,
                "sha256": sha256(weights),
                "source_sha256": SOURCE_SHA256,
                "dataset": "AudioSet (527 classes of the AudioSet ontology)",
                "embeddings": {"pooled": network.embedding_sizes[0],
                               "hidden": network.embedding_sizes[1]},
                "labels": [r["display_name"] for r in rows],
                "ontology_ids": [r["mid"] for r in rows],
            },
        },
    }
    (args.out / "efficientat.json").write_text(json.dumps(card, indent=2) + "\n",
                                               encoding="utf-8")
    licence = (args.source / "LICENSE").read_text(encoding="utf-8")
    (args.out / LICENCE).write_text(
        ATTRIBUTION.format(source=SOURCE_FILE, sha=SOURCE_SHA256, licence=licence),
        encoding="utf-8")
    print(f"wrote {weights} ({weights.stat().st_size} bytes), efficientat.json, {LICENCE}")

    reference = args.source / "reference.json"
    if reference.is_file():
        synthetic = json.loads(reference.read_text(encoding="utf-8"))["synthetic"]
        t = np.arange(320000) / SAMPLE_RATE
        x = np.float32(0.5 * np.sin(2 * np.pi * 440 * t)
                       + 0.1 * np.random.default_rng(0).standard_normal(320000))
        with torch.inference_mode():
            logits = network(torch.from_numpy(x)[None])[0].numpy()
        diff = float(np.abs(logits - np.array(synthetic["logits"])).max())
        print(f"max |logit - reference| on the synthetic input: {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
