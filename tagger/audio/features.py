"""Log-mel features and segmenting, exactly as musicnn expects them (but in float32).

musicnn's own extractor casts the mel power to float16 before the log, which overflows above
6.55e4/1e4 and turns loud music into inf; here the whole computation stays in float32.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from tagger.errors import ReadError, TaggerError, TooShortError

if TYPE_CHECKING:
    from tagger.config import Config

SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96


def frames_for(seconds: float) -> int:
    """Spectrogram frames in a patch of ``seconds`` (musicnn: 3 s -> 187 frames).

    ``librosa.time_to_frames(seconds, sr, hop_length, n_fft) + 1``, written out (see
    :func:`log_mel` for why librosa is not imported here).
    """
    samples = int(seconds * SAMPLE_RATE)  # librosa.time_to_samples truncates
    return (samples - N_FFT // 2) // HOP_LENGTH + 1


FRAMES_PER_SEGMENT = frames_for(3.0)


def log_mel(samples: np.ndarray) -> np.ndarray:
    """log10(1 + 10000 * mel power), shape (frames, 96), float32, time first.

    What ``librosa.feature.melspectrogram`` computes with musicnn's settings (centred frames,
    zero padded; periodic Hann window; power 2; Slaney mel filters), written with numpy:
    importing librosa costs each new decoding process 3-5 s of CPU (scipy.signal, numba,
    llvmlite) and ~70 MB for these few lines. tests/test_features.py checks both agree.
    """
    y = np.asarray(samples, dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(y, N_FFT // 2), N_FFT)
    spectrum = np.fft.rfft(_hann() * frames[::HOP_LENGTH], axis=-1).astype(np.complex64)
    mel = (np.abs(spectrum) ** 2) @ _mel_filters().T
    return np.log10(1.0 + 10000.0 * mel).astype(np.float32)


@functools.cache
def _hann() -> np.ndarray:
    """The periodic Hann window (``scipy.signal.get_window("hann", N_FFT)``), float64."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's htk=False)."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3)
    above = hz >= 1000.0
    mel[above] = 15.0 + np.log(hz[above] / 1000.0) / (np.log(6.4) / 27.0)
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    hz = (200.0 / 3) * mel
    above = mel >= 15.0
    hz[above] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel[above] - 15.0))
    return hz


@functools.cache
def _mel_filters() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) float32: ``librosa.filters.mel(sr=16000, n_fft=512,
    n_mels=96)``, triangles on Slaney's scale from 0 Hz to Nyquist, area-normalised."""
    fft_hz = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    mel_hz = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.array([SAMPLE_RATE / 2]))[0],
                                    N_MELS + 2))
    ramps = np.subtract.outer(mel_hz, fft_hz)
    widths = np.diff(mel_hz)
    weights = np.maximum(0.0, np.minimum(-ramps[:-2] / widths[:-1, None],
                                         ramps[2:] / widths[1:, None]))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return weights.astype(np.float32)


@dataclass(frozen=True)
class Segments:
    patches: np.ndarray  # (segments, frames, 96) float32
    starts_s: tuple[float, ...]  # start of each patch, seconds from the start of the samples


