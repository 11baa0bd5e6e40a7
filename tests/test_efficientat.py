"""The EfficientAT port gives the original implementation's numbers (tagger/model/efficientat.py).

tests/data/efficientat_reference.json is the original EfficientAT code's output (its network, its
torchaudio mel banks): the logits, log-mel statistics and embedding for a synthetic input, and
for every clip of shared/music (decoded with librosa at 32 kHz, the middle 30 s, one pass) the
Music and Speech scores and the top five classes. A clip that is in neither tests/data nor
shared/music is skipped (tests/helpers/audio.py).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers.audio import DATA_DIR, real_clip

from tagger.audio.decode import decode_window
from tagger.errors import ModelError
from tagger.model.backbone import LOG_MEL, WAVEFORM, Backbone, BackboneInput
from tagger.model.efficientat import (
    CARD_FILE,
    SAMPLE_RATE,
    SHIPPED_MODEL,
    EfficientAT,
    frames_for,
    kaldi_mel_banks,
    load_efficientat,
    read_card,
)
from tagger.model.embeddings import Backbones
from tagger.model.musicnn import file_sha256, load_musicnn, models_dir

pytestmark = pytest.mark.slow  # runs the network

REFERENCE = json.loads((DATA_DIR / "efficientat_reference.json").read_text(encoding="utf-8"))
SYNTHETIC = REFERENCE["synthetic"]
CLIPS = sorted(REFERENCE["clips"])
WINDOW_S = 30


def synthetic_waveform() -> np.ndarray:
    """The reference's recipe: a 440 Hz tone in noise, 10 s at 32 kHz."""
    t = np.arange(320000) / SAMPLE_RATE
    noise = np.random.default_rng(0).standard_normal(320000)
    return np.float32(0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * noise)


@pytest.fixture(scope="module")
def model():
    return load_efficientat()


def reference_path(network: EfficientAT, waveform: torch.Tensor) -> torch.Tensor:
    """Logits through the layer-by-layer modules (not the folded fast path)."""
    with torch.inference_mode():
        return network.output(network.embed_reference(waveform)[1])


def test_synthetic_logits_match_the_original_within_1e_4(model):
    x = torch.from_numpy(synthetic_waveform())[None]
    expected = np.array(SYNTHETIC["logits"])
    with torch.inference_mode():
        mel = model.network.frontend(x)
        pooled, _ = model.network.embed(x)
        fast = model.network(x)[0].numpy()
    assert list(mel.shape) == SYNTHETIC["mel_shape"] == [1, 128, frames_for(320000)]
    assert abs(float(mel.mean()) - SYNTHETIC["mel_mean"]) < 1e-5
    assert abs(float(mel.std()) - SYNTHETIC["mel_std"]) < 1e-5
    assert np.abs(mel[0, :8, 0].numpy() - SYNTHETIC["mel_first_frame_first8"]).max() < 1e-4
    assert pooled.shape == (1, SYNTHETIC["embedding_dim"])
    assert np.abs(pooled[0, :8].numpy() - SYNTHETIC["embedding_first8"]).max() < 1e-4
    reference = reference_path(model.network, x)[0].numpy()
    assert expected.shape == (527,) and np.abs(reference - expected).max() < 1e-4
    assert np.abs(fast - expected).max() < 1e-4
    # the input is a tone: the reference is not degenerate
    assert expected.std() > 1.0 and fast.argmax() == expected.argmax()


def test_mel_banks_are_kaldi_triangles_up_to_15_khz():
    banks = kaldi_mel_banks().numpy()
    assert banks.shape == (128, 513) and banks.min() == 0.0 and banks.max() <= 1.0
    assert not banks[:, 480:].any()  # 15 kHz is bin 480: nothing above it, nor at Nyquist
    assert (banks > 0).sum(axis=0)[1:480].max() <= 2  # neighbouring filters overlap by half
    peaks = banks.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all() and peaks[-1] < 480


def middle_window(path) -> np.ndarray:
    """As the reference: librosa at 32 kHz, the middle 30 s (a shorter clip whole)."""
    import librosa

    samples, _ = librosa.load(path, sr=SAMPLE_RATE, mono=True)
    length = WINDOW_S * SAMPLE_RATE
    if samples.size > length:
        start = (samples.size - length) // 2
        samples = samples[start:start + length]
    return samples


