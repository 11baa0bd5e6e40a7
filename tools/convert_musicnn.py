"""One-off: convert musicnn 0.1.0's TensorFlow checkpoints to PyTorch, and record parity data.

Run with TensorFlow (a dev-only tool, never a runtime dependency), torch and librosa installed:

    pip download --no-deps musicnn==0.1.0 && unzip musicnn-0.1.0-py3-none-any.whl -d musicnn-wheel
    python tools/convert_musicnn.py musicnn-wheel/musicnn

Writes ``models/{msd,mtt}_musicnn.pt``, the model card ``models/musicnn.json``, the licence
notice, and ``tests/data/parity.npz``: fixed log-mel patches of real music with the original
TF graphs' sigmoid outputs on them, so tests/test_parity.py needs no TensorFlow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np

from tagger.audio.features import FRAMES_PER_SEGMENT, log_mel  # (float32 pipeline)

REPO = Path(__file__).resolve().parent.parent

MODELS = {"MSD_musicnn": "msd", "MTT_musicnn": "mtt"}

# Real music for the parity patches (../shared/music, see tests/data/ATTRIBUTION.md).
PARITY_CLIPS = [
    ("Kevin_MacLeod_-_Vibe_Ace.ogg", (10.0, 30.0)),
    ("Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg", (5.0, 20.0)),
    ("nexuiz_brainsukker_excerpt.ogg", (12.0, 40.0)),
    ("Karissa_Hobbs_-_Lets_Go_Fishin.ogg", (30.0, 60.0)),
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def frozen_graph_def(tf, checkpoint_dir: Path):
    """The inference part of the original graph, with variables replaced by their values."""
    from tensorflow.core.protobuf import meta_graph_pb2

    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString((checkpoint_dir / ".meta").read_bytes())
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(meta.graph_def, ["model/Sigmoid"])
    reader = tf.compat.v1.train.NewCheckpointReader(str(checkpoint_dir) + "/")
    for node in graph_def.node:
        node.attr.pop("_output_shapes", None)
        if node.op == "VariableV2":
            value = reader.get_tensor(node.name)
            dtype = node.attr["dtype"]
            node.op = "Const"
            node.ClearField("attr")
            node.attr["dtype"].CopyFrom(dtype)
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    return graph_def, reader


def run_tf_graph(tf, graph_def, patches: np.ndarray) -> np.ndarray:
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    feed = {"model/Placeholder:0": patches}
    for op in graph.get_operations():  # is_training: the one boolean placeholder
        if op.type == "Placeholder" and op.outputs[0].dtype == tf.bool:
            feed[op.outputs[0]] = False
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run("model/Sigmoid:0", feed_dict=feed)


def torch_state_dict(reader) -> dict:
    """Map TF variable names to the PyTorch MusiCNN's parameters (see tagger/model.py)."""
    import torch

    def t(name):
        return torch.from_numpy(np.ascontiguousarray(reader.get_tensor(name)))

    def conv2d(name):  # [kh, kw, in, out] -> [out, in, kh, kw]
        return t(name).permute(3, 2, 0, 1).contiguous()

    def conv1d_from_2d(name):  # [k, channels, 1, out] -> [out, channels, k]
        return t(name)[:, :, 0, :].permute(2, 1, 0).contiguous()

    def bn(prefix, tf_name):
        return {
            f"{prefix}.weight": t(f"{tf_name}/gamma"),
            f"{prefix}.bias": t(f"{tf_name}/beta"),
            f"{prefix}.running_mean": t(f"{tf_name}/moving_mean"),
            f"{prefix}.running_var": t(f"{tf_name}/moving_variance"),
            f"{prefix}.num_batches_tracked": torch.tensor(0),
        }

    state = {}
    state.update(bn("input_bn", "batch_normalization"))
    for i in range(2):
        state[f"timbral.{i}.weight"] = conv2d(f"conv2d{'' if i == 0 else '_1'}/kernel")
        state[f"timbral.{i}.bias"] = t(f"conv2d{'' if i == 0 else '_1'}/bias")
        state.update(bn(f"timbral_bn.{i}", f"batch_normalization_{i + 1}"))
    for i in range(3):
        state[f"temporal.{i}.weight"] = conv2d(f"conv2d_{i + 2}/kernel")
        state[f"temporal.{i}.bias"] = t(f"conv2d_{i + 2}/bias")
        state.update(bn(f"temporal_bn.{i}", f"batch_normalization_{i + 3}"))
    for i in range(3):
        state[f"midend.{i}.weight"] = conv1d_from_2d(f"conv2d_{i + 5}/kernel")
        state[f"midend.{i}.bias"] = t(f"conv2d_{i + 5}/bias")
        state.update(bn(f"midend_bn.{i}", f"batch_normalization_{i + 6}"))
    state.update(bn("backend_bn", "batch_normalization_9"))
    state["dense.weight"] = t("dense/kernel").T.contiguous()
    state["dense.bias"] = t("dense/bias")
    state.update(bn("dense_bn", "batch_normalization_10"))
    state["output.weight"] = t("dense_1/kernel").T.contiguous()
    state["output.bias"] = t("dense_1/bias")
    return state


