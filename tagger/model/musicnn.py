"""The musicnn network (Pons & Serra, 2019) in PyTorch, and loading the shipped weights.

Layer for layer the same as ``musicnn/models.py::build_musicnn`` of musicnn 0.1.0, so the
converted MSD and MTT checkpoints give the original's numbers (see tests/test_parity.py).
Input: a batch of log-mel patches, shape (batch, frames, 96), time first as in musicnn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tagger.audio.features import SAMPLE_RATE
from tagger.model.backbone import (  # noqa: F401  (models_dir, file_sha256: as they were here)
    LOG_MEL,
    BackboneInput,
    file_sha256,
    load_frozen,
    models_dir,
    read_card,
    verified_weights,
)

CARD_FILE = "musicnn.json"

BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default


def _bn2d(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


def _bn1d(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=BN_EPS)


class MusiCNN(nn.Module):
    """musicnn: musically motivated front-end, dense residual mid-end, pooled dense back-end."""

    def __init__(self, n_classes: int = 50, n_mels: int = 96, frontend_filters: int = 204,
                 temporal_filters: int = 51, midend_filters: int = 64, backend_units: int = 200):
        super().__init__()
        self.input_bn = _bn2d(1)
        # timbral filters: 7 frames x 40 % and 70 % of the mel bands, valid in frequency
        self.timbral = nn.ModuleList(
            nn.Conv2d(1, frontend_filters, (7, int(ratio * n_mels))) for ratio in (0.4, 0.7)
        )
        self.timbral_bn = nn.ModuleList(_bn2d(frontend_filters) for _ in range(2))
        # temporal filters: 128, 64, 32 frames x 1 band, "same" padding
        self.temporal_lengths = (128, 64, 32)
        self.temporal = nn.ModuleList(
            nn.Conv2d(1, temporal_filters, (length, 1)) for length in self.temporal_lengths
        )
        self.temporal_bn = nn.ModuleList(_bn2d(temporal_filters) for _ in range(3))
        frontend_channels = 2 * frontend_filters + 3 * temporal_filters
        self.midend = nn.ModuleList(
            nn.Conv1d(channels, midend_filters, 7, padding=3)
            for channels in (frontend_channels, midend_filters, midend_filters)
        )
        self.midend_bn = nn.ModuleList(_bn1d(midend_filters) for _ in range(3))
        pooled = 2 * (frontend_channels + 3 * midend_filters)
        self.backend_bn = _bn1d(pooled)
        self.dense = nn.Linear(pooled, backend_units)
        self.dense_bn = _bn1d(backend_units)
        self.output = nn.Linear(backend_units, n_classes)

    # -- inference fast path -----------------------------------------------------------------
    # In eval mode without autograd, embed/forward run tagger.model.fastconv: the same function
    # with about half the multiply-adds (DFT-domain timbral filters, block-Toeplitz temporal
    # filters). Its derived weights are built once and rebuilt whenever a parameter or buffer
    # changes (tracked by tensor version counters), so load_state_dict etc. stay safe.

    # ``inference_dtype`` (float32, or bfloat16 where the CPU has native bf16 products: see
    # tagger.model.classify.resolve_precision) is the fast path's arithmetic; the reference
    # path is always float32.
    inference_dtype: torch.dtype = torch.float32

    def _weights_key(self) -> tuple:
        return (self.inference_dtype,) + tuple(
            (t.data_ptr(), t._version) for t in self.state_dict(keep_vars=True).values())

    def prepare_inference(self):
        """Build (or reuse) the derived weights of the fast inference path; returns it."""
        from tagger.model.fastconv import FastMusiCNN

        key = self._weights_key()
        cached = self.__dict__.get("_fast")
        if cached is None or cached[0] != key:
            cached = (key, FastMusiCNN(self, dtype=self.inference_dtype))
            self.__dict__["_fast"] = cached  # not a submodule: no state_dict entries
        return cached[1]

    def _use_fast(self, patches: torch.Tensor) -> bool:
        return (not self.training and not torch.is_grad_enabled() and patches.dim() == 3
                and patches.device.type == "cpu" and patches.dtype == torch.float32
                and patches.shape[2] == 96 and patches.shape[0] > 0 and patches.shape[1] > 0)

    def embed(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (pooled features before the back-end, penultimate dense activations)."""
        if self._use_fast(patches):
            return self.prepare_inference().embed(patches)
        return self.embed_reference(patches)

    def embed_reference(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """embed, layer by layer as in the original graph (differentiable; the fast path's
        reference)."""
        x = self.input_bn(patches.unsqueeze(1))  # (B, 1, T, F)
        timbral_input = F.pad(x, (0, 0, 3, 3))
        front = [
            bn(F.relu(conv(timbral_input))).amax(dim=3)
            for conv, bn in zip(self.timbral, self.timbral_bn)
        ]
        for length, conv, bn in zip(self.temporal_lengths, self.temporal, self.temporal_bn):
            # TensorFlow's "same": the extra padding goes after
            padded = F.pad(x, (0, 0, (length - 1) // 2, length // 2))
            front.append(bn(F.relu(conv(padded))).amax(dim=3))
        features = [torch.cat(front, dim=1)]  # (B, 561, T)
        for i, (conv, bn) in enumerate(zip(self.midend, self.midend_bn)):
            out = bn(F.relu(conv(features[-1])))
            features.append(out if i == 0 else out + features[-1])
        stacked = torch.cat(features, dim=1)  # (B, 753, T)
        # TF concatenates [max, mean] on a last axis and flattens: the two interleave per channel
        pooled = torch.stack((stacked.amax(dim=2), stacked.mean(dim=2)), dim=2).flatten(1)
        penultimate = self.dense_bn(F.relu(self.dense(self.backend_bn(pooled))))
        return pooled, penultimate

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Logits, shape (batch, n_classes); apply a sigmoid for tag scores."""
        if self._use_fast(patches):
            return self.prepare_inference().forward(patches)
        return self.output(self.embed_reference(patches)[1])


#: what a musicnn network reads: log-mel patches of 16 kHz audio, 3 s (187 frames x 96 bands)
MUSICNN_INPUT = BackboneInput(LOG_MEL, SAMPLE_RATE, 3.0)


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint loaded and ready: the network, its tag labels and identity; a
    :class:`tagger.model.backbone.Backbone`."""

    name: str  # "MSD_musicnn" / "MTT_musicnn"
    prefix: str  # key prefix for its outputs: "msd" / "mtt"
    labels: tuple[str, ...]
    sha256: str
    network: MusiCNN

    @property
    def input(self) -> BackboneInput:
        return MUSICNN_INPUT

    @property
    def embedding_sizes(self) -> tuple[int, int]:
        return self.network.dense.in_features, self.network.dense.out_features

    def place(self, device: torch.device, dtype: torch.dtype) -> None:
        if device.type == "cpu":
            self.network.inference_dtype = dtype  # the fast path's arithmetic
        else:
            self.network.to(device)  # bf16 there runs under the caller's autocast

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.network(inputs)

    def embed(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.network.embed(inputs)

    def logits_from_penultimate(self, penultimate: torch.Tensor) -> torch.Tensor:
        return self.network.output(penultimate)


def read_model_card(directory: Path | None = None) -> dict:
    """The model card (labels, input spec, source, sha256 of each weight file)."""
    return read_card(CARD_FILE, directory)


def load_musicnn(name: str, directory: Path | None = None) -> LoadedModel:
    """Load one shipped checkpoint (``MSD_musicnn`` or ``MTT_musicnn``), checking its sha256."""
    entry, path, sha256 = verified_weights(CARD_FILE, name, directory)
    network = MusiCNN(n_classes=len(entry["labels"]))
    load_frozen(network, path)
    return LoadedModel(name=name, prefix=entry["prefix"], labels=tuple(entry["labels"]),
                       sha256=sha256, network=network)