_decoded: dict[str, np.ndarray] = {}


def clip_samples(name: str) -> np.ndarray:
    if name not in _decoded:
        _decoded[name] = middle_window(real_clip(name))
    return _decoded[name]


def scores_of(model, samples: np.ndarray, dtype=torch.float32) -> np.ndarray:
    model.network.inference_dtype = dtype
    try:
        with torch.inference_mode():
            return torch.sigmoid(model.network(torch.from_numpy(samples)[None]))[0].numpy()
    finally:
        model.network.inference_dtype = torch.float32


@pytest.mark.parametrize("name", CLIPS)
def test_clip_scores_match_the_original(model, name):
    """Music, Speech and the top five classes of every clip, to the reference's 3 decimals."""
    expected = REFERENCE["clips"][name]
    scores = scores_of(model, clip_samples(name))
    assert abs(scores[model.index("Music")] - expected["music"]) < 1e-3
    assert abs(scores[model.index("Speech")] - expected["speech"]) < 1e-3
    top5 = np.argsort(scores)[::-1][:5]
    assert [model.labels[i] for i in top5] == [label for label, _ in expected["top5"]]
    for label, score in expected["top5"]:
        assert abs(scores[model.index(label)] - score) < 1e-3


def decisions(model, scores: np.ndarray) -> tuple[str, bool]:
    """(top class, music rather than speech)."""
    return (model.labels[int(scores.argmax())],
            bool(scores[model.index("Music")] > scores[model.index("Speech")]))


@pytest.mark.parametrize("name", CLIPS)
def test_bf16_keeps_the_decisions(model, name):
    """bf16 products (tagger.model.efficientat.FoldedEfficientAT) give every clip the same top
    class and the same music-or-speech call as float32, every score within 0.05."""
    samples = clip_samples(name)
    fp32 = scores_of(model, samples)
    bf16 = scores_of(model, samples, torch.bfloat16)
    assert np.abs(bf16 - fp32).max() < 0.05
    assert decisions(model, bf16) == decisions(model, fp32)
    expected = REFERENCE["clips"][name]
    assert decisions(model, bf16)[0] == expected["top5"][0][0]
    assert decisions(model, bf16)[1] == (expected["music"] > expected["speech"])


@pytest.mark.parametrize("name", CLIPS)
def test_tagger_decode_at_32_khz_gives_the_same_decisions(model, name):
    """tagger's own decode of the middle window (PyAV, soxr) at the model's rate: the
    reference's top class and music-or-speech call, Music within 0.03 (the window may start a
    few samples elsewhere than librosa's)."""
    audio = decode_window(real_clip(name), window_s=WINDOW_S, sample_rate=SAMPLE_RATE)
    scores = scores_of(model, audio.samples)
    expected = REFERENCE["clips"][name]
    assert decisions(model, scores) == (expected["top5"][0][0],
                                        expected["music"] > expected["speech"])
    assert abs(scores[model.index("Music")] - expected["music"]) < 0.03


@pytest.mark.parametrize("batch,seconds", [(1, 10.0), (3, 3.0), (2, 0.5), (1, 31.7)])
def test_fast_path_equals_the_reference_layers(model, batch, seconds):
    """The folded path against the layer-by-layer modules: logits and both embeddings, for
    batches and lengths whose feature maps have odd sizes."""
    length = int(seconds * SAMPLE_RATE)
    rng = np.random.default_rng(length)
    waveform = torch.from_numpy(np.stack([
        np.roll(synthetic_waveform(), 997 * i)[:length] if length <= 320000
        else np.resize(synthetic_waveform(), length) for i in range(batch)])
        + rng.normal(0, 0.01, (batch, length)).astype(np.float32))
    network = model.network
    with torch.inference_mode():
        pooled, hidden = network.embed(waveform)
        logits = network(waveform)
    with torch.inference_mode():
        ref_pooled, ref_hidden = network.embed_reference(waveform)
        ref_logits = network.output(ref_hidden)
    with torch.enable_grad():  # autograd on: the modules, not the fast path
        assert (network(waveform) - ref_logits).abs().max() < 1e-5
    assert pooled.shape == (batch, 384) and hidden.shape == (batch, 512)
    assert logits.shape == (batch, 527)
    assert torch.allclose(logits, network.output(hidden), atol=1e-5)
    assert (pooled - ref_pooled).abs().max() < 1e-4
    assert (hidden - ref_hidden).abs().max() < 1e-4
    assert (logits - ref_logits).abs().max() < 1e-4