def segment(samples: np.ndarray, count: int = 10, seconds: float = 3.0) -> Segments:
    """Cut ``count`` non-overlapping patches of ``seconds`` from the samples' log-mel.

    Patches are spread evenly over the audio (with 10 x 3 s in a 30 s window they tile it).
    Shorter audio gives as many whole patches as fit, at least one; audio shorter than one
    patch is repeated until it fills it.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.size == 0:
        raise ValueError("no samples to segment")
    frames = frames_for(seconds)
    needed = (frames - 1) * HOP_LENGTH  # samples giving `frames` centred frames
    if samples.size < needed:
        samples = np.tile(samples, math.ceil(needed / samples.size))[:needed]
    mel = log_mel(samples)
    fit = max(1, min(count, mel.shape[0] // frames))
    starts = np.linspace(0, mel.shape[0] - frames, fit).round().astype(int) if fit > 1 else (
        np.array([(mel.shape[0] - frames) // 2]))
    patches = np.stack([mel[s:s + frames] for s in starts])
    return Segments(patches, tuple(float(s * HOP_LENGTH / SAMPLE_RATE) for s in starts))


@dataclass(frozen=True)
class PreparedTrack:
    """A track decoded and cut into log-mel patches, ready for the model."""

    path: str
    patches: np.ndarray  # (segments, frames, 96) float32
    starts_s: tuple[float, ...]  # segment starts, seconds from the start of the *track*
    duration_s: float
    # the decoded window at GATE_SAMPLE_RATE for the content gate (None: the gate is off)
    waveform: np.ndarray | None = None


#: the rate the content gate's network (EfficientAT) reads; musicnn's 16 kHz is half of it
GATE_SAMPLE_RATE = 32000


def warm_up() -> None:
    """Run the resampling and log-mel code once, on a second of synthetic noise.

    A process that will fork decode workers calls this first, so each worker starts with the
    decode stack loaded and its first-use work done (PyAV and FFmpeg's libraries, soxr, the
    window and the mel filters).
    """
    import av  # noqa: F401 - loaded here once, for every worker forked afterwards

    from tagger.audio.decode import resample

    noise = np.random.default_rng(0).standard_normal(44100).astype(np.float32) * 0.1
    segment(resample(noise, 44100, SAMPLE_RATE), count=1, seconds=0.5)


def prepare_track(path: str, config: Config) -> PreparedTrack:
    """Decode the middle window of a file and cut it into segments (decode + features stages).

    Needs no model, so it runs in worker processes. Raises ReadError for anything that
    cannot be classified, including tracks shorter than ``model.min_track_seconds``.

    With the content gate on (``content.gate``), the window is resampled once, to the gate's
    32 kHz (kept as ``waveform``), and musicnn's 16 kHz is made from that by halving the rate
    (bench/content_gate.py measured it against a second resampling from the source).
    """
    from tagger.audio.decode import decode_window, resample

    model = config.model
    gate = config.content.gate
    audio = decode_window(path, window_s=model.window_seconds,
                          sample_rate=GATE_SAMPLE_RATE if gate else SAMPLE_RATE,
                          ffmpeg=config.decode.ffmpeg, timeout_s=config.decode.timeout_seconds)
    samples = (resample(audio.samples, GATE_SAMPLE_RATE, SAMPLE_RATE).astype(np.float32)
               if gate else audio.samples)
    decoded_s = audio.samples.size / audio.sample_rate
    if decoded_s < model.min_track_seconds:
        raise TooShortError(f"too short to classify: {decoded_s:.1f} s of audio, the minimum is "
                        f"{model.min_track_seconds:g} s (model.min_track_seconds)", path)
    segments = segment(samples, model.segments, model.segment_seconds)
    return PreparedTrack(
        path=str(path),
        patches=segments.patches,
        starts_s=tuple(round(audio.offset_s + s, 3) for s in segments.starts_s),
        duration_s=audio.duration_s,
        waveform=audio.samples if gate else None,
    )


def prepare_or_error(path: str, config: Config) -> PreparedTrack | TaggerError:
    """:func:`prepare_track`, its failure as a value: a decoder bug is a ReadError of its
    file, so the other files go on (in a thread or in a worker process alike)."""
    try:
        return prepare_track(path, config)
    except TaggerError as exc:
        return exc
    except Exception as exc:  # a decoder bug must not stop the other files
        return ReadError(f"unexpected {type(exc).__name__}: {exc}", path)


def prepare_in_order(paths: Iterable[str], config: Config, pool: Executor, ahead: int,
                     ) -> Iterator[tuple[str, PreparedTrack | TaggerError]]:
    """:func:`prepare_or_error` of each path in ``pool`` (threads: a pool of processes is
    :mod:`tagger.service.pool`'s, which survives its workers' crashes), yielded in order as
    ``(path, track or its error)``, with ``ahead`` of them decoding at a time: the next
    tracks decode while the caller runs the model on this one, and decoded tracks never
    pile up."""
    remaining = iter(paths)
    in_flight: deque = deque()

    def submit_next() -> None:
        path = next(remaining, None)
        if path is not None:
            in_flight.append((path, pool.submit(prepare_or_error, path, config)))

    for _ in range(max(1, ahead)):
        submit_next()
    while in_flight:
        path, future = in_flight.popleft()
        submit_next()
        yield path, future.result()
