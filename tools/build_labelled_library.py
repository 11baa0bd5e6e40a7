"""Build a music *library* with genres on part of it, from real, free game-music albums.

    python tools/build_labelled_library.py OUT [--labelled 0.5] [--seed 0] [--convert 12]

The proof of issue #13 (docs/training.md, "Learning from your library"): a library like a real
user's, where some files carry the genre the user gave them and the rest carry none. Writes
``OUT/<artist>/<album>/<title>.<ext>``: copies of the albums Debian installs (the tracks of
``.pk3`` archives extracted as they are) and of the labelled clips of ``shared/music`` beside
the repository, tagged with mutagen: artist (the composer), album, title, and, on a seeded
share of each album's tracks, the album's style as the genre (spelled the way people do:
``Classical``, ``Electronic/Techno``, ``ambient``). The other tracks have no genre at all.
``--convert N`` re-encodes N of the copies to MP3, FLAC and M4A (with ffmpeg) so that every tag
format takes part. Nothing is written outside OUT; the originals are only read.

The albums (``apt-get install wesnoth-1.16-music warzone2100-music nexuiz-music
singularity-music hyperrogue-music``; missing ones are skipped):

===========  ===========  ============================================================
album        genre        composers
===========  ===========  ============================================================
wesnoth      classical    eleven (the tracks' own ARTIST tags)
warzone2100  electronic   Martin Severn and others (the albums' album.json)
nexuiz       electronic   several (the tracks' own ARTIST tags)
singularity  ambient      Maxstack
hyperrogue   ambient      NeonCorridor, Will Savino, Shawn Parrotte (file names)
===========  ===========  ============================================================
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import mutagen

REPO = Path(__file__).resolve().parent.parent
SHARED_MUSIC = REPO.parent / "shared" / "music"
MIN_SECONDS = 30.0

# how people spell each style in their tags: every labelled track gets one of these
SPELLINGS = {
    "classical": ["Classical", "classical", "Classical; Orchestral"],
    "electronic": ["Electronic", "Electronic/Techno", "electronic"],
    "ambient": ["Ambient", "ambient", "Ambient, Electronic"],
    "jazz": ["Jazz"],
    "country": ["Country"],
}
SHARED = {  # shared/music clip -> (genre, artist, album)
    "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg":
        ("classical", "Johannes Brahms", "Hungarian Dances"),
    "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg":
        ("classical", "Kevin MacLeod", "Classical Sampler"),
    "Kevin_MacLeod_-_Vibe_Ace.ogg": ("jazz", "Kevin MacLeod", "Jazz Sampler"),
    "Karissa_Hobbs_-_Lets_Go_Fishin.ogg": ("country", "Karissa Hobbs", "Lets Go Fishin"),
}
HYPERROGUE_COMPOSERS = {"hr-domina": "Shawn Parrotte", "hr-savino": "Will Savino",
                        "hr3": "NeonCorridor"}


def _duration(path: str) -> float:
    info = mutagen.File(path)
    return float(info.info.length) if info is not None else 0.0


def _tags(path: str) -> dict[str, str]:
    info = mutagen.File(path)
    tags = info.tags if info is not None and info.tags is not None else {}
    return {k.lower(): v[0] for k, v in tags.items() if isinstance(v, list) and v}


def _sources(scratch: Path) -> list[tuple[str, str, str, str, str]]:
    """(file, genre, artist, album, title) of every track of every installed album."""
    found = []
    for path in sorted(glob.glob("/usr/share/games/wesnoth/1.16/data/core/music/*.ogg")):
        t = _tags(path)
        found.append((path, "classical", t.get("artist", "Wesnoth composers"),
                      t.get("album", "The Battle for Wesnoth OST"), Path(path).stem))
    for meta in sorted(glob.glob("/usr/share/games/warzone2100/music/albums/*/album.json")):
        album = json.loads(Path(meta).read_text(encoding="utf-8"))
        for track in album.get("tracks", []):
            path = str(Path(meta).parent / track["filename"])
            if "_enhanced" in path or not os.path.exists(path):
                continue  # the remastered duplicates
            found.append((path, "electronic", track.get("author") or album["author"],
                          album["title"], track.get("title") or Path(path).stem))
    pk3 = "/usr/share/games/nexuiz/data/music.pk3"
    if os.path.exists(pk3):
        with zipfile.ZipFile(pk3) as archive:
            for member in archive.namelist():
                if member.endswith(".ogg"):
                    path = archive.extract(member, scratch)
                    t = _tags(path)
                    found.append((path, "electronic", t.get("artist", "Nexuiz composers"),
                                  "Nexuiz", t.get("title", Path(member).stem)))
    for path in sorted(glob.glob("/usr/share/games/singularity/music/**/*.ogg", recursive=True)):
        t = _tags(path)
        found.append((path, "ambient", t.get("artist", "Maxstack"),
                      t.get("album", "Endgame: Singularity"), t.get("title", Path(path).stem)))
    for path in sorted(glob.glob("/usr/share/hyperrogue/music/*.ogg")):
        prefix = Path(path).stem.rsplit("-", 1)[0]
        found.append((path, "ambient", HYPERROGUE_COMPOSERS.get(prefix, "HyperRogue composers"),
                      "HyperRogue", Path(path).stem))
    for name, (genre, artist, album) in SHARED.items():
        if (SHARED_MUSIC / name).exists():
            found.append((str(SHARED_MUSIC / name), genre, artist, album, Path(name).stem))
    return [f for f in found if _duration(f[0]) >= MIN_SECONDS]


def _safe(name: str) -> str:
    return re.sub(r"[^\w .,()'&-]+", "_", name).strip(" .") or "_"


def _share(key: str, seed: int) -> float:
    """A stable pseudo-random number in [0, 1) for a track: the same library every time."""
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16) / 2**32


def _convert(path: Path, ext: str) -> Path:
    import imageio_ffmpeg

    target = path.with_suffix(ext)
    codec = {".mp3": ["-c:a", "libmp3lame", "-q:a", "4"], ".flac": ["-c:a", "flac"],
             ".m4a": ["-c:a", "aac", "-b:a", "128k"]}[ext]
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "fatal", "-y", "-i", str(path),
                    "-vn", "-map_metadata", "-1", *codec, str(target)], check=True)
    path.unlink()
    return target


def _write_tags(path: Path, artist: str, album: str, title: str, genre: str | None) -> None:
    audio = mutagen.File(path, easy=True)
    if audio.tags is None:
        audio.add_tags()
    for key in list(audio.tags.keys()):
        if key.lower() in ("genre", "artist", "album", "title"):
            del audio.tags[key]
    audio["artist"], audio["album"], audio["title"] = artist, album, title
    if genre:
        audio["genre"] = genre
    audio.save()


def build(out: Path, labelled: float, seed: int, convert: int) -> dict[str, int]:
    counts = {"tracks": 0, "labelled": 0}
    with tempfile.TemporaryDirectory() as scratch:
        sources = _sources(Path(scratch))
        if not sources:
            sys.exit("no albums installed (see the docstring)")
        # the tracks to re-encode: spread over the albums, the same every time
        order = sorted(range(len(sources)), key=lambda i: _share(sources[i][0] + ":fmt", seed))
        formats = {i: (".mp3", ".flac", ".m4a")[n % 3] for n, i in enumerate(order[:convert])}
        for i, (source, genre, artist, album, title) in enumerate(sources):
            folder = out / _safe(artist) / _safe(album)
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / (_safe(title) + Path(source).suffix)
            shutil.copyfile(source, target)
            if i in formats:
                target = _convert(target, formats[i])
            spelled = None
            if _share(source, seed) < labelled:
                spellings = SPELLINGS[genre]
                spelled = spellings[int(_share(source + ":spell", seed) * len(spellings))]
                counts["labelled"] += 1
            _write_tags(target, artist, album, title, spelled)
            counts["tracks"] += 1
            counts[f"{genre} {'labelled' if spelled else 'untagged'}"] = counts.get(
                f"{genre} {'labelled' if spelled else 'untagged'}", 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--labelled", type=float, default=0.5,
                        help="share of each album's tracks that get a genre (default 0.5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--convert", type=int, default=12,
                        help="re-encode this many tracks to MP3/FLAC/M4A (default 12)")
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"{args.out} is not empty")
    counts = build(args.out, args.labelled, args.seed, args.convert)
    for key, value in sorted(counts.items()):
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