def parity_patches(music_dir: Path) -> tuple[np.ndarray, list[str]]:
    import librosa

    patches, origins = [], []
    for name, starts in PARITY_CLIPS:
        audio, _ = librosa.load(music_dir / name, sr=16000, mono=True, res_type="soxr_hq")
        for start in starts:
            first = int(start * 16000)
            segment = audio[first:first + 3 * 16000 + 512]
            patches.append(log_mel(segment)[:FRAMES_PER_SEGMENT])
            origins.append(f"{name}@{start:g}s")
    return np.stack(patches).astype(np.float32), origins


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("musicnn_dir", type=Path, help="the unzipped wheel's musicnn/ folder")
    parser.add_argument("--music", type=Path, default=REPO.parent / "shared" / "music")
    parser.add_argument("--out", type=Path, default=REPO / "models")
    args = parser.parse_args(argv)

    import tensorflow as tf
    import torch

    from tagger.model.musicnn import MusiCNN

    tf.compat.v1.disable_eager_execution()
    labels = runpy.run_path(str(args.musicnn_dir / "configuration.py"))
    patches, origins = parity_patches(args.music)
    args.out.mkdir(parents=True, exist_ok=True)
    card = {
        "name": "musicnn",
        "description": "musicnn (Pons & Serra 2019) MSD and MTT checkpoints, ported to PyTorch",
        "source": "musicnn 0.1.0 wheel on PyPI (https://github.com/jordipons/musicnn), ISC licence",
        "licence_file": "LICENSE-musicnn.md",
        "input": {
            "sample_rate": 16000, "channels": 1, "n_fft": 512, "hop_length": 256, "n_mels": 96,
            "mel": "librosa.feature.melspectrogram defaults otherwise (htk=False, norm='slaney')",
            "scaling": "log10(1 + 10000 * mel), float32", "frames": FRAMES_PER_SEGMENT,
            "layout": "(batch, frames, mels)",
        },
        "output": "sigmoid of the logits: one independent score per tag",
        "models": {},
    }
    parity = {"patches": patches, "origins": np.array(origins)}
    for name, prefix in MODELS.items():
        checkpoint = args.musicnn_dir / name
        graph_def, reader = frozen_graph_def(tf, checkpoint)
        network = MusiCNN(n_classes=50)
        network.load_state_dict(torch_state_dict(reader))
        network.eval()
        weights = args.out / f"{prefix}_musicnn.pt"
        torch.save(network.state_dict(), weights)
        tf_scores = run_tf_graph(tf, graph_def, patches)
        with torch.inference_mode():
            torch_scores = torch.sigmoid(network(torch.from_numpy(patches))).numpy()
        diff = float(np.abs(tf_scores - torch_scores).max())
        print(f"{name}: max |TF - torch| = {diff:.2e} over {len(patches)} patches")
        parity[f"{prefix}_scores"] = tf_scores.astype(np.float32)
        card["models"][name] = {
            "file": weights.name,
            "prefix": prefix,
            "sha256": sha256(weights),
            "labels": list(labels[f"{prefix.upper()}_LABELS"]),
            "dataset": {"msd": "Million Song Dataset (Last.fm tags)",
                        "mtt": "MagnaTagATune"}[prefix],
            "checkpoint_sha256": {
                part: sha256(checkpoint / part) for part in (".index", ".data-00000-of-00001")
            },
        }
    (args.out / "musicnn.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    shutil.copyfile(args.musicnn_dir.parent / "musicnn-0.1.0.dist-info" / "LICENSE.md",
                    args.out / "LICENSE-musicnn.md")
    np.savez_compressed(REPO / "tests" / "data" / "parity.npz", **parity)
    return 0


if __name__ == "__main__":
    sys.exit(main())
