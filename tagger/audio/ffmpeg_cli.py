"""The ffmpeg binary, for what FFmpeg's libraries in process (:mod:`tagger.audio.decode`)
cannot decode: a codec that PyAV's build lacks, or ``decode_window(backend="ffmpeg")``.

One ``ffmpeg`` run per file with an input-side seek, its float32 WAV read from a pipe, its
stderr mapped onto the stable ``ReadError`` phrases of :mod:`tagger.audio.decode`; the
duration from the headers (mutagen), else from ffmpeg's own description of the input.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import struct
import subprocess

import numpy as np

from tagger.audio.containers import content_format
from tagger.errors import ConfigError, ReadError

log = logging.getLogger(__name__)

#: The longest FFmpeg message kept in a one-line reason (either way of decoding).
MAX_MESSAGE = 160
_WINDOW_MARGIN_S = 1.0
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


def decode_with_binary(path: str, window_s: float, exe: str,
                       timeout_s: float) -> tuple[np.ndarray, int, float, float]:
    """Float32 frames ``(samples, channels)``, their rate, the window's offset and the
    duration, by an ffmpeg run (``path`` already checked by the caller; the caller downmixes,
    as it does what PyAV decodes)."""
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
        "-i", file_url(path),
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
        raise ReadError(_failure_message(stderr, proc.returncode, path), path)
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
    return samples[: int(round(window_s * source_rate))], source_rate, offset, duration


def file_url(path: str) -> str:
    """The absolute ``file:`` URL FFmpeg is given for ``path``, by either way of decoding."""
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
    cmd = [exe, "-nostdin", "-hide_banner", "-protocol_whitelist", "file", "-i", file_url(path)]
    proc = _run(cmd, path, timeout_s)
    lines = _stderr_lines(proc.stderr, path)
    kinds = [m.group(1) for m in map(_STREAM.match, lines) if m]
    if not kinds and any(line.startswith("Input #") for line in lines):
        raise ReadError("no audio stream (the container holds no streams at all)", path)
    if not kinds:
        raise ReadError(_failure_message(lines, proc.returncode, path), path)
    if "Audio" not in kinds:
        raise ReadError(f"no audio stream (only {', '.join(sorted(set(kinds))).lower()})", path)
    for line in lines:
        m = _DURATION.search(line)
        if m:
            hours, minutes, seconds = m.groups()
            duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
            if duration > 0:
                return duration
    raise ReadError(no_duration_message(content_format(path),
                                          "neither the headers nor ffmpeg give one"), path)


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
    url = file_url(path)
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
    if len(best) > MAX_MESSAGE:
        best = best[: MAX_MESSAGE - 3] + "..."
    return best


def cannot_open_message(kind: str | None, reason: str) -> str:
    """Why FFmpeg cannot open a file (``reason``: its words), in the stable phrases, given the
    container its first bytes name (:func:`~tagger.audio.containers.content_format`). A file
    of a known container is damaged ("truncated or undecodable": a FLAC cut inside its cover
    art, say); anything else is "not an audio file"."""
    if kind is None:
        return f"not an audio file (ffmpeg cannot read it: {reason})"
    return (f"truncated or undecodable (a {kind.upper()} file by its first bytes, but ffmpeg "
            f"cannot read it: {reason})")


def no_duration_message(kind: str | None, reason: str) -> str:
    """Why a file has no duration, in the stable phrases, given the container its first bytes
    name: "unknown duration" for a known one, else "not an audio file" (FFmpeg's probe may
    take random bytes for the format their name says, and then finds no duration in them)."""
    if kind is None:
        return "not an audio file (no known audio header in its first bytes, and no duration)"
    return f"unknown duration ({reason})"


def _failure_message(lines: list[str], returncode: int, path: str) -> str:
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
        return cannot_open_message(content_format(path), reason)
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
