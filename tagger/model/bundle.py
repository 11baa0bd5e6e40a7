"""Trained model bundles: a genre head on the frozen backbones, written by ``tagger train``.

A bundle is a directory::

    BUNDLE/
      head.pt       the head's torch state_dict (tensors only: loads with weights_only=True)
      bundle.json   the card: name, sha256, labels, embedding, feature set, head shape,
                    backbones (names and sha256), segment settings, training data summary,
                    metrics from cross-validation

The bundle's sha256 covers ``head.pt``'s bytes and every card field that changes what the
bundle predicts (format, labels, embedding, feature set, head shape, backbones, segment
length); it is checked at load, and so is each backbone's sha256 against the shipped weights
(EfficientAT's too, for a head on the content gate's AudioSet embeddings: ``features``
``audioset`` or ``both``). It is also
the identity the catalogue records for every prediction the bundle makes. Select a bundle
with ``model.bundle = "path"`` in tagger.toml (relative to the file's folder) or ``--model``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from tagger.config import Config
from tagger.errors import ModelError, WriteError
from tagger.model.calibration import Calibrator
from tagger.results import ModelInfo

if TYPE_CHECKING:  # torch loads where a head is written or loaded, not for reading a card
    from tagger.model.backbone import Backbone
    from tagger.model.embeddings import BackboneOutput
    from tagger.model.heads import HeadNet

FORMAT = "tagger-bundle/1"
CARD = "bundle.json"
WEIGHTS = "head.pt"
DEFAULT_BUNDLE = "musicnn"  # model.bundle value meaning the shipped pair with the genre map
#: the card fields the sha256 covers, besides the weights
IDENTITY_FIELDS = ("format", "labels", "embedding", "head", "backbones", "segment_seconds")
#: the feature set of a card without one (the bundles before AudioSet features)
MUSICNN_FEATURES = "musicnn"


def card_features(card: dict) -> str:
    """The feature set a bundle's head reads (tagger.model.embeddings.FEATURE_SETS)."""
    return card.get("features") or MUSICNN_FEATURES


def bundle_sha256(card: dict, weights: bytes) -> str:
    identity = {k: card.get(k) for k in IDENTITY_FIELDS}
    if card_features(card) != MUSICNN_FEATURES:  # musicnn bundles keep the sha256 they had
        identity["features"] = card_features(card)
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, ensure_ascii=False).encode())
    digest.update(b"\n")
    digest.update(weights)
    return digest.hexdigest()


def resolve_bundle_path(config: Config) -> Path:
    """``model.bundle`` as a path: relative to the config file's folder, else to the cwd."""
    path = Path(config.model.bundle).expanduser()
    if not path.is_absolute():
        base = Path(config.source).resolve().parent if config.source else Path.cwd()
        path = base / path
    return path


@dataclass(frozen=True)
class Bundle:
    path: Path
    card: dict
    net: HeadNet

    @property
    def name(self) -> str:
        return self.card["name"]

    @property
    def sha256(self) -> str:
        return self.card["sha256"]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.card["labels"])

    @property
    def embedding(self) -> str:
        return self.card["embedding"]

    @property
    def features(self) -> str:
        return card_features(self.card)

    @property
    def calibrator(self) -> Calibrator | None:
        """The calibration stored in the card by ``tagger learn`` (None: none)."""
        data = self.card.get("calibration")
        return Calibrator.from_dict(data) if data else None


