"""The decode stage: the middle ``window_s`` seconds of a track, as 16 kHz float32 mono.

FFmpeg's libraries, in process through PyAV (their build is bundled in the ``av`` wheel),
seek to the window and decode only it, at the source rate; the channels are averaged and
librosa resamples the result (``soxr_hq``), exactly as ``librosa.load`` does in musicnn's own
pipeline. Duration and streams come from the container. The format is found by content, never
by extension. Nothing is ever written anywhere. In process, one file costs a third of what two
ffmpeg runs (probe, decode) and their pipes cost; crash isolation comes from where it runs: the
scan decodes in worker processes, so a decoder crash takes down a worker, not the writer.

The ffmpeg binary (``decode.ffmpeg``, else ``ffmpeg`` on ``PATH``, else imageio-ffmpeg's) is
kept for one case only: a stream whose codec PyAV's FFmpeg build has no decoder for (none of
the formats tagger lists; a codec that only a fuller or newer system ffmpeg has). It is then
decoded by a subprocess, with an input-side seek (:mod:`tagger.audio.ffmpeg_cli`).

Every failure is a :class:`tagger.errors.ReadError` with a one-line message. The messages
start with one of these stable phrases: ``file not found``, ``permission denied``,
``not a regular file``, ``empty file``, ``not an audio file``, ``no audio stream``,
``unknown duration``, ``truncated or undecodable``, ``audio is silent``,
``ffmpeg timed out``, ``ffmpeg failed``, ``cannot run ffmpeg`` (FFmpeg's own errors are mapped
onto the same phrases whichever way it runs).
"""

from __future__ import annotations

import logging
import math
import os
import stat
import time
from dataclasses import dataclass

import numpy as np

from tagger.audio.containers import content_format
from tagger.audio.ffmpeg_cli import (
    MAX_MESSAGE,
    cannot_open_message,
    decode_with_binary,
    file_url,
    find_ffmpeg,
    no_duration_message,
)
from tagger.errors import ReadError
from tagger.formats import AIFF, WAV

__all__ = ["DecodedAudio", "find_ffmpeg", "probe_duration", "decode_window", "resample",
           "BACKENDS"]

#: ``decode_window(backend=...)``: "auto" is PyAV, falling back to the ffmpeg binary only for
#: a codec PyAV's libraries cannot decode; "pyav" and "ffmpeg" force one of them.
BACKENDS = ("auto", "pyav", "ffmpeg")

log = logging.getLogger(__name__)

#: Peak below which a window counts as digital silence (1e-4 is -80 dBFS).
SILENCE_PEAK = 1e-4

# In process the seek lands this much before the window and decoding runs into it: the
# decoder's warm-up (MP3 bit reservoir, AAC/Vorbis overlap, Opus pre-roll) is then over
# before the first sample kept, as ffmpeg's own accurate seek does it.
_PREROLL_S = 0.5


@dataclass(frozen=True)
class DecodedAudio:
    """A decoded window of a track.

    Attributes
    ----------
    samples : np.ndarray
        float32, mono, 1-D, at ``sample_rate``.
    sample_rate : int
        Sampling rate of ``samples`` in Hz.
    offset_s : float
        Where the decoded window starts within the track, in seconds.
    duration_s : float
        The whole track's duration in seconds (not the window's).
    """

    samples: np.ndarray
    sample_rate: int
    offset_s: float
    duration_s: float


def probe_duration(path: str | os.PathLike[str], ffmpeg: str = "") -> float:
    """Duration of an audio file in seconds, without decoding it.

    Parameters
    ----------
    path : str or os.PathLike
        The audio file.
    ffmpeg : str
        ffmpeg binary for the fallback, as for :func:`find_ffmpeg`.

    Returns
    -------
    float
        Duration in seconds, from the container as FFmpeg's libraries read it (found by
        content); through the ffmpeg binary only where PyAV's build cannot open the file.

    Raises
    ------
    ReadError
        The file is missing, unreadable, empty, not audio, has no audio stream, or its
        duration is unknown.
    """
    path = _check_file(path)
    with _open_container(path) as container:
        stream = _audio_stream(container, path)
        return _container_duration(container, stream, path)


