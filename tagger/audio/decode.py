"""The decode stage: the middle ``window_s`` seconds of a track, as 16 kHz float32 mono.

ffmpeg (the configured binary, else ``ffmpeg`` on ``PATH``, else the one bundled by
imageio-ffmpeg) decodes only the window, with an input-side seek, to float32 at the source
rate; the channels are averaged and librosa resamples the result (``soxr_hq``), exactly as
``librosa.load`` does in musicnn's own pipeline. The format is found by content, never by
extension. Nothing is ever written anywhere: ffmpeg writes to a pipe.

Every failure is a :class:`tagger.errors.ReadError` with a one-line message. The messages
start with one of these stable phrases: ``file not found``, ``permission denied``,
``not a regular file``, ``empty file``, ``not an audio file``, ``no audio stream``,
``unknown duration``, ``truncated or undecodable``, ``audio is silent``,
``ffmpeg timed out``, ``ffmpeg failed``, ``cannot run ffmpeg``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import stat
import struct
import subprocess
from dataclasses import dataclass

import numpy as np

from tagger.errors import ConfigError, ReadError

__all__ = ["DecodedAudio", "find_ffmpeg", "probe_duration", "decode_window", "resample"]

log = logging.getLogger(__name__)

#: Peak below which a window counts as digital silence (1e-4 is -80 dBFS).
SILENCE_PEAK = 1e-4

_PROBE_TIMEOUT_S = 30.0
_WINDOW_MARGIN_S = 1.0
_MAX_MESSAGE = 160
# "[mp3 @ 0x55d...] ", or nested as in "[aost#0:0/pcm_f32le @ 0x55...] [enc:pcm_f32le @ 0x5...] "
_CONTEXT_PREFIX = re.compile(r"^(?:\[[^\]]*@ ?(?:0x)?[0-9a-fA-F]+\]\s*)+")
_DURATION = re.compile(r"Duration:\s*(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
_STREAM = re.compile(r"^\s*Stream #\d+:\d+.*?:\s*(Audio|Video|Subtitle|Data|Attachment):")
# ffmpeg lines that say only that something failed, not why; used only when nothing better.
_GENERIC = (
    "error opening input file",
    "error opening output file",
    "error opening output files",
    "error parsing options",
    "conversion failed",
    "to ignore this, add a trailing",
    "task finished with error code",
    "terminating thread with return code",
    "nothing was written into output file",
    "could not open encoder before eof",
    "error marking filters as finished",
    "consider increasing the value",
    "misdetection possible",
)


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


def find_ffmpeg(configured: str = "") -> str:
    """Locate the ffmpeg binary.

    Parameters
    ----------
    configured : str
        ``decode.ffmpeg`` from the configuration: a path, or a command name looked up on
        ``PATH``. Empty means automatic.

    Returns
    -------
    str
        Path of the ffmpeg executable: ``configured`` if given, else ``ffmpeg`` on ``PATH``,
        else the binary bundled by the imageio-ffmpeg wheel.

    Raises
    ------
    ConfigError
        ``configured`` is not an executable, or no ffmpeg can be found at all. This is a
        setup problem, not a problem of any one file, hence not a ReadError.
    """
    if configured:
        expanded = os.path.expanduser(configured)
        found = shutil.which(expanded)
        if found is None:
            raise ConfigError(
                "'decode.ffmpeg' is not an executable file (nor a command on PATH)", configured
            )
        return os.path.abspath(found)
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # ImportError, or RuntimeError when the wheel has no binary
        raise ConfigError(
            "no ffmpeg found: install ffmpeg, set 'decode.ffmpeg', or install imageio-ffmpeg"
            f" ({type(exc).__name__}: {exc})"
        ) from None
    if not (exe and os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise ConfigError(f"imageio-ffmpeg's ffmpeg is not executable: {exe}")
    return exe


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
        Duration in seconds: from mutagen's headers when it knows the file, else parsed from
        ``ffmpeg -i`` (which finds the format by content).

    Raises
    ------
    ReadError
        The file is missing, unreadable, empty, not audio, has no audio stream, or its
        duration is unknown.
    """
    path = _check_file(path)
    return _probe_duration(path, ffmpeg, _PROBE_TIMEOUT_S)


