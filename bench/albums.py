"""One genre per album (issue #25): a library of whole game-soundtrack albums scanned with
``tags.scope = "track"`` and with ``tags.scope = "album"``.

    python bench/albums.py [--work DIR] [--albums 2] [--tracks 10] [--workers 2]
                           [--min-confidence 0.35 ...] [--write] [--build-only]

The library is built from Debian's game-music packages (wesnoth-1.16-music,
warzone2100-music): one folder per album, full-length tracks converted with ffmpeg into a mix
of formats (MP3, FLAC, M4A, Ogg Vorbis, Opus, in turn), every tag dropped and then set as
Picard sets them (album, album artist, artist; no genre: the user never tagged them),
taken from the packages' own metadata (Wesnoth's Vorbis comments, Warzone 2100's album.json).
Tracks shorter than 60 s (the victory/defeat stingers) are left out; the first ``--tracks``
of each album by file name are taken.

Labels, one per album (the truth the accuracy is measured against), chosen before any run:

- The Battle for Wesnoth OST: **classical**. Its own tags say "Romantic Classical" (the
  Wesnoth Project's label for its orchestral score); classical is the default genre map's
  genre for it (docs/genres.md).
- Warzone 2100 (the Aftermath, Legacy and Original soundtracks): **electronic**. Synthesizer
  scores; the excerpt of track 17 in shared/music is labelled electronic in docs/genres.md.

Each scope scans its own copy of the library into its own catalogue (default policy,
``tags.write = "if_empty"``; ``min_confidence`` 0.35 or each of ``--min-confidence``), and
the bench prints: albums whose
tracks hold one genre (track scope: before; album scope: after), tracks tagged, accuracy
against the labels (tracks whose genre is the label's, of all tracks), the album decisions,
and the time the album pass adds. ``--write`` replaces this script's section of
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from results import write_section

WESNOTH = Path("/usr/share/games/wesnoth/1.16/data/core/music")
WARZONE = Path("/usr/share/games/warzone2100/music/albums")
# (folder name, label, where the tracks are)
ALBUMS = [("The Battle for Wesnoth OST", "classical", WESNOTH),
          ("Warzone 2100 - Aftermath Soundtrack", "electronic", WARZONE / "aftermath_soundtrack"),
          ("Warzone 2100 - Legacy Soundtrack", "electronic", WARZONE / "legacy_soundtrack"),
          ("Warzone 2100 - Original Soundtrack", "electronic", WARZONE / "original_soundtrack")]
FORMATS = [(".mp3", ["-c:a", "libmp3lame", "-b:a", "192k"]), (".flac", ["-c:a", "flac"]),
           (".m4a", ["-c:a", "aac", "-b:a", "192k"]),
           (".ogg", ["-c:a", "libvorbis", "-q:a", "5"]),
           (".opus", ["-c:a", "libopus", "-b:a", "128k"])]
MIN_SECONDS = 60.0
FFMPEG = "/usr/bin/ffmpeg"


def picard_tags(path: Path, **values: str | None) -> None:
    """Set ``album``, ``album_artist`` and ``artist`` in the fields Picard uses (mutagen's
    easy keys: ID3 TALB/TPE2/TPE1, MP4 ©alb/aART/©ART, Vorbis ALBUM/ALBUMARTIST/ARTIST)."""
    import mutagen

    audio = mutagen.File(path, easy=True)
    if audio.tags is None:
        audio.add_tags()
    for key, value in values.items():
        if value:
            audio[key.replace("_", "")] = [value]
    audio.save()


def album_tracks(source: Path, count: int) -> list[tuple[Path, dict]]:
    """The first ``count`` tracks of an album (by file name, at least a minute long) with the
    tags Picard would give them: album, album artist, artist."""
    import mutagen

    meta = {}
    if (source / "album.json").is_file():  # Warzone 2100: the album's own description
        album = json.loads((source / "album.json").read_text(encoding="utf-8"))
        for track in album["tracks"]:
            meta[track["filename"]] = dict(album=album["title"], album_artist=album["author"],
                                           artist=track.get("author") or album["author"])
    found = []
    for path in sorted(source.iterdir()):
        if path.suffix not in (".ogg", ".opus"):
            continue
        audio = mutagen.File(path)
        if audio is None or audio.info.length < MIN_SECONDS:
            continue
        tags = meta.get(path.name)
        if tags is None:  # Wesnoth: the files' own Vorbis comments
            own = audio.tags or {}
            tags = dict(album=own.get("album", [None])[0],
                        album_artist=own.get("albumartist", [None])[0],
                        artist=own.get("artist", [None])[0])
        found.append((path, tags))
    return found[:count]


def build_library(root: Path, albums: int, tracks: int) -> dict[str, str]:
    """The library under ``root``: ``{album folder: label}``."""
    jobs, labels, turn = [], {}, 0
    for name, label, source in ALBUMS[:albums]:
        picked = album_tracks(source, tracks)
        if not picked:
            sys.exit(f"no tracks in {source}: apt-get install wesnoth-1.16-music "
                     "warzone2100-music")
        labels[name] = label
        for number, (path, tags) in enumerate(picked, start=1):
            suffix, codec = FORMATS[turn % len(FORMATS)]
            turn += 1
            jobs.append((path, root / name / f"{number:02d} {path.stem}{suffix}", codec, tags))
    for _, out, _, _ in jobs:
        out.parent.mkdir(parents=True, exist_ok=True)

    def convert(job) -> None:
        src, out, codec, tags = job
        subprocess.run([FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i",
                        str(src), "-map_metadata", "-1", "-vn", *codec, str(out)], check=True)
        picard_tags(out, **tags)

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(convert, jobs))
    hour_ago = time.time() - 3600  # a library at rest, as a user's is
    for _, out, _, _ in jobs:
        os.utime(out, (hour_ago, hour_ago))
    return labels


def scan_copy(library: Path, work: Path, scope: str, workers: int,
              min_confidence: float) -> dict:
    """Scan a copy of the library in ``scope`` (under ``work``, a folder of its own: the
    process keeps its first state dir's temp folder for its worker sockets): the summary,
    each file's genres, the album decisions."""
    from tagger.config import Config, LibraryConfig, TagsConfig
    from tagger.library import tags
    from tagger.library.catalogue import open_catalogue
    from tagger.service.scan import scan

    root = work / "Music"
    shutil.copytree(library, root)
    config = Config(state_dir=str(work / "state"),
                    library=LibraryConfig(roots=(str(root),)),
                    tags=TagsConfig(scope=scope, min_confidence=min_confidence))
    started = time.perf_counter()
    with open_catalogue(config) as catalogue:
        summary = scan([str(root)], config, catalogue, workers=workers)
        decisions = catalogue.albums()
    seconds = time.perf_counter() - started
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and tags.supported(path):
            files[str(path.relative_to(root))] = [g.lower() for g in tags.read_genres(path)]
    return dict(summary=summary, seconds=seconds, files=files, decisions=decisions)


def figures(run: dict, labels: dict[str, str]) -> dict:
    per_album: dict[str, Counter] = {}
    correct = tagged = 0
    for name, genres in run["files"].items():
        album = name.split("/", 1)[0]
        per_album.setdefault(album, Counter())[tuple(genres)] += 1
        tagged += bool(genres)
        correct += genres == [labels[album]]
    consistent = [a for a, held in per_album.items() if len(held) == 1 and () not in held]
    return dict(per_album=per_album, consistent=consistent, tagged=tagged, correct=correct,
                total=len(run["files"]))


def spread(held: Counter) -> str:
    return ", ".join(f"{'; '.join(g) or '(none)'} {n}" for g, n in held.most_common())


def report(labels: dict[str, str], runs: dict[str, dict], min_confidence: float) -> str:
    track, album = (figures(runs[s], labels) for s in ("track", "album"))
    n = len(labels)
    s_track, s_album = runs["track"]["summary"], runs["album"]["summary"]
    lines = [
        f"`tags.min_confidence = {min_confidence:g}`:",
        "",
        "| | track scope (before) | album scope (after) |",
        "|---|---|---|",
        f"| albums whose tracks hold one genre | {len(track['consistent'])} of {n} | "
        f"{len(album['consistent'])} of {n} |",
        f"| tracks tagged | {track['tagged']} of {track['total']} | "
        f"{album['tagged']} of {album['total']} |",
        f"| tracks whose genre is the album's label | {track['correct']} of {track['total']} "
        f"({track['correct'] / track['total']:.0%}) | {album['correct']} of {album['total']} "
        f"({album['correct'] / album['total']:.0%}) |",
        f"| scan wall time (model load included) | {runs['track']['seconds']:.1f} s | "
        f"{runs['album']['seconds']:.1f} s |",
        f"| album pass (pooling, and every tag write, which track scope does inline) | - | "
        f"{s_album.album_seconds:.2f} s |",
        "",
        "Genres each album's tracks hold:",
        "",
        "| album | label | track scope | album scope | album decision |",
        "|---|---|---|---|---|",
    ]
    decisions = {os.path.basename(d.folder or ""): d for d in runs["album"]["decisions"]}
    for name, label in labels.items():
        d = decisions.get(name)
        decided = (f"{d.genre} {d.confidence:.2f}, {d.agreeing} of {d.voters} tracks agree"
                   + (f", per track ({d.per_track.value})" if d.per_track else "")
                   + f", identified by {d.identified_by.value}") if d and d.genre else "-"
        lines.append(f"| {name} | {label} | {spread(track['per_album'][name])} | "
                     f"{spread(album['per_album'][name])} | {decided} |")
    lines += ["", f"Track scope classified {s_track.classified} tracks, album scope "
              f"{s_album.classified} ({s_album.albums} albums decided, "
              f"{s_album.albums_per_track} per track); failures: {s_track.failed} / "
              f"{s_album.failed}."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="build and scan here (default: a temp dir)")
    parser.add_argument("--albums", type=int, default=2, help=f"1 to {len(ALBUMS)}")
    parser.add_argument("--tracks", type=int, default=10, help="tracks per album at most")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--min-confidence", type=float, nargs="+", default=[0.35],
                        help="tags.min_confidence of each pair of scans (default: 0.35)")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    parser.add_argument("--build-only", action="store_true",
                        help="build the library under --work and stop (a later run with the "
                        "same --work, --albums and --tracks scans it)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="tagger-albums-"))
    library, built, scans = work / "library", work / "library.json", work / "scans"
    shutil.rmtree(scans, ignore_errors=True)
    wanted = {"albums": args.albums, "tracks": args.tracks}
    kept = json.loads(built.read_text()) if built.exists() else {}
    if kept.get("wanted") == wanted:
        labels, built_s = kept["labels"], kept["seconds"]
    else:
        shutil.rmtree(library, ignore_errors=True)
        started = time.perf_counter()
        labels = build_library(library, args.albums, args.tracks)
        built_s = time.perf_counter() - started
        built.write_text(json.dumps({"wanted": wanted, "labels": labels, "seconds": built_s}))
    if args.build_only:
        return 0
    parts = [f"{len(labels)} albums, {sum(1 for p in library.rglob('*') if p.is_file())} "
             f"full-length tracks (library built in {built_s:.0f} s); labels: "
             + ", ".join(f"{a}: {label}" for a, label in labels.items()) + "."]
    print(parts[0], flush=True)
    for threshold in args.min_confidence:
        runs = {}
        for scope in ("track", "album"):
            runs[scope] = scan_copy(library, scans / f"{scope}-{threshold:g}", scope,
                                    args.workers, threshold)
        parts.append(report(labels, runs, threshold))
        print(f"\n{parts[-1]}", flush=True)
    text = "\n\n".join(parts)
    if args.write:
        write_section("albums", "Issue #25: one genre per album (`bench/albums.py`)",
                      f"`python bench/albums.py --albums {args.albums} --tracks {args.tracks} "
                      f"--min-confidence {' '.join(f'{t:g}' for t in args.min_confidence)}` "
                      f"({os.cpu_count()} cores, shared with other work):\n\n{text}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
