"""The genre tree (tagger/genre_tree.toml): parents, one spelling per genre, the user's
renames folded onto it, and the options it gives the tag policy (tags.with_parents,
tags.backoff_to_parent, tags.allowed_genres), on votes and on real clips scanned."""

from __future__ import annotations

import shutil
from pathlib import Path

import mutagen
import numpy as np
import pytest
from helpers.audio import encoding_ffmpeg, ffmpeg_run, real_clip
from helpers.configs import write_config
from helpers.library import at_rest

from tagger.config import Config, GenreConfig, TagsConfig, load_config
from tagger.errors import ConfigError
from tagger.genre_tree import fold, genre_tree, shipped_tree
from tagger.library import tags
from tagger.library.catalogue import open_catalogue
from tagger.library.genres import normalise_genres, same_genre
from tagger.model.genres import DEFAULT_GENRES
from tagger.model.vote import vote
from tagger.results import NotWritten
from tagger.service.policy import decide_tags
from tagger.service.scan import scan

NEXUIZ = "nexuiz_brainsukker_excerpt.ogg"  # electronic 0.68 (docs/genres.md)


# ---------------------------------------------------------------- the tree, as data


def test_the_shipped_tree_has_the_families_people_expect():
    tree = shipped_tree()
    assert tree.parent("metal") == tree.parent("punk") == "rock"
    assert tree.parent("Heavy Metal") == "metal"
    assert tree.ancestors("deep house") == ["house", "dance", "electronic"]
    assert tree.ancestors("techno") == tree.ancestors("ambient") == ["electronic"]
    assert tree.parent("orchestral") == tree.parent("opera") == "classical"
    assert tree.parent("film score") == "soundtrack" and tree.parent("OST") is None
    assert tree.parent("electronic") is None and tree.parent("no such genre") is None
    # every genre the model votes for has its place
    assert all(tree.knows(genre) for genre in DEFAULT_GENRES)


def test_spellings_of_one_genre_are_one_genre():
    assert len({fold(g) for g in ("Hip Hop", "hip-hop", "HipHop", "Hip-Hop", "hip_hop")}) == 1
    # the ID3v1 spelling where there is one, else the first seen
    assert normalise_genres(["Hip Hop", "hip-hop", "HipHop", "post rock", "Math Rock",
                             "math-rock"]) == ["Hip-Hop", "Post-Rock", "Math Rock"]
    assert same_genre("Drum & Bass", "drum&bass") and not same_genre("Rock", "Pop")
    assert shipped_tree().parent("Hip Hop") is None
    assert shipped_tree().parent("RAP") == shipped_tree().parent("Gangsta-Rap") == "hip-hop"
    assert shipped_tree().parent("Drum and Bass") == "electronic"  # an alias


def test_the_users_renames_are_folded_onto_the_tree():
    tree = genre_tree({"metal": "Heavy Stuff", "rock": "Rock Music", "hip-hop": "Hip Hop"})
    assert tree.parent("heavy stuff") == "Rock Music"
    assert tree.parent("punk") == "Rock Music"
    assert tree.parent("rap") == "Hip Hop"
    # renamed onto a genre of the tree, it is that genre
    assert genre_tree({"electronic": "Techno"}).ancestors("Techno") == ["electronic"]


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(("tags_section", "message"), [
    ({"allowed_genres": ["Electonic"]}, "unknown genre 'Electonic'"),
    ({"allowed_genres": ["Hip Hop", "hip-hop"]}, "listed twice"),
    ({"allowed_genres": [""]}, "unknown genre"),
    ({"with_parents": "yes"}, "'tags.with_parents' must be true or false"),
    ({"backoff_to_parent": 1}, "'tags.backoff_to_parent' must be true or false"),
])
def test_the_tree_options_are_checked_at_load(tmp_path, tags_section, message):
    path = write_config(tmp_path / "tagger.toml", tmp_path / "state", tags=tags_section)
    with pytest.raises(ConfigError, match=message):
        load_config(str(path))


