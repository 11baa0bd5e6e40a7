"""Log-mel features and segmenting, exactly as musicnn expects them (but in float32).

musicnn's own extractor casts the mel power to float16 before the log, which overflows above
6.55e4/1e4 and turns loud music into inf; here the whole computation stays in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import librosa
import numpy as np

SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96


def frames_for(seconds: float) -> int:
    """Spectrogram frames in a patch of ``seconds`` (musicnn: 3 s -> 187 frames)."""
    return int(librosa.time_to_frames(seconds, sr=SAMPLE_RATE, n_fft=N_FFT,
                                      hop_length=HOP_LENGTH)) + 1


FRAMES_PER_SEGMENT = frames_for(3.0)


def log_mel(samples: np.ndarray) -> np.ndarray:
    """log10(1 + 10000 * mel power), shape (frames, 96), float32, time first."""
    mel = librosa.feature.melspectrogram(
        y=np.asarray(samples, dtype=np.float32), sr=SAMPLE_RATE, n_fft=N_FFT,
        hop_length=HOP_LENGTH, n_mels=N_MELS,
    )
    return np.log10(1.0 + 10000.0 * mel.astype(np.float32, copy=False)).T.astype(np.float32)


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