def decode_window(
    path: str | os.PathLike[str],
    *,
    window_s: float = 30.0,
    sample_rate: int = 16000,
    ffmpeg: str = "",
    timeout_s: float = 120.0,
    backend: str = "auto",
) -> DecodedAudio:
    """Decode the middle ``window_s`` seconds of an audio file to mono float32.

    Only the window is decoded (after a seek): it starts at
    ``max(0, (duration - window_s) / 2)``. A track shorter than the window is decoded whole.

    Parameters
    ----------
    path : str or os.PathLike
        The audio file, any format ffmpeg can read (found by content, not extension).
    window_s : float > 0
        Length of the window in seconds.
    sample_rate : int > 0
        Target sampling rate; the source is resampled with ``librosa.resample``
        (``res_type="soxr_hq"``) unless it is already at this rate.
    ffmpeg : str
        ffmpeg binary, as for :func:`find_ffmpeg`, for the fallback (and ``backend="ffmpeg"``).
    timeout_s : float > 0
        Wall-clock limit: the in-process decode gives up between two packets past it; an
        ffmpeg run is killed.
    backend : str
        One of :data:`BACKENDS`.

    Returns
    -------
    DecodedAudio
        ``samples`` (float32, 1-D, at ``sample_rate``), ``offset_s`` and the track's
        ``duration_s``.

    Raises
    ------
    ReadError
        With a one-line message: file not found, permission denied, empty, not an audio
        file, no audio stream, truncated or undecodable, silent, or ffmpeg timed out.
    ConfigError
        From :func:`find_ffmpeg`, when no ffmpeg can be found.
    """
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0, got {window_s!r}")
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    sample_rate = int(sample_rate)
    path = _check_file(path)
    if backend != "ffmpeg":
        try:
            samples, source_rate, offset, duration = _decode_in_process(
                path, window_s, timeout_s)
        except _NoDecoder as exc:
            if backend == "pyav":
                raise ReadError(f"ffmpeg failed: {exc.message}", path) from None
            log.info("%s: %s; decoding with the ffmpeg binary", path, exc.message)
        else:
            return _finish(samples, source_rate, offset, duration, window_s, sample_rate, path)
    frames, source_rate, offset, duration = decode_with_binary(
        path, window_s, find_ffmpeg(ffmpeg), timeout_s)
    samples = _to_mono(frames.reshape(1, -1), "flt", False, frames.shape[1])  # interleaved
    return _finish(samples, source_rate, offset, duration, window_s, sample_rate, path)


def _finish(samples: np.ndarray, source_rate: int, offset: float, duration: float,
            window_s: float, sample_rate: int, path: str) -> DecodedAudio:
    """Silence check and resampling of the decoded mono window, whichever decoder made it."""
    if not np.isfinite(samples).all():
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.max(np.abs(samples)))
    if peak < SILENCE_PEAK:
        level = f"{20 * math.log10(peak):.0f} dBFS" if peak > 0 else "digital silence"
        raise ReadError(
            f"audio is silent (peak {level}, below {20 * math.log10(SILENCE_PEAK):.0f} dBFS"
            f" in the {samples.size / source_rate:.1f} s window at {offset:.1f} s)",
            path,
        )
    if source_rate != sample_rate:
        samples = resample(samples, source_rate, sample_rate)
    return DecodedAudio(
        samples=np.ascontiguousarray(samples, dtype=np.float32),
        sample_rate=sample_rate,
        offset_s=offset,
        duration_s=duration,
    )


# --- in process (PyAV) -------------------------------------------------------------------


class _NoDecoder(ReadError):
    """PyAV's FFmpeg build has no decoder for the audio stream (the binary may have one)."""


# FFmpeg's integer sample formats as float32 (ffmpeg's own s16/s32/u8 -> flt scaling)
_INT_SCALE = {"s16": 1 / 32768, "s32": 1 / 2147483648, "s64": 1 / 9223372036854775808}


# FFmpeg reads up to 5 MB of a file to find its streams' facts. For PCM in WAV or AIFF the
# header already holds them all, and reading 5 MB of samples costs ~45 ms a file (as much as
# decoding the window): such a file is opened with a 64 KiB probe. Any other file, and a WAV
# or AIFF whose audio turns out not to be PCM, gets FFmpeg's defaults, so that its stream
# facts and duration estimate stay the binary's.
_QUICK_PROBE = {"probesize": "65536"}


def _open_container(path: str):
    """The file opened by FFmpeg's libraries (format found by content), or a ReadError."""
    import av

    kind = content_format(path)
    if kind in (WAV, AIFF):
        container = _open_pcm(path)
        if container is not None:
            return container
    try:
        return _open_av(path, {})
    except FileNotFoundError:  # av.error.FileNotFoundError is one too
        raise ReadError("file not found", path) from None
    except PermissionError:
        raise ReadError("permission denied", path) from None
    except av.error.FFmpegError as exc:
        raise ReadError(cannot_open_message(kind, _av_reason(exc)), path) from None