def with_rename(path: Path, rename: str) -> Path:
    """The config file at ``path`` with ``[genres] rename`` (an inline TOML table)."""
    path.write_text(path.read_text(encoding="utf-8") + f"[genres]\nrename = {rename}\n",
                    encoding="utf-8")
    return path


def test_allowed_genres_may_name_the_users_own_genres(tmp_path):
    path = with_rename(write_config(tmp_path / "tagger.toml", tmp_path / "state", tags={
        "allowed_genres": ["Heavy Stuff", "HIP HOP", "OST"]}), '{ metal = "Heavy Stuff" }')
    assert load_config(str(path)).tags.allowed_genres == ("Heavy Stuff", "HIP HOP", "OST")


# ---------------------------------------------------------------- the policy, on votes

GENRES = ("electronic", "ambient", "dance", "classical", "rock")


def votes(*rows) -> np.ndarray:
    """(segments, genres) scores: ``(genre, score, times)`` segments won by ``genre``."""
    out = []
    for genre, score, times in rows:
        row = [0.05] * len(GENRES)
        row[GENRES.index(genre)] = score
        out += [row] * times
    return np.array(out)


def policy(**tags) -> Config:
    return Config(tags=TagsConfig(**tags))


def test_with_parents_writes_the_parent_after_the_genre():
    ambient = vote(GENRES, votes(("ambient", 0.6, 10)))
    assert decide_tags(ambient, [], policy()).genres == ("Ambient",)
    assert decide_tags(ambient, [], policy(with_parents=True)).genres == (
        "Ambient", "Electronic")
    tied = vote(GENRES, votes(("ambient", 0.8, 5), ("rock", 0.7, 5)))
    assert decide_tags(tied, [], policy(with_parents=True, on_tie="all")).genres == (
        "Ambient", "Electronic", "Rock")
    # the file already says it (any spelling): nothing to write, nothing kept
    same = decide_tags(ambient, ["ambient", "electronic"], policy(with_parents=True))
    assert (same.genres, same.not_written) == ((), None)


def test_allowed_genres_write_the_nearest_allowed_parent_or_nothing():
    ambient = vote(GENRES, votes(("ambient", 0.6, 10)))
    only = policy(allowed_genres=("Electronic", "Classical"))
    assert decide_tags(ambient, [], only).genres == ("Electronic",)
    assert decide_tags(ambient, [], policy(allowed_genres=("ambient",),
                                           with_parents=True)).genres == ("Ambient",)
    refused = decide_tags(ambient, [], policy(allowed_genres=("Rock",)))
    assert (refused.genres, refused.not_written) == ((), NotWritten.NOT_ALLOWED)


def test_backoff_decides_the_parent_when_its_children_split_the_vote():
    # ambient and dance tie at 4 votes each; their family, electronic, holds 8 of 10
    split = vote(GENRES, votes(("ambient", 0.95, 4), ("dance", 0.9, 4), ("rock", 0.99, 2)))
    assert split.tie and set(split.tied) == {"ambient", "dance"}
    skip = dict(on_tie="skip")
    assert decide_tags(split, [], policy(**skip)).not_written is NotWritten.TIE_SKIPPED
    backed = decide_tags(split, [], policy(backoff_to_parent=True, **skip))
    assert backed.genres == ("Electronic",) and backed.confidence == pytest.approx(
        split.candidates[0].mean_score)
    # below the threshold: the family's best member carries it
    weak = vote(GENRES, np.array([[0.40, 0.45, 0.05, 0.05, 0.05]] * 4
                                 + [[0.60, 0.10, 0.05, 0.05, 0.05]] * 3
                                 + [[0.30, 0.05, 0.05, 0.05, 0.70]] * 3))
    assert weak.genre == "ambient" and weak.confidence < 0.35
    assert decide_tags(weak, [], policy()).not_written is NotWritten.BELOW_THRESHOLD
    assert decide_tags(weak, [], policy(backoff_to_parent=True)).genres == ("Electronic",)
    # the families tie as well: no clear family, nothing to back off to
    even = vote(GENRES, votes(("ambient", 0.3, 3), ("electronic", 0.3, 2), ("rock", 0.3, 5)))
    assert decide_tags(even, [], policy(backoff_to_parent=True)).not_written is (
        NotWritten.BELOW_THRESHOLD)
    # a clear winner is never backed off
    clear = vote(GENRES, votes(("ambient", 0.6, 6), ("dance", 0.5, 4)))
    assert decide_tags(clear, [], policy(backoff_to_parent=True)).genres == ("Ambient",)


