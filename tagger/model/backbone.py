"""The backbone seam: what tagger.model needs to know of a frozen network it runs.

A backbone is one loaded, checked network: its identity (name, sha256), the outputs it scores
(``prefix:label`` keys), what it reads (:class:`BackboneInput`: the kind of input, the sample
rate of the audio it is made from, the length of one segment) and its two embeddings.
:class:`tagger.model.embeddings.Backbones` runs any set of backbones that read the same input;
the classifier, the trained heads and the embedding cache see only this interface.

Two implementations: the musicnn pair (:class:`tagger.model.musicnn.LoadedModel`: log-mel
patches of 16 kHz audio, 3 s, made by :mod:`tagger.audio.features`) and EfficientAT
(:class:`tagger.model.efficientat.LoadedEfficientAT`: 32 kHz waveforms, its mel front-end
inside the module, trained on 10 s clips).
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from tagger.errors import ModelError

#: :attr:`BackboneInput.kind` values
LOG_MEL = "log-mel"  # tagger.audio.features' patches, (segments, frames, 96)
WAVEFORM = "waveform"  # mono float32 samples, (segments, samples)


@dataclass(frozen=True)
class BackboneInput:
    """What a backbone reads."""

    kind: str  # LOG_MEL or WAVEFORM
    sample_rate: int  # of the decoded audio its input is made from, Hz
    segment_seconds: float  # the length of one input segment it was trained on


@runtime_checkable
class Backbone(Protocol):
    """A loaded, verified network (see the module docstring)."""

    name: str  # the model card's name, e.g. "MSD_musicnn"
    prefix: str  # of its output keys: "msd:rock", "audioset:Music"
    labels: tuple[str, ...]  # its outputs, in order
    sha256: str  # of its weights file

    @property
    def input(self) -> BackboneInput:
        """What it reads."""
        ...

    @property
    def embedding_sizes(self) -> tuple[int, int]:
        """(pooled, penultimate) widths: the two embeddings :meth:`embed` gives."""
        ...

    def place(self, device: torch.device, dtype: torch.dtype) -> None:
        """Run on ``device`` in ``dtype`` arithmetic (float32 or bfloat16) from now on."""
        ...

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """(segments, outputs) logits of a batch of inputs."""
        ...

    def embed(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled, penultimate) embeddings of a batch of inputs."""
        ...

    def logits_from_penultimate(self, penultimate: torch.Tensor) -> torch.Tensor:
        """The logits its output layer gives for penultimate embeddings (a cache's rows)."""
        ...


def output_keys(backbones: Sequence[Backbone]) -> tuple[str, ...]:
    """Every output of the backbones as ``prefix:label``, in the order they are scored."""
    return tuple(f"{b.prefix}:{label}" for b in backbones for label in b.labels)


def common_input(backbones: Sequence[Backbone]) -> BackboneInput:
    """The input every one of ``backbones`` reads; a ValueError when they differ (backbones
    that read different inputs run as separate sets)."""
    inputs = {b.input for b in backbones}
    if not inputs:
        raise ValueError("no backbones")
    if len(inputs) != 1:
        raise ValueError("these backbones read different inputs: "
                         + ", ".join(f"{b.name} {b.input}" for b in backbones))
    return inputs.pop()


def models_dir() -> Path:
    """Where the shipped weights and model cards live: ``$TAGGER_MODELS_DIR``, the checkout,
    or the install (the first that holds musicnn.json)."""
    env = os.environ.get("TAGGER_MODELS_DIR")
    candidates = [Path(env)] if env else []
    candidates += [
        Path(__file__).resolve().parents[2] / "models",
        Path(sysconfig.get_path("data")) / "share" / "tagger" / "models",
    ]
    for candidate in candidates:
        if (candidate / "musicnn.json").is_file():
            return candidate
    raise ModelError("shipped model card musicnn.json not found (looked in: "
                     + ", ".join(str(c) for c in candidates) + ")")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file, as the model cards record it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_card(card_file: str, directory: Path | None = None) -> dict:
    """A shipped model card (``musicnn.json``, ``efficientat.json``): labels, input spec,
    source, the sha256 of each weights file."""
    path = (directory or models_dir()) / card_file
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read model card: {exc}", path) from exc


def verified_weights(card_file: str, name: str, directory: Path | None = None
                     ) -> tuple[dict, Path, str]:
    """The card's entry for model ``name``, its weights file and their sha256, checked against
    the card: a ModelError when the model, the file or the match is missing."""
    directory = directory or models_dir()
    entry = read_card(card_file, directory).get("models", {}).get(name)
    if entry is None:
        raise ModelError(f"model {name!r} is not in the model card", directory / card_file)
    path = directory / entry["file"]
    if not path.is_file():
        raise ModelError("weights file missing", path)
    sha256 = file_sha256(path)
    if sha256 != entry["sha256"]:
        raise ModelError(f"weights sha256 {sha256[:12]}… does not match the model card", path)
    return entry, path, sha256


def load_frozen(network: nn.Module, path: Path) -> None:
    """Load verified weights into ``network`` and freeze it for inference (its
    ``prepare_inference()`` folds what it can)."""
    try:
        network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(f"cannot load weights: {exc}", path) from exc
    network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    network.prepare_inference()
