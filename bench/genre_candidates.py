"""AudioSet genres as candidates in the default genre map (issue #26): what do they change?

    python bench/genre_candidates.py [--per-album N] [--floors 0.2,0.3,0.4,0.5] [--write]

Every labelled track of the game-music set (``tools/build_game_music_dataset.py --extra``:
Wesnoth classical, Warzone 2100 and Nexuiz electronic, Singularity and HyperRogue ambient;
UFO: Alien Invasion, a compilation labelled "soundtrack", is heard but not scored) and the
labelled clips of shared/music (classical, jazz, country) goes once through the scan's own
code (``prepare_track``, ``Classifier.classify_prepared`` with the gate on). Then the
default map's vote with and without :data:`tagger.model.genres.AUDIOSET_GENRES`, for each
floor: track accuracy against the album's label, where a genre below the label in the genre
tree counts as right (drum & bass is electronic), the tracks whose genre changed, and how
high each AudioSet genre gets on music of known genres (a false candidate's level).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from results import write_section

from tagger.audio.features import prepare_track
from tagger.config import Config
from tagger.genre_tree import shipped_tree
from tagger.model import genres as genre_map
from tagger.model.backbone import output_keys
from tagger.model.classify import Classifier
from tagger.model.vote import vote

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "music"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/music")
SHARED_LABELS = {"Kevin_MacLeod_-_Vibe_Ace.ogg": "jazz",
                 "sorohanro_-_solo-trumpet-06.ogg": "jazz",
                 "Karissa_Hobbs_-_Lets_Go_Fishin.ogg": "country"}
ALBUM_LABELS = {"singularity": "ambient", "hyperrogue": "ambient", "ufoai": None}
#: the variant measured beside the product's: AudioSet evidence for the genres musicnn names
#: too (their classes joined to the map's members)
AUDIOSET_NAMED = {
    "rock": ("Rock music", "Progressive rock", "Psychedelic rock", "Rock and roll", "Grunge"),
    "pop": ("Pop music",), "electronic": ("Electronic music", "Electronica", "Techno"),
    "dance": ("House music", "Electronic dance music"), "hip-hop": ("Hip hop music",),
    "r&b/soul": ("Rhythm and blues",), "jazz": ("Jazz",), "blues": ("Blues",),
    "country": ("Country",), "folk": ("Folk music",), "metal": ("Heavy metal",),
    "punk": ("Punk rock",), "classical": ("Classical music", "Opera"),
    "ambient": ("Ambient music", "New-age music"),
}


def labelled_tracks(folder: Path, per_album: int) -> list[tuple[str, str | None, Path]]:
    """(album, label or None, path) for the game-music set built in ``folder``."""
    import subprocess

    subprocess.run([sys.executable, str(REPO / "tools" / "build_game_music_dataset.py"),
                    str(folder), "--extra"], check=True, stdout=subprocess.DEVNULL)
    tracks = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() and not path.is_symlink():
            continue
        label, album = path.parent.name, path.name.split("--", 1)[0]
        if album in ALBUM_LABELS:
            label = ALBUM_LABELS[album]
        tracks.append((album, label, path))
    for name, label in SHARED_LABELS.items():
        if (SHARED / name).is_file():
            tracks.append(("shared", label, SHARED / name))
    if per_album:
        by_album: dict[str, list] = {}
        for track in tracks:
            by_album.setdefault(track[0], []).append(track)
        tracks = [t for group in by_album.values()
                  for t in group[::max(1, len(group) // per_album)][:per_album]]
    return tracks


def right(predicted: str, label: str) -> bool:
    """The label itself, or a genre below it in the tree."""
    tree = shipped_tree()
    key = tree.key(label)
    return tree.key(predicted) == key or key in {tree.key(a) for a in
                                                  tree.ancestors(predicted)}


def hear_all(classifier: Classifier, config: Config, tracks) -> list[dict]:
    """Each track's musicnn tag scores and the gate's scores aligned to its segments."""
    rows = []
    for album, label, path in tracks:
        try:
            track = prepare_track(str(path), config)
        except Exception as exc:  # noqa: BLE001 - an unreadable file is reported, not fatal
            print(f"skipped {path.name}: {exc}", file=sys.stderr)
            continue
        result = classifier.classify_prepared([track])[0]
        heard = classifier.hear(track)
        if result.vote is None or heard is None:
            continue
        tags = np.array([[s.scores[k] for k in classifier.output_keys]
                         for s in result.segments])
        gate = classifier.aligned_gate([(track.starts_s, heard[1])]).tag_scores
        rows.append(dict(album=album, label=label, name=path.name, tags=tags, gate=gate,
                         product=result.vote.genre, content=result.content.kind.value))
    return rows


def votes(rows: list[dict], classifier: Classifier, floor: float | None,
          named: bool = False) -> list[str]:
    """Each row's genre under the default map, with the AudioSet genres at ``floor`` (None:
    without them); ``named``: with :data:`AUDIOSET_NAMED` too."""
    keys = classifier.output_keys
    if floor is None:
        vocab = genre_map.build_vocabulary(keys)
        return [vote(vocab.genres, vocab.genre_scores(r["tags"])).genre for r in rows]
    keys = keys + output_keys(classifier.gate.models)
    genres = genre_map.default_genres(True)
    if named:
        genres = {g: tags + tuple(f"audioset:{c}" for c in AUDIOSET_NAMED.get(g, ()))
                  for g, tags in genres.items()}
    vocab = genre_map.build_vocabulary(keys, genres=genres, floor=floor)
    return [vote(vocab.genres, vocab.genre_scores(np.concatenate([r["tags"], r["gate"]],
                                                                  axis=1))).genre
            for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-album", type=int, default=0, help="tracks per album (0: all)")
    parser.add_argument("--floors", default="0.1,0.2,0.3,0.4,0.5")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    config = Config()
    classifier = Classifier(config)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = hear_all(classifier, config, labelled_tracks(Path(tmp), args.per_album))
    seconds = time.perf_counter() - started
    music = [r for r in rows if r["content"] == "music"]
    scored = [r for r in music if r["label"]]
    command = "python bench/genre_candidates.py" + (f" --per-album {args.per_album}"
                                                    if args.per_album else "")
    lines = [f"torch CPU, {platform.machine()}; {len(rows)} tracks heard in {seconds:.0f} s "
             f"({len(music)} heard as music; {len(scored)} labelled and scored); "
             f"`{command}`.",
             "", "A genre below the label in the genre tree counts as right.", "",
             "| AudioSet genres | floor | right | accuracy | tracks whose genre changed | "
             "AudioSet genres chosen |", "|---|---:|---:|---:|---:|---|"]
    base = votes(scored, classifier, None)
    base_right = sum(right(g, r["label"]) for g, r in zip(base, scored))
    lines.append(f"| without | - | {base_right}/{len(scored)} | "
                 f"{base_right / max(1, len(scored)):.3f} | - | - |")
    changes = {}
    for named, floor in [(n, float(f)) for n in (False, True)
                         for f in args.floors.split(",")]:
        got = votes(scored, classifier, floor, named)
        ok = sum(right(g, r["label"]) for g, r in zip(got, scored))
        changed = [(r, b, g) for r, b, g in zip(scored, base, got) if b != g]
        chosen = Counter(g for g in got if g in genre_map.AUDIOSET_GENRES)
        which = "with, and for named genres" if named else "with"
        lines.append(f"| {which} | {floor:g} | {ok}/{len(scored)} | "
                     f"{ok / max(1, len(scored)):.3f} | {len(changed)} | "
                     + (", ".join(f"{g} {n}" for g, n in chosen.items()) or "-") + " |")
        changes[(named, floor)] = changed
    product = sum(right(r["product"], r["label"]) for r in scored)
    lines += ["", f"The scan's own result (floor {genre_map.AUDIOSET_GENRE_FLOOR:g}, "
              f"`[content] audioset_genres = true`): {product}/{len(scored)} right.", ""]
    lines += ["How high each AudioSet genre gets, per musicnn segment (its covering gate "
              "segment), over the music heard:", "",
              "| AudioSet genre | max | 99th percentile | tracks with a segment >= 0.3 |",
              "|---|---:|---:|---:|"]
    columns = [classifier.gate.models[0].labels.index(tags[0].split(":", 1)[1])
               for tags in genre_map.AUDIOSET_GENRES.values()]
    for (genre, tags), column in zip(genre_map.AUDIOSET_GENRES.items(), columns):
        values = np.concatenate([r["gate"][:, column] for r in music])
        fired = sum(bool((r["gate"][:, column] >= 0.3).any()) for r in music)
        lines.append(f"| {tags[0].split(':', 1)[1]} ({genre}) | {values.max():.3f} | "
                     f"{np.percentile(values, 99):.3f} | {fired} |")
    for (named, floor), changed in changes.items():
        if changed:
            lines += ["", f"Changed at floor {floor:g}{' (named too)' if named else ''}: "
                      + "; ".join(
                f"{r['album']}/{r['name'][:40]} ({r['label']}): {b} -> {g}"
                for r, b, g in changed[:12]) + (" ..." if len(changed) > 12 else "")]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section("genre-candidates", "AudioSet genres as candidates in the default map "
                      "(`bench/genre_candidates.py`, issue #26)", text)


if __name__ == "__main__":
    main()
