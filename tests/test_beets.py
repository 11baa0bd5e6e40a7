"""tagger as a beets plugin (beetsplug/tagger.py), driven through real beets.

A temporary beets set-up (its config, library, BEETSDIR and HOME in the test's folder) imports
real recordings as they are (``beet import -q -A``): the 40 s Vibe Ace clip in every format the
local ffmpeg writes (conftest's ``format_files``) as one album, and two classical recordings as
another, one of whose tracks carries the user's own genre. Then ``beet tagger`` runs as a
user runs it, each ``beet`` a process of its own (the model loads in each: tens of seconds),
and the results are read back with ``beet ls`` and, from the files, with mutagen.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.audio import encoding_ffmpeg, ffmpeg_run, real_clip
from helpers.rawtags import raw_field
from helpers.tagfiles import CONF_FIELD, FAMILY, GENRE_FIELD, strip_tags

from tagger.results import ModelInfo, SegmentResult, TrackResult

pytest.importorskip("beets")  # the test extra installs it ("tagger[beets]" for users)
import mediafile  # noqa: E402  (beets' own tag library: the files are tagged as a user's are)
from beets.library import Item  # noqa: E402

from beetsplug.tagger import album_vote, dropped_genres  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: beets' genre field: the list "genres" from beets 2.7 on, "genre" before
GENRES = "genres" if "genres" in Item.all_keys() else "genre"
HUNGARIAN = "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg"
TCHAIKOVSKY = "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg"
NEXUIZ = "nexuiz_brainsukker_excerpt.ogg"
#: conftest's format names -> helpers.tagfiles' (raw tag fields per container family)
TAG_FORMAT = {"aac": "m4a"}
ROW = f"$title\t${GENRES}\t$tagger_genre\t$tagger_confidence\t$tagger_model\t$tagger_written"


@dataclass
class Beets:
    """One beets set-up under ``root``: ``beet(...)`` runs beets there, as a new process."""

    root: Path
    env: dict = field(default_factory=dict)

    @property
    def library(self) -> Path:
        return self.root / "library"

    def beet(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        run = subprocess.run([sys.executable, "-m", "beets", *args], env=self.env,
                             capture_output=True, text=True, timeout=1200)
        if check:
            assert run.returncode == 0, run.stdout + run.stderr
        return run

    def rows(self, *query: str, album: bool = False) -> dict[str, list[str]]:
        """``beet ls -f ROW`` as {title (album for -a): its other columns}."""
        out = self.beet("ls", *(["-a"] if album else []), "-f",
                        ROW.replace("$title", "$album") if album else ROW, *query).stdout
        return {line.split("\t")[0]: line.split("\t")[1:] for line in out.splitlines()}

    def files(self) -> dict[str, Path]:
        """The library's audio files by title."""
        return {mediafile.MediaFile(p).title: p for p in sorted(self.library.rglob("*.*"))}

    def fingerprint(self) -> dict[str, str]:
        """sha256 of every file beets keeps: the library's audio and its database."""
        paths = [*self.library.rglob("*"), self.root / "beetsdir" / "library.db"]
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths
                if p.is_file()}


