"""The audio the review page plays: a catalogued file's middle window, decoded as the
classifier decodes it (tagger.audio.decode), served as 16-bit WAV with HTTP range requests.

WAV rather than Opus/WebM: every browser plays it, it needs no encoder, and its byte offsets
map straight to time, so a range request is a slice. 30 s of mono 22.05 kHz is 1.3 MB.
"""

from __future__ import annotations

import re
import struct
import threading
from collections import OrderedDict

import numpy as np

from tagger.audio.decode import decode_window
from tagger.config import Config

PLAYBACK_RATE = 22050
_CACHE_SIZE = 4  # a page plays one track; a few stay for going back and forth


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """Mono float samples in [-1, 1] as a 16-bit PCM WAV file."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
    header += b"data" + struct.pack("<I", len(pcm))
    return header + pcm


class Clips:
    """Decoded windows by track id, the last few kept (a player asks for ranges of the same
    file several times)."""

    def __init__(self, config: Config):
        self.config = config
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, int | None], tuple[bytes, float]] = OrderedDict()

    def window(self, track_id: int, path: str, mtime_ns: int | None) -> tuple[bytes, float]:
        """(WAV bytes, offset of the window in the track in seconds). Raises ReadError."""
        key = (track_id, mtime_ns)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        decoded = decode_window(path, window_s=self.config.model.window_seconds,
                                sample_rate=PLAYBACK_RATE, ffmpeg=self.config.decode.ffmpeg,
                                timeout_s=self.config.decode.timeout_seconds)
        entry = (wav_bytes(decoded.samples, PLAYBACK_RATE), float(decoded.offset_s))
        with self._lock:
            self._cache[key] = entry
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return entry


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) byte of a ``Range: bytes=a-b`` header, inclusive; None for no header
    (the whole file). Raises ValueError when it cannot be satisfied (416)."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        raise ValueError(header)
    first, last = match.groups()
    if first == "":  # the last N bytes
        n = int(last)
        if n == 0:
            raise ValueError(header)
        return max(0, size - n), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise ValueError(header)
    return start, end