def test_changed_weights_rebuild_the_fast_path():
    """The folded weights follow the module: a changed parameter is seen at once."""
    network = load_efficientat().network
    x = torch.from_numpy(synthetic_waveform()[:64000])[None]
    with torch.inference_mode():
        before = network(x)
    network.blocks[3].depthwise.norm.running_var.mul_(4.0)
    with torch.inference_mode():
        after = network(x)
    assert (after - before).abs().max() > 1e-2
    assert (after - reference_path(network, x)).abs().max() < 1e-4


def test_model_card_describes_the_shipped_weights(model):
    card = read_card()
    entry = card["models"][SHIPPED_MODEL]
    assert card["input"]["sample_rate"] == SAMPLE_RATE and card["input"]["n_mels"] == 128
    assert entry["sha256"] == file_sha256(models_dir() / entry["file"]) == model.sha256
    assert len(entry["labels"]) == len(entry["ontology_ids"]) == 527
    assert entry["labels"][0] == "Speech" and entry["labels"][137] == "Music"
    assert {"Disco", "Reggae", "Whale vocalization"} <= set(entry["labels"])
    assert (models_dir() / card["licence_file"]).read_text(encoding="utf-8").count("MIT") >= 1
    assert model.prefix == "audioset" and model.index("Music") == 137


def test_corrupt_weights_are_refused(tmp_path, monkeypatch):
    copy = tmp_path / "models"
    shutil.copytree(models_dir(), copy)
    entry = read_card(copy)["models"][SHIPPED_MODEL]
    weights = copy / entry["file"]
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setenv("TAGGER_MODELS_DIR", str(copy))
    with pytest.raises(ModelError, match="sha256"):
        load_efficientat()
    weights.unlink()
    with pytest.raises(ModelError, match="missing"):
        load_efficientat()
    (copy / CARD_FILE).write_text("{", encoding="utf-8")
    with pytest.raises(ModelError, match="model card"):
        load_efficientat()


# --- the backbone seam ----------------------------------------------------------------------


def test_musicnn_and_efficientat_are_backbones_of_their_own_inputs(model):
    musicnn = load_musicnn("MTT_musicnn")
    assert isinstance(musicnn, Backbone) and isinstance(model, Backbone)
    assert musicnn.input == BackboneInput(LOG_MEL, 16000, 3.0)
    assert model.input == BackboneInput(WAVEFORM, 32000, 10.0)
    assert musicnn.embedding_sizes == (1506, 200) and model.embedding_sizes == (384, 512)
    with pytest.raises(ValueError, match="different inputs"):
        Backbones([musicnn, model])


def test_backbones_run_efficientat_as_they_run_musicnn(model):
    """The classifier's runner takes EfficientAT through the seam alone: chunks in two
    streams, tag scores, both embeddings and the scores from cached penultimates."""
    x = torch.from_numpy(np.resize(synthetic_waveform(), (9, 2 * SAMPLE_RATE)))
    backbones = Backbones([model], batch_segments=8, streams=2)
    out = backbones.run(x.numpy())
    with torch.inference_mode():
        direct = torch.sigmoid(model.network(x)).numpy()
    assert backbones.input.sample_rate == SAMPLE_RATE and backbones.chunk < len(x)
    assert out.tag_scores.shape == (9, 527) and np.abs(out.tag_scores - direct).max() < 1e-5
    assert out.penultimate.shape == (9, 512) and out.pooled.shape == (9, 384)
    again = backbones.tag_scores_from_penultimate(out.penultimate)
    assert np.abs(again - out.tag_scores).max() < 1e-5