def make_beets(root: Path, numba_cache: Path, **tagger: object) -> Beets:
    """A beets config with the plugin on (``tagger:`` settings added), everything in ``root``."""
    home, beetsdir = root / "home", root / "beetsdir"
    for folder in (home, beetsdir, root / "library"):
        folder.mkdir(parents=True)
    config = {
        "directory": str(root / "library"),
        "library": str(beetsdir / "library.db"),
        "plugins": ["tagger"],
        "import": {"copy": True, "write": True, "log": str(root / "import.log")},
        "tagger": {"auto": False, "workers": 1, "state_dir": str(root / "tagger-state"),
                   **tagger},
    }
    (beetsdir / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "BEETS"))}
    env.update(HOME=str(home), BEETSDIR=str(beetsdir), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_STATE_HOME=str(home / ".state"), XDG_CACHE_HOME=str(home / ".cache"),
               NUMBA_CACHE_DIR=str(numba_cache),  # compiled once for the whole module
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    return Beets(root, env)


def tag(path: Path, *, title: str, artist: str, album: str, track: int,
        genre: str | None = None) -> Path:
    """Tag a file as a user's tagger would (beets' own mediafile), every old tag gone."""
    strip_tags(path)
    media = mediafile.MediaFile(path)
    media.title, media.artist, media.albumartist, media.album = title, artist, artist, album
    media.track = track
    if genre:
        media.genre = genre
    media.save()
    return path


def cut(clip: str, out: Path, encoder: str, *, start: float = 0.0, seconds: float = 40.0):
    exe = encoding_ffmpeg(encoder)
    if exe is None:
        pytest.skip(f"no ffmpeg with the {encoder} encoder")
    ffmpeg_run(exe, "-ss", str(start), "-t", str(seconds), "-i", str(real_clip(clip)),
               "-map_metadata", "-1", "-c:a", encoder, str(out))
    return out


@pytest.fixture(scope="module")
def numba_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("numba")


@pytest.fixture(scope="module")
def beets_library(tmp_path_factory, format_files, numba_cache) -> Beets:
    """Two albums imported as they are: Vibe Ace in every format, and two classical pieces
    (the second track with the user's own genre, "Ballet")."""
    base = tmp_path_factory.mktemp("beets")
    beets = make_beets(base / "beets", numba_cache)
    formats = base / "incoming" / "formats"
    formats.mkdir(parents=True)
    for number, (name, path) in enumerate(sorted(format_files.items()), 1):
        copy = shutil.copy(path, formats / f"{number:02d} {name}{path.suffix}")
        tag(Path(copy), title=name, artist="Kevin MacLeod", album="Vibe Ace in Formats",
            track=number)
    dances = base / "incoming" / "dances"
    dances.mkdir()
    tag(cut(HUNGARIAN, dances / "01 hungarian.ogg", "libvorbis"), title="Hungarian Dance",
        artist="Strings", album="Dances", track=1)
    tag(cut(TCHAIKOVSKY, dances / "02 sugar plum.flac", "flac", start=30.0),
        title="Sugar Plum Fairy", artist="Strings", album="Dances", track=2, genre="Ballet")
    beets.beet("import", "-q", "-A", str(base / "incoming"))
    assert len(beets.rows()) == len(format_files) + 2
    return beets


@pytest.fixture(scope="module")
def tagged(beets_library) -> str:
    """``beet tagger`` over the whole library: its output."""
    return beets_library.beet("tagger").stdout


# ---------------------------------------------------------------- the command


@pytest.mark.slow
def test_pretend_shows_the_decisions_and_changes_nothing(beets_library):
    before = beets_library.fingerprint()
    out = beets_library.beet("tagger", "--pretend").stdout
    assert "Kevin MacLeod - Vibe Ace in Formats: would set" in out, out
    assert "Sugar Plum Fairy: kept the genre already set (Ballet)" in out, out
    assert beets_library.fingerprint() == before
    assert all(row[1] == "$tagger_genre" for row in beets_library.rows().values())


@pytest.mark.slow
def test_learn_says_what_labels_it_lacks(beets_library):
    # the only genre the user set is Ballet, on one track (run before `beet tagger`)
    run = beets_library.beet("tagger", "--learn", check=False)
    assert run.returncode != 0
    assert ("needs at least 2 genres with 5 or more tracks each, from genres the user set "
            "(not tagger); tracks with one: 1 (too few: Ballet 1)") in run.stderr, run.stderr


@pytest.mark.slow
def test_tagger_sets_one_genre_per_album_in_beets_and_in_the_files(beets_library, tagged,
                                                                     format_files):
    rows = beets_library.rows()
    files = beets_library.files()
    formats = {name: rows[name] for name in format_files}
    genres = {row[0] for row in formats.values()}
    assert len(genres) == 1, formats  # one decision for the album, whatever the format
    (genre,) = genres
    for name, (field_genre, tagger_genre, confidence, model, written) in formats.items():
        assert field_genre == tagger_genre == written == genre
        assert model.startswith("musicnn@")
        assert float(confidence) >= 0.35  # the default threshold: written
        fmt = TAG_FORMAT.get(name, name)
        family = FAMILY[fmt]
        # the file's own tags, read with mutagen: the genre and tagger's confidence
        assert raw_field(files[name], fmt, GENRE_FIELD[family]) == (genre,), name
        assert raw_field(files[name], fmt, CONF_FIELD[family]) == (confidence,), name
    album = beets_library.rows(album=True)["Vibe Ace in Formats"]
    assert album[:3] == [genre, genre, formats["mp3"][2]]
    assert f"Kevin MacLeod - Vibe Ace in Formats: set {genre}" in tagged, tagged

    # classical music is Classical; the track the user called Ballet keeps its genre
    hungarian, plum = rows["Hungarian Dance"], rows["Sugar Plum Fairy"]
    assert hungarian[0] == hungarian[1] == "Classical"
    assert plum[0] == "Ballet" and plum[1] == "Classical"
    assert raw_field(files["Sugar Plum Fairy"], "flac", "GENRE") == ("Ballet",)
    assert raw_field(files["Sugar Plum Fairy"], "flac", CONF_FIELD["vorbis"]) is None
    assert raw_field(files["Hungarian Dance"], "ogg", "GENRE") == ("Classical",)
    assert "Sugar Plum Fairy: kept the genre already set (Ballet)" in tagged


@pytest.mark.slow
def test_confidence_is_a_number_beets_queries_by_range(beets_library, tagged, format_files):
    rows = beets_library.rows()
    low = float(rows["mp3"][2])
    high = float(rows["Hungarian Dance"][2])
    assert low != high
    cut_at = f"{(low + high) / 2:.3f}"
    below = beets_library.rows(f"tagger_confidence:..{cut_at}")
    above = beets_library.rows(f"tagger_confidence:{cut_at}..")
    lower = set(format_files) if low < high else {"Hungarian Dance", "Sugar Plum Fairy"}
    assert set(below) == lower
    assert set(above) == set(rows) - lower
    # albums carry the decision too
    assert len(beets_library.rows(f"tagger_confidence:..{cut_at}", album=True)) == 1


@pytest.mark.slow
def test_a_second_run_rewrites_nothing(beets_library, tagged):
    before = beets_library.fingerprint()
    out = beets_library.beet("tagger").stdout
    assert "Vibe Ace in Formats: " in out and "already set" in out, out
    assert ": set " not in out and "set on" not in out, out
    assert beets_library.fingerprint() == before


@pytest.mark.slow
def test_the_import_hook_tags_a_newly_imported_album(beets_library, tagged, tmp_path):
    incoming = tmp_path / "encores"
    incoming.mkdir()
    tag(cut(TCHAIKOVSKY, incoming / "01 sugar plum.opus", "libopus", start=70.0),
        title="Sugar Plum Encore", artist="Strings", album="Encores", track=1)
    tag(cut(HUNGARIAN, incoming / "02 hungarian.m4a", "aac", start=5.0),
        title="Hungarian Encore", artist="Strings", album="Encores", track=2)
    auto = tmp_path / "auto.yaml"
    auto.write_text(yaml.safe_dump({"tagger": {"auto": True}}), encoding="utf-8")
    run = beets_library.beet("-c", str(auto), "import", "-q", "-A", str(incoming))
    assert "tagger: loading the model" in run.stderr  # said before the wait
    assert "tagger: Strings - Encores: set Classical" in run.stdout, run.stdout
    rows = beets_library.rows("album:Encores")
    assert set(rows) == {"Sugar Plum Encore", "Hungarian Encore"}
    assert all(row[0] == row[1] == "Classical" for row in rows.values()), rows
    # an as-is import: beets writes no tags itself, the plugin wrote them once the files
    # were in the library
    files = beets_library.files()
    assert raw_field(files["Sugar Plum Encore"], "opus", "GENRE") == ("Classical",)
    assert raw_field(files["Hungarian Encore"], "m4a", GENRE_FIELD["mp4"]) == ("Classical",)
    assert raw_field(files["Hungarian Encore"], "m4a", CONF_FIELD["mp4"]) == (
        rows["Hungarian Encore"][2],)


@pytest.mark.slow
def test_a_genre_the_user_changes_becomes_theirs(beets_library, tagged, format_files):
    files = beets_library.files()
    beets_library.beet("modify", "-y", "genres=Salsa" if GENRES == "genres" else "genre=Salsa",
                       "title:mp3")
    # beets wrote the user's genre, and with it the confidence of the genre tagger had set
    assert raw_field(files["mp3"], "mp3", "TCON") == ("Salsa",)
    assert raw_field(files["mp3"], "mp3", CONF_FIELD["id3"]) is not None
    others = {name: hashlib.sha256(files[name].read_bytes()).hexdigest()
              for name in format_files if name != "mp3"}
    out = beets_library.beet("tagger", "album:Vibe Ace in Formats").stdout
    assert "mp3: kept the genre already set (Salsa)" in out, out
    assert beets_library.rows("title:mp3")["mp3"][0] == "Salsa"
    assert raw_field(files["mp3"], "mp3", "TCON") == ("Salsa",)
    assert raw_field(files["mp3"], "mp3", CONF_FIELD["id3"]) is None  # not tagger's genre
    assert {name: hashlib.sha256(files[name].read_bytes()).hexdigest()
            for name in others} == others


@pytest.mark.slow
def test_force_replaces_the_users_genre(beets_library, tagged):
    files = beets_library.files()
    untouched = {name: hashlib.sha256(files[name].read_bytes()).hexdigest()
                 for name in ("Hungarian Dance", "mp3")}
    out = beets_library.beet("tagger", "--force", "album:Dances").stdout
    assert "Strings - Dances" in out and "Vibe Ace" not in out, out
    plum = beets_library.rows("title:Sugar Plum Fairy")["Sugar Plum Fairy"]
    assert plum[0] == plum[1] == plum[4] == "Classical"
    assert raw_field(files["Sugar Plum Fairy"], "flac", "GENRE") == ("Classical",)
    # the track that already said Classical, and the album the query left out: not rewritten
    assert {name: hashlib.sha256(files[name].read_bytes()).hexdigest()
            for name in untouched} == untouched


@pytest.mark.slow
def test_a_wrong_setting_is_named_before_any_work(beets_library, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"tagger": {"min_confidence": 1.5}}), encoding="utf-8")
    run = beets_library.beet("-c", str(bad), "tagger", check=False)
    assert run.returncode != 0
    assert "tagger.min_confidence (1.5): 'tags.min_confidence' must be between 0 and 1" in \
        run.stderr + run.stdout
    assert "classifying" not in run.stderr


