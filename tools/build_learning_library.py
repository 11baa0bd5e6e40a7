"""Build a *library* (not a labelled folder) to try ``tagger learn`` on: real game music with
artist and album tags, and genres on part of it, as a user's library would have them.

    python tools/build_learning_library.py OUT [--untagged-share 0.2] [--no-ufoai]

Copies the albums of tools/build_game_music_dataset.py (``--by-album --extra``: every album
installed) and the shared/music clips into ``OUT/<album>/`` (real copies: the tags are
edited, the originals never), then sets with mutagen:

* ``artist``: the composer. Kept where the file names one (Wesnoth, Nexuiz, Singularity,
  most of HyperRogue); else from the file name for HyperRogue (``hr-<composer>-...``); else
  one name per album (grouping by artist then keeps that album together).
* ``album``: the game.
* ``genre``: the album's genre in the user's own spelling (Wesnoth keeps its own
  ``Romantic Classical``: map it with ``--map "Romantic Classical=classical"``) on all but
  ``--untagged-share`` of each album's tracks (every n-th track, deterministic); UFO: Alien
  Invasion (several composers, several styles) gets no genre at all: the rest to retag.

Nothing is written outside OUT.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import build_game_music_dataset as games
import mutagen

#: album -> (genre as the user writes it or None: leave the file's own / untagged, composer)
ALBUMS = {
    "wesnoth": (None, "Wesnoth composers"),  # files carry artist and "Romantic Classical"
    "warzone2100": ("Electronic", "Warzone 2100 team"),
    "nexuiz": ("electronica", "Nexuiz team"),
    "singularity": ("Ambient", "Maxstack"),
    "hyperrogue": ("ambient", None),  # composer in the file name
    "ufoai": (None, "UFO:AI composers"),
    "shared": (None, None),
}
SHARED_GENRES = {  # shared/music clips with their artist (from their .txt credits)
    "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg":
        ("Classical", "Johannes Brahms", "Hungarian Dances"),
    "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg":
        ("Classical", "Kevin MacLeod", "Classical Sampler"),
    "Kevin_MacLeod_-_Vibe_Ace.ogg": ("Jazz", "Kevin MacLeod", "Jazz Sampler"),
    "Karissa_Hobbs_-_Lets_Go_Fishin.ogg": ("Country", "Karissa Hobbs", "Lets Go Fishin"),
    "sorohanro_-_solo-trumpet-06.ogg": ("Jazz", "sorohanro", "Solo Trumpet"),
}
GAME_TITLES = {"wesnoth": "The Battle for Wesnoth OST", "warzone2100": "Warzone 2100",
               "nexuiz": "Nexuiz", "singularity": "Endgame: Singularity",
               "hyperrogue": "HyperRogue", "ufoai": "UFO: Alien Invasion"}


def tag(path: Path, *, artist: str | None, album: str | None, genre: str | None,
        keep_genre: bool) -> None:
    audio = mutagen.File(path, easy=True)
    if audio is None:
        return
    if audio.tags is None:
        audio.add_tags()
    if artist and not audio.tags.get("artist"):
        audio.tags["artist"] = [artist]
    if album:
        audio.tags["album"] = [album]
    if genre:
        audio.tags["genre"] = [genre]
    elif not keep_genre and "genre" in audio.tags:
        del audio.tags["genre"]
    audio.save()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--untagged-share", type=float, default=0.2)
    parser.add_argument("--no-ufoai", action="store_true")
    args = parser.parse_args(argv)
    out = args.out.expanduser().absolute()
    if games.REPO in out.parents or out == games.REPO:
        parser.error("write the library outside the repository")
    every = round(1 / args.untagged_share) if args.untagged_share > 0 else 0
    with tempfile.TemporaryDirectory() as tmp:
        games.main([tmp, "--by-album", "--extra", "--min-seconds", "30"])
        for folder in sorted(Path(tmp).iterdir()):
            album = folder.name
            if album == "ufoai" and args.no_ufoai:
                continue
            genre, composer = ALBUMS.get(album, (None, None))
            labelled = untagged = 0
            for i, source in enumerate(sorted(folder.iterdir())):
                name = source.name.split("--", 1)[-1]
                target = out / album / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source.resolve(), target)
                target.chmod(0o644)
                artist, title, track_genre = composer, GAME_TITLES.get(album), genre
                if album == "hyperrogue":
                    artist = name.split("-")[1].title() if name.count("-") >= 2 else None
                if album == "shared":
                    track_genre, artist, title = SHARED_GENRES.get(name, (None, None, None))
                bare = album == "ufoai" or (every and i % every == every - 1)
                tag(target, artist=artist, album=title, genre=None if bare else track_genre,
                    keep_genre=not bare and album == "wesnoth")
                untagged += bare
                labelled += not bare
            print(f"{album}: {labelled} with a genre, {untagged} without")
        for name, (genre, artist, title) in SHARED_GENRES.items():
            source = games.SHARED_MUSIC / name
            target = out / "shared" / name
            if source.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                target.chmod(0o644)
                tag(target, artist=artist, album=title, genre=genre, keep_genre=False)
                print(f"shared: {name} ({genre})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
