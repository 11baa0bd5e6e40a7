"""Build a labelled genre dataset (GTZAN layout) from real, free game-music albums.

    python tools/build_game_music_dataset.py OUT [--by-album] [--min-seconds 30]

Writes ``OUT/<genre>/<album>--<track>.<ext>``: symbolic links to the albums Debian installs
(nothing is decoded or copied), and the tracks of albums packed in ``.pk3`` zip archives
extracted as they are (Ogg Vorbis, no re-encoding). Plus the labelled clips of
``shared/music`` beside the repository, when present. ``--by-album`` labels by album instead
(``OUT/<album>/...``) to look at each album on its own, e.g. with ``tagger eval --model
musicnn``. Nothing is written outside OUT.

The albums (``apt-get install wesnoth-1.16-music warzone2100-music nexuiz-music
singularity-music hyperrogue-music ufoai-music``; missing ones are skipped):

==================  ===========  ==========================================================
album               genre        what it is
==================  ===========  ==========================================================
wesnoth             classical    Battle for Wesnoth: orchestral fantasy score (GPL-2+)
warzone2100         electronic   Warzone 2100: electronic / ambient-techno score (GPL-2+)
nexuiz              electronic   Nexuiz: electronic / industrial / techno (GPL-2+)
==================  ===========  ==========================================================

and, from ``--extra`` (off by default; labels are not one genre per album): singularity,
hyperrogue, ufoai, used by ``--by-album``. Stingers shorter than ``--min-seconds`` (victory,
defeat jingles) and the remastered duplicates (``*_enhanced``) are left out. The genre of a
track is the genre of its album: a coarse label (a Wesnoth folk ballad counts as classical).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import zipfile
from pathlib import Path

import mutagen

REPO = Path(__file__).resolve().parent.parent
SHARED_MUSIC = REPO.parent / "shared" / "music"

# album -> (genre, kind, location, member prefix for pk3)
ALBUMS = {
    "wesnoth": ("classical", "glob", "/usr/share/games/wesnoth/1.16/data/core/music/*.ogg"),
    "warzone2100": ("electronic", "glob", "/usr/share/games/warzone2100/music/**/*.opus"),
    "nexuiz": ("electronic", "pk3", "/usr/share/games/nexuiz/data/music.pk3"),
}
EXTRA_ALBUMS = {
    "singularity": ("ambient", "glob", "/usr/share/games/singularity/music/**/*.ogg"),
    "hyperrogue": ("ambient", "glob", "/usr/share/hyperrogue/music/*.ogg"),
    "ufoai": ("soundtrack", "pk3", "/usr/share/games/ufoai/base/0music.pk3"),
}
# shared/music clips: file -> genre (the album excerpts there duplicate album tracks: left out)
SHARED = {
    "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg": "classical",
    "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg": "classical",
}
AUDIO = (".ogg", ".opus", ".mp3", ".flac", ".wav")


def duration(path: str) -> float:
    try:
        info = mutagen.File(path)
        return float(info.info.length) if info is not None else 0.0
    except Exception:
        return 0.0


def skip(name: str) -> bool:
    stem = Path(name).stem
    return stem.endswith("_enhanced")


def add_album(out: Path, album: str, label: str, kind: str, location: str,
              min_seconds: float) -> int:
    folder = out / label
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    if kind == "glob":
        for source in sorted(glob.glob(location, recursive=True)):
            if skip(source) or duration(source) < min_seconds:
                continue
            target = folder / f"{album}--{Path(source).name}"
            if not target.exists():
                os.symlink(source, target)
            count += 1
        return count
    with zipfile.ZipFile(location) as archive:
        for member in sorted(archive.namelist()):
            if not member.lower().endswith(AUDIO) or skip(member):
                continue
            target = folder / f"{album}--{Path(member).name}"
            if not target.exists():
                partial = target.with_name(target.name + ".part")
                with archive.open(member) as src, open(partial, "wb") as dst:
                    while block := src.read(1 << 20):
                        dst.write(block)
                if duration(str(partial)) < min_seconds:
                    partial.unlink()
                    continue
                partial.rename(target)
            count += 1
    return count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to create (outside the repository)")
    parser.add_argument("--by-album", action="store_true", help="one folder per album")
    parser.add_argument("--extra", action="store_true", help="also the mixed-genre albums")
    parser.add_argument("--no-shared", action="store_true", help="leave out shared/music")
    parser.add_argument("--min-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    out = args.out.expanduser().absolute()
    if REPO in out.parents or out == REPO:
        parser.error("write the dataset outside the repository")
    albums = dict(ALBUMS)
    if args.extra or args.by_album:
        albums.update(EXTRA_ALBUMS)
    for album, (genre, kind, location) in albums.items():
        if not glob.glob(location, recursive=True):
            print(f"{album}: not installed ({location}), skipped", file=sys.stderr)
            continue
        label = album if args.by_album else genre
        n = add_album(out, album, label, kind, location, args.min_seconds)
        print(f"{album}: {n} tracks -> {label}")
    if not args.no_shared and SHARED_MUSIC.is_dir():
        for name, genre in SHARED.items():
            source = SHARED_MUSIC / name
            if source.is_file():
                label = "shared" if args.by_album else genre
                (out / label).mkdir(parents=True, exist_ok=True)
                target = out / label / f"shared--{name}"
                if not target.exists():
                    os.symlink(source, target)
                print(f"shared/music: {name} -> {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
