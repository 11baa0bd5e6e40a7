"""Real clips and ffmpeg for the tests: where the clips are, which ffmpeg encodes what.

Real audio comes from ``tests/data/`` (small copies, attribution in ``tests/data/ATTRIBUTION.md``)
so the tests run from a bare checkout; where a copy is missing, the same file is taken from
``shared/music`` beside the repository root, and a test that needs neither is skipped.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tagger.audio.decode import find_ffmpeg
from tagger.errors import ConfigError

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
SHARED_MUSIC = Path(__file__).resolve().parents[3] / "shared" / "music"

#: The clip every format is made from: jazz, 61 s, Vorbis 22.05 kHz mono, CC BY 3.0.
MASTER_CLIP = "Kevin_MacLeod_-_Vibe_Ace.ogg"
#: A real track shorter than the 30 s window: 5.3 s, CC BY 3.0.
SHORT_CLIP = "sorohanro_-_solo-trumpet-06.ogg"

#: Length in seconds of the format files (longer than the 30 s window, short to encode).
FORMAT_SECONDS = 40.0

# name: (encoder, extra output options, file suffix). Format names are the fixture's keys.
FORMATS = {
    "mp3": ("libmp3lame", ["-b:a", "192k"], ".mp3"),
    "flac": ("flac", [], ".flac"),
    "ogg": ("libvorbis", ["-q:a", "5"], ".ogg"),
    "opus": ("libopus", ["-b:a", "128k"], ".opus"),
    "aac": ("aac", ["-b:a", "192k"], ".m4a"),
    "alac": ("alac", [], ".m4a"),
    "wav": ("pcm_s16le", [], ".wav"),
    "aiff": ("pcm_s16be", [], ".aiff"),
    "wma": ("wmav2", ["-b:a", "192k"], ".wma"),
}
LOSSLESS = ("flac", "alac", "wav", "aiff")


def real_clip(name: str) -> Path:
    """A real audio file by name: the tests/data copy, else shared/music, else skip."""
    for folder in (DATA_DIR, SHARED_MUSIC):
        if (folder / name).is_file():
            return folder / name
    pytest.skip(f"real clip {name} is in neither {DATA_DIR} nor {SHARED_MUSIC}")


def bundled_ffmpeg() -> str | None:
    """The ffmpeg shipped in the imageio-ffmpeg wheel, the only one on a fresh CI machine."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        return None


def ffmpeg_binaries() -> dict[str, str]:
    """Distinct ffmpeg binaries to decode with: ``auto``, and ``bundled`` where that differs."""
    found: dict[str, str] = {}
    try:
        found["auto"] = find_ffmpeg()
    except ConfigError:
        pass
    bundled = bundled_ffmpeg()
    if bundled and os.path.realpath(bundled) not in map(os.path.realpath, found.values()):
        found["bundled"] = bundled
    return found


@functools.cache
def _encoders(exe: str) -> frozenset[str]:
    out = subprocess.run(
        [exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60
    ).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "AVS":
            names.add(parts[1])
    return frozenset(names)


def encoding_ffmpeg(encoder: str) -> str | None:
    """First ffmpeg having ``encoder``: find_ffmpeg()'s, then the bundled one, then PATH's."""
    candidates = []
    try:
        candidates.append(find_ffmpeg())
    except ConfigError:
        pass
    candidates += [bundled_ffmpeg(), shutil.which("ffmpeg")]
    for exe in candidates:
        if exe and encoder in _encoders(exe):
            return exe
    return None


def ffmpeg_run(exe: str, *args: str) -> None:
    """Run ffmpeg quietly, failing the test setup with ffmpeg's message on error."""
    cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