# ---------------------------------------------------------------- learning


#: (clip, start, album artist, album, the user's genre): 10 s excerpts, 3 segments each
LABELLED = [
    *[(HUNGARIAN, s, "Johannes Brahms", "Hungarian Dances", "Classical") for s in (0, 12, 24)],
    *[(TCHAIKOVSKY, s, "Tchaikovsky", "Nutcracker", "Classical") for s in (5, 35, 65)],
    *[(NEXUIZ, s, "Parapraxis", "Nexuiz", "Electronica") for s in (0, 12, 24)],
    *[(NEXUIZ, s, "Nexuiz Crew", "Nexuiz Remixes", "Electronica") for s in (30, 42, 50)],
    (HUNGARIAN, 34, "Johannes Brahms", "Hungarian Dances", None),  # no genre: tagger's to set
]


@pytest.mark.slow
def test_learn_adopts_a_head_from_the_beets_genres_and_tagger_uses_it(tmp_path_factory,
                                                                      numba_cache):
    base = tmp_path_factory.mktemp("learn")
    beets = make_beets(base / "beets", numba_cache)
    for number, (clip, start, artist, album, genre) in enumerate(LABELLED, 1):
        folder = base / "incoming" / album
        folder.mkdir(parents=True, exist_ok=True)
        tag(cut(clip, folder / f"{number:02d}.flac", "flac", start=start, seconds=10.0),
            title=f"{album} {number}", artist=artist, album=album, track=number,
            genre=genre)
    beets.beet("import", "-q", "-A", str(base / "incoming"))
    out = beets.beet("tagger", "--learn", "--adopt", "--min-tracks", "3", "--folds",
                     "2").stdout
    assert "labels: 12 tracks in 2 genres" in out, out
    assert "held-out accuracy on the same folds" in out
    assert "by artist" in out  # folds grouped by album artist
    assert "adopted: beets (" in out, out
    out = beets.beet("tagger", "--source", "track").stdout
    rows = beets.rows()
    bare = rows["Hungarian Dances 13"]
    assert bare[3].startswith("beets@"), out  # the adopted head decided
    assert bare[1] in ("Classical", "Electronica")  # the user's own taxonomy
    assert bare[0] == bare[1] or "not set" in out
    # the user's labels stay as they were
    assert all(row[0] in ("Classical", "Electronica") for title, row in rows.items()
               if title != "Hungarian Dances 13")