def _open_pcm(path: str):
    """A WAV or AIFF file opened with the short probe when its audio is PCM, else None."""
    import av

    try:
        container = _open_av(path, _QUICK_PROBE)
    except av.error.FFmpegError:
        return None  # the full open gives the error in FFmpeg's words
    audio = container.streams.audio
    codec = audio[0].codec_context if audio else None
    if codec is not None and codec.name.startswith("pcm_"):
        return container
    container.close()
    return None


def _open_av(path: str, options: dict):
    import av

    # an absolute file: URL and the file protocol only, as for the binary (see file_url)
    return av.open(file_url(path), options={"protocol_whitelist": "file", **options})


def _av_reason(exc: BaseException) -> str:
    """FFmpeg's own words for an error, one line, without the file's name."""
    reason = getattr(exc, "strerror", None) or str(exc)
    reason = " ".join(str(reason).split())
    return reason[: MAX_MESSAGE - 3] + "..." if len(reason) > MAX_MESSAGE else reason


def _audio_stream(container, path: str):
    """The first audio stream; 'no audio stream' naming what the container holds instead."""
    audio = container.streams.audio
    if audio:
        return audio[0]
    kinds = sorted({s.type for s in container.streams})
    if not kinds:
        raise ReadError("no audio stream (the container holds no streams at all)", path)
    raise ReadError(f"no audio stream (only {', '.join(kinds)})", path)


def _container_duration(container, stream, path: str) -> float:
    """The track's duration: the container's, else the audio stream's."""
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # AV_TIME_BASE
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    raise ReadError(no_duration_message(content_format(path), "the container gives none"),
                    path)


def _to_mono(data: np.ndarray, name: str, planar: bool, channels: int) -> np.ndarray:
    """Samples as ``to_ndarray`` gives them -> float32 mono (the mean of the channels)."""
    if not planar:  # interleaved: (1, samples * channels)
        data = data.reshape(-1, channels).T
    base = name.rstrip("p")
    # Channel by channel, in the order and float32 arithmetic of ``mean(axis=0)``: numpy's
    # reduction over the few strided channels of interleaved audio is its slowest case (20 ms
    # for 30 s of stereo), adding whole rows is fast.
    mono = _as_float(data[0], base)
    for channel in range(1, channels):
        mono += _as_float(data[channel], base)
    if channels > 1:
        mono /= channels
    return mono


def _as_float(samples: np.ndarray, base: str) -> np.ndarray:
    """One channel of FFmpeg sample format ``base`` (packed name) as a new float32 array."""
    if base in _INT_SCALE:
        return samples.astype(np.float32) * np.float32(_INT_SCALE[base])
    if base == "u8":
        return (samples.astype(np.float32) - 128.0) / 128.0
    return samples.astype(np.float32)


def _drain(queue, lead: int) -> np.ndarray:
    """All of a sample queue as float32 mono, less its first ``lead`` samples."""
    frame = queue.read()
    if frame is None:
        return np.zeros(0, dtype=np.float32)
    fmt = frame.format
    mono = _to_mono(frame.to_ndarray(), fmt.name, fmt.is_planar, frame.layout.nb_channels)
    return mono[lead:]


def _first_timestamp(container, stream) -> float:
    """Seconds: the timestamp of the stream's first decoded frame (else the start time)."""
    import av

    fallback = (container.start_time or 0) / 1_000_000
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                if frame.pts is None or frame.time_base is None:
                    return fallback
                return float(frame.pts * frame.time_base)
            if packet.pts is None and packet.size == 0:  # the flush packet: nothing at all
                break
    except av.error.FFmpegError:
        pass
    return fallback