def write_bundle(out: str | Path, net: HeadNet, *, name: str, labels: Sequence[str],
                 embedding: str, head: dict, backbones: Sequence[Backbone], config: Config,
                 training: dict, metrics: dict | None,
                 calibration: dict | None = None, features: str = MUSICNN_FEATURES) -> Bundle:
    """Write a bundle directory atomically; an existing bundle (or empty folder) is replaced.

    ``calibration``: the confidence map measured on held-out folds (``method``,
    ``parameters``, figures; tagger.model.calibration); not part of the sha256, which says
    what the bundle *predicts*. ``features``: what feeds the head (musicnn's ``embedding``,
    the content gate's AudioSet embedding, or both); ``backbones`` then include the gate's
    network."""
    out = Path(out).expanduser().absolute()
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / CARD).is_file())):
        raise WriteError("exists and is not a tagger bundle: refusing to replace it", out)
    import torch

    buffer = io.BytesIO()
    torch.save({k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}, buffer)
    weights = buffer.getvalue()
    card = {
        "format": FORMAT,
        "name": name,
        "sha256": "",
        "labels": list(labels),
        "embedding": embedding,
        "features": features,
        "head": head,
        "backbones": [{"name": m.name, "sha256": m.sha256} for m in backbones],
        "segment_seconds": config.model.segment_seconds,
        "segments": config.model.segments,
        "window_seconds": config.model.window_seconds,
        "training": training,
        "metrics": metrics,
    }
    if calibration is not None:
        card["calibration"] = calibration
    card["sha256"] = bundle_sha256(card, weights)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        (staging / WEIGHTS).write_bytes(weights)
        (staging / CARD).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
        os.chmod(staging, 0o755)
        old = None
        if out.exists():
            old = out.parent / f"{staging.name}.old"
            os.replace(out, old)
        os.replace(staging, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise WriteError(f"cannot write the bundle: {exc}", out) from None
    return Bundle(out, card, net)


def read_card(path: str | Path) -> dict:
    path = Path(path)
    try:
        card = json.loads((path / CARD).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"not a model bundle (no {CARD})", path) from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the bundle card: {exc}", path) from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise ModelError(f"unsupported bundle format {card.get('format')!r}", path)
    return card


def load_bundle(path: str | Path, backbones: Sequence[Backbone],
                config: Config | None = None) -> Bundle:
    """Load and verify a bundle: its sha256, its backbones' sha256, the segment length."""
    path = Path(path)
    card = read_card(path)
    try:
        weights = (path / WEIGHTS).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read the head weights: {exc.strerror or exc}", path) from None
    if bundle_sha256(card, weights) != card.get("sha256"):
        raise ModelError("bundle sha256 does not match its card and weights (edited or "
                         "corrupt); retrain it", path)
    from tagger.model.embeddings import FEATURE_SETS

    if card_features(card) not in FEATURE_SETS:
        raise ModelError(f"unknown feature set {card_features(card)!r} in the bundle card", path)
    shipped = {m.name: m.sha256 for m in backbones}
    for entry in card["backbones"]:
        if shipped.get(entry["name"]) != entry["sha256"]:
            raise ModelError(
                f"bundle was trained on backbone {entry['name']} {entry['sha256'][:12]}…, "
                f"but the shipped weights are {str(shipped.get(entry['name']))[:12]}…; "
                "retrain it", path)
    if config is not None and abs(config.model.segment_seconds - card["segment_seconds"]) > 1e-9:
        raise ModelError(f"bundle was trained on {card['segment_seconds']:g} s segments, "
                         f"model.segment_seconds is {config.model.segment_seconds:g}", path)
    import torch

    from tagger.model.heads import HeadNet

    head = card["head"]
    net = HeadNet(head["input_dim"], len(card["labels"]), head.get("hidden", 0),
                  head.get("dropout", 0.0))
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(f"cannot load the head weights: {exc}", path / WEIGHTS) from None
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return Bundle(path, card, net)


class TrainedHead:
    """Genre scores from a trained bundle: softmax probabilities over its labels per segment."""

    needs_embeddings = True

    def __init__(self, bundle: Bundle):
        from tagger.model.embeddings import needs_pooled, reads_gate

        self.bundle = bundle
        self.genres = bundle.labels
        self.info = ModelInfo(name=bundle.name, sha256=bundle.sha256, vocabulary=bundle.labels)
        self.score_keys = tuple(f"head:{label}" for label in bundle.labels)
        self.features = bundle.features
        self.needs_gate = reads_gate(self.features)
        self.reads_gate = self.needs_gate
        self.needs_pooled = needs_pooled(bundle.embedding, self.features)
        self.calibrator = bundle.calibrator

    def genre_scores(self, outputs: BackboneOutput,
                     gate: BackboneOutput | None = None) -> np.ndarray:
        """The head's probabilities; ``gate``: the content gate's outputs aligned to the
        segments (read by a head on the ``audioset`` or ``both`` features)."""
        from tagger.model.embeddings import head_input

        # embeddings are cached at half precision: give the head what it was trained on, the
        # same whether they come from the backbones now or from the cache
        gate_pen = None if gate is None else gate.as_stored().penultimate
        return self.bundle.net.probabilities(head_input(
            outputs.as_stored(), self.bundle.embedding, self.features, gate_pen))
