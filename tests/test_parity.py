"""The PyTorch port gives the original TensorFlow graphs' numbers (no TensorFlow needed here).

tests/data/parity.npz was written by tools/convert_musicnn.py: log-mel patches of real music
(tests/data/ATTRIBUTION.md) and the sigmoid outputs of musicnn 0.1.0's own MSD and MTT graphs.
"""

import shutil

import numpy as np
import pytest
import torch
from helpers.audio import DATA_DIR

from tagger.errors import ModelError
from tagger.model.musicnn import load_musicnn, models_dir, read_model_card

pytestmark = pytest.mark.slow  # runs both networks

PARITY = np.load(DATA_DIR / "parity.npz")


@pytest.mark.parametrize("name,prefix", [("MSD_musicnn", "msd"), ("MTT_musicnn", "mtt")])
def test_port_matches_tensorflow_within_1e_4(name, prefix):
    model = load_musicnn(name)
    with torch.inference_mode():
        scores = torch.sigmoid(model.network(torch.from_numpy(PARITY["patches"]))).numpy()
    expected = PARITY[f"{prefix}_scores"]
    assert scores.shape == expected.shape == (len(PARITY["patches"]), 50)
    assert np.abs(scores - expected).max() < 1e-4
    # the patches are real music, so the reference is not degenerate
    assert expected.max() > 0.5 and expected.std() > 0.05


def test_parity_patches_are_finite_float32():
    patches = PARITY["patches"]
    assert patches.dtype == np.float32 and patches.shape[1:] == (187, 96)
    assert np.isfinite(patches).all()


def test_model_card_describes_both_models():
    card = read_model_card()
    assert set(card["models"]) == {"MSD_musicnn", "MTT_musicnn"}
    assert card["input"]["sample_rate"] == 16000 and card["input"]["n_mels"] == 96
    for entry in card["models"].values():
        assert len(entry["labels"]) == 50 and len(entry["sha256"]) == 64
    assert "classical" in card["models"]["MTT_musicnn"]["labels"]
    assert "jazz" in card["models"]["MSD_musicnn"]["labels"]


def test_corrupt_weights_are_refused(tmp_path, monkeypatch):
    copy = tmp_path / "models"
    shutil.copytree(models_dir(), copy)
    weights = copy / "msd_musicnn.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setenv("TAGGER_MODELS_DIR", str(copy))
    with pytest.raises(ModelError, match="sha256"):
        load_musicnn("MSD_musicnn")
    load_musicnn("MTT_musicnn")  # the untouched one still loads


@pytest.fixture(scope="module")
def mtt():
    return load_musicnn("MTT_musicnn").network


@pytest.mark.parametrize("batch,frames", [(1, 187), (3, 187), (17, 187), (2, 93), (5, 250)])
def test_fast_inference_path_equals_the_reference_layers(mtt, batch, frames):
    """The restructured CPU path (tagger/fastconv.py) against the layer-by-layer reference,
    for batch sizes and segment lengths that do not divide its blocks evenly."""
    rng = np.random.default_rng(batch * 1000 + frames)
    real = PARITY["patches"]
    patches = np.concatenate([real] * (batch // len(real) + 1))[:batch]
    if frames != 187:  # another segment length: tile real frames along time
        patches = np.concatenate([patches] * (frames // 187 + 1), axis=1)[:, :frames]
    patches = patches + rng.normal(0, 0.01, patches.shape).astype(np.float32)
    x = torch.from_numpy(np.ascontiguousarray(patches))
    with torch.inference_mode():
        fast = mtt.embed(x)
        reference = mtt.embed_reference(x)
        fast_scores = torch.sigmoid(mtt(x))
        reference_scores = torch.sigmoid(mtt.output(reference[1]))
    assert fast[0].shape == reference[0].shape == (batch, 1506)
    for got, want in zip(fast, reference):  # float32 rounding, relative to magnitudes up to ~10
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert torch.isfinite(fast_scores).all()
    assert (fast_scores - reference_scores).abs().max() < 1e-4
