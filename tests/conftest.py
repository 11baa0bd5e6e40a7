"""Shared fixtures: one real clip in every audio format tagger reads, and hostile files.

Real audio comes from ``tests/data/`` (small copies, attribution in ``tests/data/ATTRIBUTION.md``)
so the tests run from a bare checkout; where a copy is missing, the same file is taken from
``shared/music`` beside the repository root, and a test that needs neither is skipped.
Everything derived (the formats, the hostile files) is made at session start, with the ffmpeg
that :func:`tagger.audio.decode.find_ffmpeg` returns (the imageio-ffmpeg one when none is on PATH),
into a pytest temporary directory: nothing generated is committed.

No test writes in the real home: the run has a HOME and XDG folders of its own from the
start (collection, session and module fixtures), and every test its own again
(:func:`own_home`); subprocesses inherit them (tests/helpers/home.py, proved by
tests/test_isolation.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import mutagen.flac
import numpy as np
import pytest
from helpers.audio import (
    FORMAT_SECONDS,
    FORMATS,
    MASTER_CLIP,
    encoding_ffmpeg,
    ffmpeg_run,
    real_clip,
)
from helpers.home import (
    SHARED_CACHES,
    SHARED_CACHES_VARIABLE,
    UNSET,
    home_environment,
    run_folder,
)

from tagger.library.catalogue import Catalogue

#: fixtures that load the real model: a test that asks for one is marked ``slow``
MODEL_FIXTURES = frozenset({"model", "classifier"})

_run_environment = pytest.MonkeyPatch()


def pytest_configure(config):
    """Before anything is collected or imported: the run's own home and shared caches."""
    base = run_folder()
    config.add_cleanup(_run_environment.undo)
    caches = os.environ.get(SHARED_CACHES_VARIABLE)
    if not caches:
        cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
        caches = cache.mkdir("shared-caches") if cache is not None else base
    for name, value in home_environment(base / "home").items():
        _run_environment.setenv(name, value)
    for name, folder in SHARED_CACHES.items():
        _run_environment.setenv(name, str(Path(caches) / folder))
    for name in UNSET:
        _run_environment.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def own_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test runs with a HOME and XDG folders of its own (an empty home: a new user),
    and so does every process it starts."""
    home = tmp_path_factory.mktemp("home")
    for name, value in home_environment(home).items():
        monkeypatch.setenv(name, value)
    return home


def pytest_collection_modifyitems(items):
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def master_wav(tmp_path_factory) -> Path:
    """40 s of real stereo music, 44.1 kHz 16-bit WAV, the source of every format file.

    The clip is mono, so the two channels are two different real passages of it (0-40 s on
    the left, 10-50 s on the right): decoding must downmix real stereo the way librosa does.
    """
    exe = encoding_ffmpeg("pcm_s16le")
    if exe is None:
        pytest.skip("no ffmpeg available")
    out = tmp_path_factory.mktemp("master") / "master.wav"
    graph = (
        "[0:a]asplit[a][b];"
        f"[a]atrim=0:{FORMAT_SECONDS},asetpts=PTS-STARTPTS[l];"
        f"[b]atrim=10:{10 + FORMAT_SECONDS},asetpts=PTS-STARTPTS[r];"
        "[l][r]amerge=inputs=2,aresample=44100[out]"
    )
    ffmpeg_run(
        exe, "-i", str(real_clip(MASTER_CLIP)), "-filter_complex", graph, "-map", "[out]",
        "-c:a", "pcm_s16le", str(out),
    )
    return out


@pytest.fixture(scope="session")
def format_files(master_wav, tmp_path_factory) -> dict[str, Path]:
    """The 40 s real clip in every format: {name: path}.

    Names: ``mp3`` (libmp3lame), ``flac``, ``ogg`` (Vorbis), ``opus``, ``aac`` (AAC in .m4a),
    ``alac`` (ALAC in .m4a), ``wav``, ``aiff``, ``wma`` (wmav2). A format whose encoder no
    available ffmpeg has is left out (tests for it skip).
    """
    folder = tmp_path_factory.mktemp("formats")
    files: dict[str, Path] = {}
    for name, (encoder, options, suffix) in FORMATS.items():
        exe = encoding_ffmpeg(encoder)
        if exe is None:
            continue
        out = folder / f"vibe_ace_40s_{name}{suffix}"
        ffmpeg_run(exe, "-i", str(master_wav), "-c:a", encoder, *options, str(out))
        files[name] = out
    return files


@pytest.fixture(scope="session")
def hostile_files(format_files, tmp_path_factory) -> dict[str, Path]:
    """Files a music library really contains that must not decode, or must decode anyway.

    ``truncated_mp3``: the first 3 KB of a real MP3 (its header promises 40 s);
    ``truncated_mid_mp3``: a real MP3 cut at 40 % of its bytes (decodes what is there);
    ``empty_flac``: 0 bytes; ``text_as_mp3``: a text file named .mp3;
    ``short_2s``: a real 2 s clip (Vorbis); ``silent_wav``: 40 s of digital silence in a real
    WAV container; ``png_as_ogg``: a PNG image named .ogg; ``random_as_ogg``: random bytes
    named .ogg, and ``random_as_flac`` named .flac; ``video_only_m4a``: an MP4 holding only
    a video stream;
    ``mp3_as_flac``: a real MP3 named .flac (must decode); ``truncated_flac``: a real FLAC
    with cover art, cut inside the picture (a download that stopped in the tags).
    Entries whose encoder is unavailable are left out.
    """
    folder = tmp_path_factory.mktemp("hostile")
    files: dict[str, Path] = {}
    if "mp3" in format_files:
        mp3 = format_files["mp3"].read_bytes()
        files["truncated_mp3"] = folder / "truncated.mp3"
        files["truncated_mp3"].write_bytes(mp3[:3000])
        files["truncated_mid_mp3"] = folder / "truncated_mid.mp3"
        files["truncated_mid_mp3"].write_bytes(mp3[: int(len(mp3) * 0.4)])
        files["mp3_as_flac"] = folder / "really_an_mp3.flac"
        files["mp3_as_flac"].write_bytes(mp3)
    if "flac" in format_files:
        with_cover = folder / "with_cover.flac"
        with_cover.write_bytes(format_files["flac"].read_bytes())
        flac = mutagen.flac.FLAC(with_cover)
        cover = mutagen.flac.Picture()
        cover.type, cover.mime = 3, "image/png"  # front cover
        cover.data = np.random.default_rng(7).bytes(60_000)
        flac.add_picture(cover)
        flac.save()
        files["truncated_flac"] = folder / "truncated.flac"
        files["truncated_flac"].write_bytes(with_cover.read_bytes()[:20_000])
        with_cover.unlink()
    files["empty_flac"] = folder / "empty.flac"
    files["empty_flac"].write_bytes(b"")
    files["text_as_mp3"] = folder / "notes.mp3"
    files["text_as_mp3"].write_text(
        "Track list\n1. Vibe Ace\n2. Let's Go Fishin'\nThis is a text file, not audio.\n",
        encoding="utf-8",
    )
    files["random_as_ogg"] = folder / "random.ogg"
    files["random_as_ogg"].write_bytes(np.random.default_rng(1234).bytes(64 * 1024))
    files["random_as_flac"] = folder / "random.flac"
    files["random_as_flac"].write_bytes(np.random.default_rng(4321).bytes(100 * 1024))

    if exe := encoding_ffmpeg("libvorbis"):
        files["short_2s"] = folder / "short_2s.ogg"
        ffmpeg_run(
            exe, "-ss", "20", "-t", "2", "-i", str(real_clip(MASTER_CLIP)),
            "-c:a", "libvorbis", str(files["short_2s"]),
        )
    if exe := encoding_ffmpeg("pcm_s16le"):
        files["silent_wav"] = folder / "silence.wav"
        ffmpeg_run(
            exe, "-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-t", "40",
            "-c:a", "pcm_s16le", str(files["silent_wav"]),
        )
    if exe := encoding_ffmpeg("png"):
        files["png_as_ogg"] = folder / "cover.ogg"
        ffmpeg_run(
            exe, "-f", "lavfi", "-i", "color=c=red:s=64x64", "-frames:v", "1",
            "-c:v", "png", "-f", "image2", str(files["png_as_ogg"]),
        )
    if "aac" in format_files:  # an M4A container with no stream in it (a cut past the end)
        files["empty_m4a"] = folder / "nothing_inside.m4a"
        ffmpeg_run(encoding_ffmpeg("aac"), "-ss", "100", "-i", str(format_files["aac"]),
                   "-c:a", "aac", str(files["empty_m4a"]))
    if exe := encoding_ffmpeg("mpeg4"):
        files["video_only_m4a"] = folder / "video_only.m4a"
        ffmpeg_run(
            exe, "-f", "lavfi", "-i", "testsrc=s=64x64:d=2", "-c:v", "mpeg4",
            "-f", "mp4", str(files["video_only_m4a"]),
        )
    return files


# the catalogue tests' database: a fresh SQLite file per test
@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "state" / "catalogue.sqlite"


@pytest.fixture
def url(db_path) -> str:
    return f"sqlite:///{db_path}"


@pytest.fixture
def cat(url):
    catalogue = Catalogue(url)
    yield catalogue
    catalogue.close()