def test_backoff_follows_the_users_renames():
    config = Config(genres=GenreConfig(rename={"electronic": "Elektronisch"}),
                    tags=TagsConfig(on_tie="skip", backoff_to_parent=True))
    genres = ("Elektronisch", "ambient", "dance", "classical", "rock")
    split = vote(genres, votes(("ambient", 0.9, 5), ("dance", 0.85, 5)))
    assert decide_tags(split, [], config).genres == ("Elektronisch",)


# ---------------------------------------------------------------- real clips, scanned

ENCODERS = {".mp3": ["libmp3lame", "-b:a", "160k"], ".m4a": ["aac", "-b:a", "160k"],
            ".flac": ["flac"], ".opus": ["libopus", "-b:a", "96k"]}


@pytest.fixture(scope="module")
def electronic_clips(tmp_path_factory) -> Path:
    """The electronic clip in four formats, with no tags."""
    root = tmp_path_factory.mktemp("tree-src") / "Music"
    root.mkdir()
    for suffix, codec in ENCODERS.items():
        exe = encoding_ffmpeg(codec[0])
        if exe is None:
            pytest.skip(f"no ffmpeg with {codec[0]}")
        ffmpeg_run(exe, "-i", str(real_clip(NEXUIZ)), "-map_metadata", "-1", "-vn", "-c:a",
                   *codec, str(root / f"nexuiz{suffix}"))
    at_rest(root)
    return root


def scanned(clips: Path, base: Path, **tags_section) -> Path:
    root = base / "Music"
    shutil.copytree(clips, root)
    config = load_config(str(with_rename(write_config(
        base / "tagger.toml", base / "state", tags={"scope": "track", **tags_section}),
        '{ electronic = "techno" }')))
    with open_catalogue(config) as catalogue:
        summary = scan([str(root)], config, catalogue, workers=1)
        assert summary.classified == 4 and summary.failed == 0
        assert {catalogue.track(str(p)).prediction.genre for p in root.iterdir()} == {"techno"}
    return root


def native_genres(path: Path) -> list[str]:
    """The values of the format's own genre field, as mutagen reads them."""
    audio = mutagen.File(path)
    if path.suffix == ".mp3":
        return list(audio.tags["TCON"].text)
    if path.suffix == ".m4a":
        return list(audio.tags["\xa9gen"])
    return list(audio.tags["genre"])


def test_with_parents_writes_both_genres_into_each_formats_multi_value_field(
        electronic_clips, tmp_path):
    """The user calls the model's electronic "techno" (a genre of the tree, under
    electronic): every file gets Techno and its parent, as two values of its genre field."""
    root = scanned(electronic_clips, tmp_path, with_parents=True)
    for path in sorted(root.iterdir()):
        assert native_genres(path) == ["Techno", "Electronic"], path.name
        assert tags.read_genres(path) == ["Techno", "Electronic"]


def test_allowed_genres_write_the_allowed_parent_into_real_files(electronic_clips, tmp_path):
    root = scanned(electronic_clips, tmp_path, allowed_genres=["Electronic"])
    assert {p.name: tags.read_genres(p) for p in root.iterdir()} == {
        p.name: ["Electronic"] for p in electronic_clips.iterdir()}