def _decode_in_process(path: str, window_s: float,
                       timeout_s: float) -> tuple[np.ndarray, int, float, float]:
    """Mono samples, their rate, the window's offset and the duration, by PyAV."""
    import av
    from av.audio.fifo import AudioFifo

    deadline = time.monotonic() + timeout_s
    with _open_container(path) as container:
        stream = _audio_stream(container, path)
        duration = _container_duration(container, stream, path)
        offset = max(0.0, (duration - window_s) / 2.0)
        if stream.codec_context is None:  # PyAV gives none where its build has no decoder
            raise _NoDecoder("PyAV's FFmpeg has no decoder for the audio codec")
        stream.thread_type = "NONE"  # the worker pool is the parallelism (one core each)
        # Time 0 of the track is the first decoded sample's timestamp, as ffmpeg's own -ss
        # has it: past an MP3's encoder delay, and ASF's preroll, which the container's
        # start time does not always include. Decoding from the start, that is the first
        # frame below; before a seek, one frame is decoded to find it.
        origin = None
        start = offset - _PREROLL_S
        if start > 0:
            origin = _first_timestamp(container, stream)
            try:
                # to the last keyframe at or before `start` (AV_TIME_BASE units)
                container.seek(int((origin + start) * 1_000_000), backward=True,
                               any_frame=False)
            except av.error.FFmpegError as exc:  # as ffmpeg does: decode up to the window
                log.debug("%s: cannot seek (%s); decoding up to the window", path, exc)
            else:
                stream.codec_context.flush_buffers()
        # Frames go into FFmpeg's own sample queue (AVAudioFifo): per frame a copy in C, where
        # a numpy array per frame costs ~20 us (1,300 frames in 30 s of MP3 or AAC). A queue
        # comes out as one block, and a new one starts where the format changes or a frame
        # must be cut at the window's start.
        blocks: list[np.ndarray] = []
        queue, lead = None, 0  # lead: samples at the head of the queue before the window
        rate, have, wanted, errors = 0, 0, 0, []
        time_base = float(stream.time_base) if stream.time_base else None
        try:
            for packet in container.demux(stream):
                if time.monotonic() > deadline:
                    raise ReadError(f"ffmpeg timed out after {timeout_s:g} s", path)
                try:
                    frames = packet.decode()
                except (av.error.InvalidDataError, av.error.EOFError) as exc:
                    errors.append(exc)  # a damaged packet: ffmpeg, too, skips it and goes on
                    continue
                for frame in frames:
                    if not rate:
                        rate = frame.sample_rate
                        wanted = int(round(window_s * rate))
                    samples = frame.samples
                    skip = 0
                    if frame.pts is not None and time_base is not None:
                        begins = frame.pts * time_base
                        if origin is None:
                            origin = begins
                        # drop what lies before the window (the seek lands on a keyframe)
                        skip = max(0, int(round((offset - (begins - origin)) * rate)))
                        if skip >= samples:
                            continue
                    frame.pts = None  # the queue would insist on gapless timestamps
                    if queue is None or skip:
                        if queue is not None:
                            blocks.append(_drain(queue, lead))
                        queue, lead = AudioFifo(), skip
                    try:
                        queue.write(frame)
                    except ValueError:  # format, layout or rate changed (a new Ogg chain)
                        blocks.append(_drain(queue, lead))
                        queue, lead = AudioFifo(), 0
                        queue.write(frame)
                    have += samples - skip
                if wanted and have >= wanted:
                    break
        except av.error.FFmpegError as exc:
            errors.append(exc)  # a read error part way: keep what was decoded
        if time.monotonic() > deadline:
            raise ReadError(f"ffmpeg timed out after {timeout_s:g} s", path)
    if not have:
        where = f"at {offset:.1f} s of {duration:.1f} s" if offset > 0 else f"in {duration:.1f} s"
        why = f" (ffmpeg: {_av_reason(errors[-1])})" if errors else ""
        raise ReadError(f"truncated or undecodable: no audio decoded {where}{why}", path)
    if errors:
        log.debug("%s: decoded with ffmpeg errors: %s", path, _av_reason(errors[-1]))
    if queue is not None:
        blocks.append(_drain(queue, lead))
    samples = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    return samples[:wanted], rate, offset, duration


# --- helpers ----------------------------------------------------------------------------


def _check_file(path: str | os.PathLike[str]) -> str:
    """The path as str, once it is known to be a readable, non-empty regular file."""
    path = os.fsdecode(os.fspath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ReadError("file not found", path) from None
    except PermissionError:
        raise ReadError("permission denied", path) from None
    except NotADirectoryError:
        raise ReadError("file not found (a parent is not a directory)", path) from None
    except OSError as exc:
        raise ReadError(f"cannot stat file: {exc.strerror or exc}", path) from None
    if stat.S_ISDIR(st.st_mode):
        raise ReadError("not a regular file (a directory)", path)
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
        raise ReadError("not a regular file", path)
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise ReadError("permission denied", path) from None
    except OSError as exc:
        raise ReadError(f"cannot open file: {exc.strerror or exc}", path) from None
    if st.st_size == 0:
        raise ReadError("empty file (0 bytes)", path)
    return path


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample as musicnn's pipeline does: ``librosa.resample(res_type="soxr_hq")``, which
    is soxr's HQ resampler, its output cut or zero-padded to ``ceil(n * ratio)`` samples.
    Called here directly: importing librosa costs a new process seconds of CPU (scipy.signal,
    numba) for this one call (tests/test_features.py checks that both agree)."""
    import soxr

    if orig_sr == target_sr:
        return samples
    wanted = math.ceil(samples.shape[-1] * float(target_sr) / orig_sr)
    out = soxr.resample(samples, orig_sr, target_sr, quality="soxr_hq")
    if out.shape[-1] < wanted:
        out = np.pad(out, (0, wanted - out.shape[-1]))
    return np.asarray(out[:wanted], dtype=samples.dtype)