# ---------------------------------------------------------------- the album decision


def _track(path: str, scores: list[list[float]], genres=("jazz", "rock"), error=None):
    segments = tuple(SegmentResult(start_s=3.0 * i, genre=genres[int(np.argmax(row))],
                                   scores={}, genre_scores=dict(zip(genres, row)))
                     for i, row in enumerate(scores))
    from tagger.model.vote import vote

    return TrackResult(path=path, model=ModelInfo("musicnn", "0" * 64, genres),
                       vote=None if error else vote(genres, np.array(scores)),
                       segments=() if error else segments, error=error)


def test_the_album_vote_pools_every_readable_tracks_segments():
    from tagger.model.vote import vote

    one = _track("/a/1.flac", [[0.9, 0.1], [0.8, 0.3]])  # jazz, strongly
    two = _track("/a/2.flac", [[0.2, 0.6], [0.3, 0.5], [0.1, 0.7]])  # rock, 3 segments
    broken = _track("/a/3.flac", [], error="cannot decode")
    pooled = album_vote([one, two, broken], ("jazz", "rock"))
    expected = vote(("jazz", "rock"), np.array([[0.9, 0.1], [0.8, 0.3], [0.2, 0.6],
                                                 [0.3, 0.5], [0.1, 0.7]]))
    assert pooled.genre == expected.genre == "rock"  # 3 segments against 2
    assert pooled.candidates == expected.candidates and pooled.tie == expected.tie
    # the confidence of the typical track, as tagger's album pass has it (docs/albums.md):
    # the median of the tracks' own (0.85 and 0.6), not the pooled mean of rock (0.44)
    assert pooled.confidence == pytest.approx((0.85 + 0.6) / 2)
    assert album_vote([broken], ("jazz", "rock")) is None


def test_the_whitelist_keeps_only_the_genres_it_names():
    assert dropped_genres([]) == []
    dropped = dropped_genres(["Jazz", "Hip-Hop", "Lounge"])  # Lounge: not tagger's
    assert "jazz" not in dropped and "hip-hop" not in dropped
    assert {"rock", "classical"} <= set(dropped)
    with pytest.raises(Exception, match="names none of tagger's genres"):
        dropped_genres(["Lounge"])