def decode_window(
    path: str | os.PathLike[str],
    *,
    window_s: float = 30.0,
    sample_rate: int = 16000,
    ffmpeg: str = "",
    timeout_s: float = 120.0,
) -> DecodedAudio:
    """Decode the middle ``window_s`` seconds of an audio file to mono float32.

    Only the window is decoded (ffmpeg seeks on the input side): it starts at
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
        ffmpeg binary, as for :func:`find_ffmpeg`; resolve it once and pass it in.
    timeout_s : float > 0
        Wall-clock limit for each ffmpeg run; ffmpeg is killed when it runs past it.

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
    sample_rate = int(sample_rate)
    path = _check_file(path)
    exe = find_ffmpeg(ffmpeg)
    duration = _probe_duration(path, exe, timeout_s)
    offset = max(0.0, (duration - window_s) / 2.0)

    cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error"]
    if offset > 0:
        cmd += ["-ss", f"{offset:.6f}"]
    cmd += [
        # Read a second more than the window and cut it to the sample below: ffmpeg's own
        # -t stops up to a frame short on some formats (WMA, Vorbis at time 0).
        "-t", f"{window_s + _WINDOW_MARGIN_S:.6f}",
        "-protocol_whitelist", "file",
        "-i", _url(path),
        "-map", "0:a:0", "-vn", "-sn", "-dn",
        # All channels, downmixed below as librosa does (their mean): ffmpeg's own "-ac 1"
        # gives (L+R)/sqrt(2) in float, 3 dB above what musicnn was trained on.
        "-c:a", "pcm_f32le",
        # WAV, not raw f32le: the same little-endian float32 samples, behind a header that
        # states the rate and channels ffmpeg actually decoded (HE-AAC, Opus: not the tags').
        "-f", "wav", "pipe:1",
    ]
    proc = _run(cmd, path, timeout_s)
    stderr = _stderr_lines(proc.stderr, path)
    try:
        samples, source_rate = _parse_wav(proc.stdout)
    except ValueError as exc:
        samples, source_rate = None, 0
        if proc.returncode == 0:  # ffmpeg was happy but the pipe makes no sense
            raise ReadError(f"ffmpeg failed: unreadable output ({exc})", path) from None
    if proc.returncode != 0 and not (samples is not None and samples.size):
        raise ReadError(_failure_message(stderr, proc.returncode), path)
    if samples is None or samples.size == 0:
        where = f"at {offset:.1f} s of {duration:.1f} s" if offset > 0 else f"in {duration:.1f} s"
        why = _relevant_line(stderr)
        raise ReadError(
            f"truncated or undecodable: no audio decoded {where}"
            + (f" (ffmpeg: {why})" if why else ""),
            path,
        )
    if proc.returncode != 0 or stderr:
        log.debug("%s: decoded with ffmpeg errors: %s", path, _relevant_line(stderr))
    samples = samples[: int(round(window_s * source_rate))]
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]

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


def _url(path: str) -> str:
    # An absolute file: URL, so that names such as "concat:x" or "-x.mp3" are never taken
    # for a protocol or an option.
    return "file:" + os.path.abspath(path)


def _probe_duration(path: str, ffmpeg: str, timeout_s: float) -> float:
    duration = _mutagen_duration(path)
    if duration is not None:
        return duration
    return _ffmpeg_duration(path, find_ffmpeg(ffmpeg), timeout_s)


def _mutagen_duration(path: str) -> float | None:
    try:
        import mutagen

        audio = mutagen.File(path)  # picks a parser by header (and extension), reads headers
    except Exception as exc:  # MutagenError, and the odd struct/Value error on junk
        log.debug("%s: mutagen cannot read it (%s); asking ffmpeg", path, exc)
        return None
    length = getattr(getattr(audio, "info", None), "length", None)
    if audio is None or not isinstance(length, (int, float)):
        return None
    if not math.isfinite(length) or length <= 0:
        return None
    if isinstance(getattr(audio.info, "sample_rate", None), int) and audio.info.sample_rate == 0:
        return None  # e.g. an MP4 holding only video: let ffmpeg say what is in it
    return float(length)


def _ffmpeg_duration(path: str, exe: str, timeout_s: float) -> float:
    # `ffmpeg -i FILE` with no output prints the input's description and exits with 1.
    cmd = [exe, "-nostdin", "-hide_banner", "-protocol_whitelist", "file", "-i", _url(path)]
    proc = _run(cmd, path, timeout_s)
    lines = _stderr_lines(proc.stderr, path)
    kinds = [m.group(1) for m in map(_STREAM.match, lines) if m]
    if not kinds and any(line.startswith("Input #") for line in lines):
        raise ReadError("no audio stream (the container holds no streams at all)", path)
    if not kinds:
        raise ReadError(_failure_message(lines, proc.returncode), path)
    if "Audio" not in kinds:
        raise ReadError(f"no audio stream (only {', '.join(sorted(set(kinds))).lower()})", path)
    for line in lines:
        m = _DURATION.search(line)
        if m:
            hours, minutes, seconds = m.groups()
            duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
            if duration > 0:
                return duration
    raise ReadError("unknown duration (neither the headers nor ffmpeg give one)", path)


def _run(cmd: list[str], path: str, timeout_s: float) -> subprocess.CompletedProcess:
    log.debug("running %s", subprocess.list2cmdline(cmd))
    try:
        # run() kills ffmpeg and reaps it when the timeout expires
        return subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise ReadError(f"ffmpeg timed out after {timeout_s:g} s", path) from None
    except OSError as exc:
        raise ReadError(f"cannot run ffmpeg {cmd[0]}: {exc.strerror or exc}", path) from None


def _stderr_lines(stderr: bytes, path: str) -> list[str]:
    text = stderr.decode("utf-8", errors="replace")
    url = _url(path)
    lines = []
    for raw in text.splitlines():
        line = _CONTEXT_PREFIX.sub("", raw.strip())
        for name in (url, os.path.abspath(path)):  # err.path already names the file
            line = line.replace(f"'{name}'", "the file").replace(name, "the file")
        if line:
            lines.append(line)
    return lines


def _relevant_line(lines: list[str]) -> str:
    """The ffmpeg stderr line that best says what went wrong, shortened to one line."""
    specific = [line for line in lines if not any(g in line.lower() for g in _GENERIC)]
    best = specific[-1] if specific else (lines[-1] if lines else "")
    if best.startswith("the file: "):  # ffmpeg 5 and older: "<url>: <strerror>"
        best = best[len("the file: "):]
    if best.lower().startswith("error opening input files: "):  # ffmpeg 6+
        best = best[len("error opening input files: "):]
    if best.lower().startswith("error opening input: "):
        best = best[len("error opening input: "):]
    if len(best) > _MAX_MESSAGE:
        best = best[: _MAX_MESSAGE - 3] + "..."
    return best


def _failure_message(lines: list[str], returncode: int) -> str:
    joined = "\n".join(lines).lower()
    if "matches no streams" in joined:
        return "no audio stream"
    if "no such file or directory" in joined:
        return "file not found"
    if "permission denied" in joined:
        return "permission denied"
    opened = any(line.startswith("Input #") for line in lines)
    cannot_open = "error opening input" in joined or any(
        line.startswith("the file: ") for line in lines
    )
    if cannot_open and not opened:
        # the reason ffmpeg gives (Invalid data, End of file, ...) is the last input line
        reason = _relevant_line(
            [line for line in lines if line.startswith(("the file: ", "Error opening input"))]
            or lines
        )
        return f"not an audio file (ffmpeg cannot read it: {reason})"
    why = _relevant_line(lines)
    return f"ffmpeg failed (exit status {returncode})" + (f": {why}" if why else "")


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Frames (n, channels) and rate from ffmpeg's streamed WAV of pcm_f32le (sizes unset)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("no WAV header")
    pos, rate, channels = 12, 0, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise ValueError("short fmt chunk")
            _tag, channels, rate, _rate_bytes, _align, bits = struct.unpack_from(
                "<HHIIHH", data, body
            )
            if channels < 1 or bits != 32 or rate <= 0:
                raise ValueError(f"unexpected format: {channels} channels, {bits} bits, {rate} Hz")
        elif chunk == b"data":
            if not rate:
                raise ValueError("data before fmt")
            payload = data[body:]  # the size field is a placeholder on a pipe
            frame = 4 * channels
            payload = payload[: len(payload) - len(payload) % frame]
            samples = np.frombuffer(payload, dtype="<f4").astype(np.float32)  # a writable copy
            return samples.reshape(-1, channels), rate
        pos = body + size + (size & 1)
    if rate:
        return np.zeros((0, channels), dtype=np.float32), rate  # header only: nothing decoded
    raise ValueError("no fmt chunk")


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample as musicnn's pipeline does (``librosa.resample``, ``soxr_hq``)."""
    import librosa  # imported here: it is slow to import and only the workers need it

    return librosa.resample(samples, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq")
