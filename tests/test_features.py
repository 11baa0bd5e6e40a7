"""Log-mel features and segmenting (synthetic signals are fine for these unit checks)."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tagger.audio.features import (
    FRAMES_PER_SEGMENT,
    SAMPLE_RATE,
    PreparedTrack,
    frames_for,
    log_mel,
    prepare_in_order,
    segment,
)
from tagger.config import Config
from tagger.errors import ReadError

DATA = Path(__file__).parent / "data"


def tone(seconds, amplitude=0.5, freq=440.0):
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_three_seconds_is_187_frames():
    assert FRAMES_PER_SEGMENT == 187 == frames_for(3.0)


@pytest.mark.parametrize("seconds", [0.01, 0.5, 1.0, 2.999, 3.0, 3.0161, 5.3, 6.0, 29.97, 30.0])
def test_frames_for_counts_as_librosa_does(seconds):
    import librosa

    expected = int(librosa.time_to_frames(seconds, sr=SAMPLE_RATE, n_fft=512,
                                          hop_length=256)) + 1
    assert frames_for(seconds) == expected


def test_log_mel_is_float32_and_finite_for_full_scale_audio():
    # musicnn's float16 cast overflows here (mel power > 6.55) and yields inf
    loud = np.sign(tone(3.5, amplitude=1.0)).astype(np.float32)
    mel = log_mel(loud)
    assert mel.dtype == np.float32 and mel.shape[1] == 96
    assert np.isfinite(mel).all()
    assert mel.max() > np.log10(1 + 10000 * 6.55)  # really beyond float16's range


REAL_CLIPS = sorted(DATA.glob("*.ogg"))


@pytest.mark.parametrize("clip", REAL_CLIPS, ids=lambda p: p.name[:24])
def test_resample_and_log_mel_compute_what_librosa_does(clip):
    """Resampling and log-mel are written with soxr and numpy (librosa's import costs every
    new decoder seconds): on real music they give what musicnn's librosa calls give, the
    resampled samples exactly, the log-mel to float32 rounding."""
    import librosa

    from tagger.audio.decode import resample

    samples, rate = librosa.load(clip, sr=None, mono=True, duration=30.0)
    expected = librosa.resample(samples, orig_sr=rate, target_sr=SAMPLE_RATE,
                                res_type="soxr_hq")
    resampled = resample(samples, rate, SAMPLE_RATE)
    assert resampled.dtype == expected.dtype and np.array_equal(resampled, expected)
    mel = librosa.feature.melspectrogram(y=expected, sr=SAMPLE_RATE, n_fft=512,
                                         hop_length=256, n_mels=96)
    want = np.log10(1.0 + 10000.0 * mel.astype(np.float32)).T
    got = log_mel(expected)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


def test_resampling_to_the_same_rate_and_an_odd_ratio_keeps_librosa_lengths():
    import librosa

    from tagger.audio.decode import resample

    noise = np.random.default_rng(1).standard_normal(44101).astype(np.float32) * 0.1
    assert resample(noise, SAMPLE_RATE, SAMPLE_RATE) is noise
    for rate in (44100, 22050, 8000, 48000, 11025):
        want = librosa.resample(noise, orig_sr=rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
        assert np.array_equal(resample(noise, rate, SAMPLE_RATE), want), rate


@pytest.mark.parametrize("seconds,expected", [(30.0, 10), (29.95, 10), (14.0, 4), (5.3, 1),
                                               (3.0, 1), (2.6, 1), (0.5, 1)])
def test_segment_counts(seconds, expected):
    segments = segment(tone(seconds))
    assert segments.patches.shape == (expected, 187, 96)
    assert len(segments.starts_s) == expected


def test_segments_do_not_overlap_and_cover_the_window():
    segments = segment(tone(30.0))
    starts = np.array(segments.starts_s)
    assert starts[0] == 0.0
    assert (np.diff(starts) >= 187 * 256 / SAMPLE_RATE - 1e-9).all()
    assert starts[-1] + 3.0 <= 30.0 + 0.05


def test_configurable_count_and_length():
    segments = segment(tone(30.0), count=5, seconds=6.0)
    assert segments.patches.shape == (5, frames_for(6.0), 96)


def test_short_audio_is_repeat_padded():
    short = tone(1.0, freq=1000.0)
    patch = segment(short).patches[0]
    # the tone continues through the whole patch: no silent tail
    energy = patch.mean(axis=1)
    assert energy.min() > 0.5 * np.median(energy)
    silent = segment(np.concatenate([short, np.zeros(40000, np.float32)])).patches[0]
    assert silent.mean(axis=1).min() < 0.01  # the check above would see a silent tail


class CountingPool(ThreadPoolExecutor):
    """A real thread pool that counts what it was given."""

    def __init__(self):
        super().__init__(max_workers=2)
        self.submitted = 0

    def submit(self, *args, **kwargs):
        self.submitted += 1
        return super().submit(*args, **kwargs)


def test_prepare_in_order_yields_every_file_in_order_within_a_bounded_window(tmp_path):
    clips = [DATA / "nexuiz_brainsukker_excerpt.ogg", tmp_path / "gone.ogg",
             DATA / "Kevin_MacLeod_-_Vibe_Ace.ogg", DATA / "sorohanro_-_solo-trumpet-06.ogg"]
    paths = [str(p) for p in clips]
    outcomes = []
    with CountingPool() as pool:
        for path, outcome in prepare_in_order(iter(paths), Config(), pool, ahead=2):
            outcomes.append((path, outcome))
            assert pool.submitted <= len(outcomes) + 2  # never more than 2 decoding ahead
    assert [path for path, _ in outcomes] == paths
    gone = outcomes[1][1]
    assert isinstance(gone, ReadError) and gone.path == paths[1]  # in its place; the rest go on
    for path, track in outcomes[:1] + outcomes[2:]:
        assert isinstance(track, PreparedTrack) and track.path == path
        assert track.patches.shape[1:] == (187, 96) and len(track.patches) >= 1
