"""The decode stage on real audio in every format, and on the files a library really holds."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile as sf
from helpers.audio import FORMAT_SECONDS, FORMATS, LOSSLESS, SHORT_CLIP, ffmpeg_binaries, real_clip

from tagger.audio.decode import DecodedAudio, decode_window, find_ffmpeg, probe_duration
from tagger.errors import ConfigError, ReadError

SR = 16000
WINDOW = 30.0
FFMPEGS = ffmpeg_binaries()  # {"auto": find_ffmpeg()} plus "bundled" where that differs
# The default, in process (PyAV; it falls back to the binary only for a codec it lacks), and
# each ffmpeg binary forced: the fallback must decode every format the same way.
DECODERS = {"pyav": {"backend": "auto"},
            **{f"ffmpeg-{k}": {"backend": "ffmpeg", "ffmpeg": v} for k, v in FFMPEGS.items()}}

if not FFMPEGS:
    pytest.skip("no ffmpeg at all", allow_module_level=True)


def _format(format_files, name):
    if name not in format_files:
        pytest.skip(f"no available ffmpeg can encode {name}")
    return format_files[name]


def _hostile(hostile_files, name):
    if name not in hostile_files:
        pytest.skip(f"hostile file {name} could not be made here")
    return hostile_files[name]


def _best_lag(decoded: np.ndarray, reference: np.ndarray, max_lag: int) -> tuple[float, int]:
    """Peak normalised cross-correlation within +-max_lag samples, and its lag."""
    n = min(decoded.size, reference.size)
    a, b = decoded[:n].astype(np.float64), reference[:n].astype(np.float64)
    full = scipy.signal.correlate(a, b, mode="full", method="fft")
    lags = np.arange(-n + 1, n)
    keep = np.abs(lags) <= max_lag
    full, lags = full[keep], lags[keep]
    i = int(np.argmax(full))
    return float(full[i] / (np.linalg.norm(a) * np.linalg.norm(b))), int(lags[i])


# --- every format ------------------------------------------------------------------------


@pytest.mark.parametrize("decoder", sorted(DECODERS))
@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_decodes_the_middle_window(format_files, name, decoder):
    path = _format(format_files, name)
    audio = decode_window(path, **DECODERS[decoder])

    assert isinstance(audio, DecodedAudio)
    assert audio.sample_rate == SR
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.samples.flags.c_contiguous
    assert audio.samples.size == int(WINDOW * SR)  # exactly the window
    assert audio.duration_s == pytest.approx(FORMAT_SECONDS, abs=0.1)
    assert audio.offset_s == pytest.approx((audio.duration_s - WINDOW) / 2, abs=1e-6)
    assert audio.offset_s == pytest.approx((FORMAT_SECONDS - WINDOW) / 2, abs=0.05)

    # The same region of the WAV version, loaded the way musicnn's pipeline loads audio:
    # the samples must line up (lossy codecs: by correlation, within 10 ms, but for the
    # codec delay of WMA, which ffmpeg's wmav2 encoder does not signal: 2048 samples).
    reference, _ = librosa.load(
        format_files["wav"], sr=SR, mono=True, offset=audio.offset_s, duration=WINDOW
    )
    corr, lag = _best_lag(audio.samples, reference, max_lag=SR // 10)
    tolerance_ms = 60 if name == "wma" else 10
    assert abs(lag) / SR * 1000 <= tolerance_ms, f"window is {lag / SR * 1000:.1f} ms off"
    assert corr > (0.9999 if name in LOSSLESS else 0.98), f"correlation {corr:.4f}"
    if name in LOSSLESS:
        # the same samples at the same level as librosa's mean downmix
        np.testing.assert_allclose(audio.samples, reference, atol=1e-4)


@pytest.mark.parametrize("decoder", sorted(DECODERS))
@pytest.mark.parametrize("name", list(FORMATS))
def test_seek_lands_on_the_offset(format_files, name, decoder):
    # whatever the codec's own delay, the window is where the whole-file decode has it
    path = _format(format_files, name)
    audio = decode_window(path, **DECODERS[decoder])
    whole = decode_window(path, window_s=2 * FORMAT_SECONDS, **DECODERS[decoder])
    assert whole.offset_s == 0.0
    start = int(round(audio.offset_s * SR))
    corr, lag = _best_lag(audio.samples, whole.samples[start:], max_lag=SR // 10)
    assert abs(lag) / SR * 1000 <= 10, f"seek is {lag / SR * 1000:.1f} ms off"
    assert corr > 0.99, f"correlation {corr:.4f}"


@pytest.mark.parametrize("name", list(FORMATS))
def test_in_process_decode_matches_the_ffmpeg_binary(format_files, name):
    # PyAV's libraries and the ffmpeg binary give the same window: same offset and length,
    # the same samples (lossless: to float rounding; lossy: the same decoder, so as close)
    path = _format(format_files, name)
    ours = decode_window(path)
    binary = decode_window(path, backend="ffmpeg", ffmpeg=FFMPEGS[sorted(FFMPEGS)[0]])
    # the binary's duration is mutagen's where it reads the file (an MP3's LAME padding, an
    # M4A's priming can count), ours the container's: windows may start up to ~25 ms apart
    assert ours.duration_s == pytest.approx(binary.duration_s, abs=0.05)
    assert ours.offset_s == pytest.approx(binary.offset_s, abs=0.03)
    assert ours.samples.size == binary.samples.size
    expected = round((binary.offset_s - ours.offset_s) * SR)
    corr, lag = _best_lag(ours.samples, binary.samples, max_lag=SR // 10)
    # within 10 ms, as against the WAV above (AAC priming, WMA delay: a few ms apart)
    assert abs(lag - expected) <= SR // 100, f"{(lag - expected) / SR * 1000:.1f} ms apart"
    assert corr > 0.99, f"correlation {corr:.5f}"
    if name in LOSSLESS:
        assert expected == 0
        np.testing.assert_allclose(ours.samples, binary.samples, atol=1e-4)


def test_default_decode_needs_no_ffmpeg_binary(format_files):
    # in process: a configured ffmpeg that does not exist is never looked up
    path = _format(format_files, "mp3")
    missing = "/nonexistent/bin/ffmpeg"
    audio = decode_window(path, ffmpeg=missing)
    assert audio.samples.size == int(WINDOW * SR)
    with pytest.raises(ConfigError):
        decode_window(path, ffmpeg=missing, backend="ffmpeg")


@pytest.mark.parametrize("name", list(FORMATS))
def test_probe_duration_every_format(format_files, name):
    path = _format(format_files, name)
    assert probe_duration(path) == pytest.approx(FORMAT_SECONDS, abs=0.1)


@pytest.mark.parametrize("ffmpeg", sorted(FFMPEGS))
def test_probe_duration_by_content_when_headers_fail(hostile_files, ffmpeg):
    # mutagen goes by the .flac name and fails; ffmpeg finds the MP3 by content
    path = _hostile(hostile_files, "mp3_as_flac")
    assert probe_duration(path, FFMPEGS[ffmpeg]) == pytest.approx(FORMAT_SECONDS, abs=0.1)


def test_wav_at_native_rate_is_not_resampled(format_files):
    path = _format(format_files, "wav")
    audio = decode_window(path, sample_rate=44100)
    stereo, rate = sf.read(
        path, start=int(round(audio.offset_s * 44100)), frames=int(WINDOW * 44100),
        dtype="float32",
    )
    assert rate == 44100 and audio.sample_rate == 44100
    np.testing.assert_allclose(audio.samples, stereo.mean(axis=1), atol=1e-6)


def test_window_length_and_offset_follow_window_s(format_files):
    audio = decode_window(_format(format_files, "flac"), window_s=10.0)
    assert audio.offset_s == pytest.approx((FORMAT_SECONDS - 10.0) / 2, abs=1e-3)
    assert audio.samples.size == 10 * SR


# --- shorter than the window ------------------------------------------------------------


def test_track_shorter_than_window_is_decoded_whole():
    path = real_clip(SHORT_CLIP)  # 5.33 s
    audio = decode_window(path)
    assert audio.offset_s == 0.0
    assert audio.duration_s == pytest.approx(5.33, abs=0.02)
    assert audio.samples.size / SR == pytest.approx(audio.duration_s, abs=0.02)


def test_two_second_clip_decodes_to_two_seconds(hostile_files):
    audio = decode_window(_hostile(hostile_files, "short_2s"))
    assert audio.offset_s == 0.0
    assert audio.duration_s == pytest.approx(2.0, abs=0.02)
    assert audio.samples.size / SR == pytest.approx(2.0, abs=0.02)
    assert np.max(np.abs(audio.samples)) > 0.01


# --- hostile files ------------------------------------------------------------------------


def _assert_read_error(excinfo, path, *phrases):
    err = excinfo.value
    text = str(err)
    assert "\n" not in text and "\r" not in text, text
    assert str(path) in text and err.path == str(path)
    assert "Traceback" not in text and len(text) < len(str(path)) + 200, text
    for phrase in phrases:
        assert phrase in err.message, err.message


HOSTILE = {
    "truncated_mp3": ("truncated or undecodable", "no audio decoded"),
    # FFmpeg cannot open it, but its first bytes say FLAC: damaged, not "not audio"
    "truncated_flac": ("truncated or undecodable", "FLAC file by its first bytes"),
    "empty_flac": ("empty file",),
    "text_as_mp3": ("not an audio file",),
    "silent_wav": ("audio is silent",),
    "png_as_ogg": ("no audio stream",),
    "random_as_ogg": ("not an audio file",),
    # FFmpeg's probe takes it for FLAC by its name, then finds no duration in it
    "random_as_flac": ("not an audio file",),
    "video_only_m4a": ("no audio stream",),
    "empty_m4a": ("no audio stream",),
}


@pytest.mark.parametrize("decoder", sorted(DECODERS))
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_file_gives_one_line_read_error(hostile_files, name, decoder):
    path = _hostile(hostile_files, name)
    with pytest.raises(ReadError) as excinfo:
        decode_window(path, **DECODERS[decoder])
    _assert_read_error(excinfo, path, *HOSTILE[name])


@pytest.mark.parametrize("name", ["empty_flac", "text_as_mp3", "png_as_ogg", "random_as_ogg",
                                  "random_as_flac"])
def test_probe_duration_rejects_what_is_not_audio(hostile_files, name):
    path = _hostile(hostile_files, name)
    with pytest.raises(ReadError) as excinfo:
        probe_duration(path)
    _assert_read_error(excinfo, path, *HOSTILE[name])


def test_missing_file(tmp_path):
    path = tmp_path / "gone.mp3"
    with pytest.raises(ReadError) as excinfo:
        decode_window(path)
    _assert_read_error(excinfo, path, "file not found")
    with pytest.raises(ReadError, match="file not found"):
        probe_duration(path)


def test_directory_and_fifo_are_not_regular_files(tmp_path):
    folder = tmp_path / "album.flac"
    folder.mkdir()
    with pytest.raises(ReadError) as excinfo:
        decode_window(folder)
    _assert_read_error(excinfo, folder, "not a regular file")
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.mp3"
        os.mkfifo(fifo)
        with pytest.raises(ReadError) as excinfo:  # must not block on the pipe
            decode_window(fifo)
        _assert_read_error(excinfo, fifo, "not a regular file")


def test_unreadable_file(format_files, tmp_path):
    """As root (CI) every file is readable, so the check runs in a child that drops to 'nobody'."""
    folder = Path(tempfile.mkdtemp(prefix="tagger-locked-"))  # beside, not inside, root's tmp
    folder.chmod(0o755)
    path = folder / "locked.flac"
    path.write_bytes(_format(format_files, "flac").read_bytes())
    path.chmod(0)
    try:
        if os.geteuid() != 0:
            with pytest.raises(ReadError) as excinfo:
                decode_window(path)
            _assert_read_error(excinfo, path, "permission denied")
            return
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            message = "no error"
            try:
                os.setgid(65534)
                os.setuid(65534)
                decode_window(path)
            except ReadError as exc:
                message = str(exc)
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                message = f"{type(exc).__name__}: {exc}"
            os.write(write_end, message.encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            message = pipe.read()
        os.waitpid(child, 0)
        assert message == f"{path}: permission denied"
    finally:
        shutil.rmtree(folder)


def test_ffmpeg_timeout_kills_it(format_files):
    path = _format(format_files, "flac")
    with pytest.raises(ReadError) as excinfo:
        decode_window(path, timeout_s=0.001)
    _assert_read_error(excinfo, path, "ffmpeg timed out")


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_real_mp3_with_wrong_extension_decodes(hostile_files, format_files, decoder):
    path = _hostile(hostile_files, "mp3_as_flac")
    audio = decode_window(path, **DECODERS[decoder])
    assert audio.samples.size == int(WINDOW * SR)
    assert audio.duration_s == pytest.approx(FORMAT_SECONDS, abs=0.1)
    same = decode_window(format_files["mp3"], **DECODERS[decoder])
    corr, _ = _best_lag(audio.samples, same.samples, max_lag=SR // 10)
    assert corr > 0.99


def test_mp3_cut_in_the_middle_decodes_what_is_there(hostile_files):
    # the header still promises 40 s; the data stops at about 16 s, inside the window
    audio = decode_window(_hostile(hostile_files, "truncated_mid_mp3"))
    assert audio.duration_s == pytest.approx(FORMAT_SECONDS, abs=0.1)
    assert 0 < audio.samples.size < int(WINDOW * SR)
    assert audio.samples.size / SR == pytest.approx(0.4 * FORMAT_SECONDS - audio.offset_s, abs=1)


def test_decoding_writes_nothing(format_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _format(format_files, "aac" if "aac" in format_files else "flac")
    folder = sorted(os.listdir(path.parent))
    stat_before = path.stat()
    decode_window(path)
    probe_duration(path)
    assert os.listdir(tmp_path) == []
    assert sorted(os.listdir(path.parent)) == folder
    assert path.stat().st_mtime_ns == stat_before.st_mtime_ns


# --- finding ffmpeg -----------------------------------------------------------------------


def test_find_ffmpeg_prefers_configured_then_path_then_bundled(tmp_path, monkeypatch):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    bundled = imageio_ffmpeg.get_ffmpeg_exe()
    assert find_ffmpeg(bundled) == os.path.abspath(bundled)
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg on PATH, as on a fresh CI machine
    assert find_ffmpeg() == bundled
    assert os.access(find_ffmpeg(), os.X_OK)


def test_find_ffmpeg_rejects_a_bad_configured_path(tmp_path):
    bad = tmp_path / "no-such-ffmpeg"
    with pytest.raises(ConfigError) as excinfo:
        find_ffmpeg(str(bad))
    assert "decode.ffmpeg" in str(excinfo.value) and str(bad) in str(excinfo.value)
    assert "\n" not in str(excinfo.value)
