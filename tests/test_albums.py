"""One genre per album (``tags.scope = "album"``) on real audio: album identity from each
format's tags, the pooled album vote written to every track the policy allows, compilations
falling back to per-track decisions, the ``albums`` table, and track scope as it always was.

One small library of real clips (tests/data) is built once: four albums in a mix of formats,
tagged as Picard tags them. A copy is scanned in track scope and another in album scope (the
model is the slow part); the tests read what each scan left in the files and the catalogue.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import tagfiles
from helpers.albums import picard_tags
from helpers.audio import encoding_ffmpeg, ffmpeg_run, real_clip
from helpers.configs import write_config
from helpers.library import at_rest

from tagger.cli import main
from tagger.config import Config, load_config
from tagger.library import tags
from tagger.library.albums import album_id
from tagger.library.catalogue import open_catalogue
from tagger.library.tags import TagInfo
from tagger.model.vote import album_vote, pooled_vote, vote
from tagger.results import AlbumIdentity, NotWritten, PerTrack
from tagger.service.albums import AlbumMember, decide_album
from tagger.service.policy import decide_tags, display_genre
from tagger.service.scan import scan
from tagger.service.workers import WorkItem

HUNGARIAN = "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg"
TCHAIKOVSKY = "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg"
VIBE_ACE = "Kevin_MacLeod_-_Vibe_Ace.ogg"
NEXUIZ = "nexuiz_brainsukker_excerpt.ogg"
MBID = "5b11f4ce-a62d-471e-81fc-a69a8278c7da"
ENCODERS = {".flac": ["flac"], ".mp3": ["libmp3lame", "-b:a", "160k"],
            ".m4a": ["aac", "-b:a", "160k"], ".opus": ["libopus", "-b:a", "96k"],
            ".ogg": ["libvorbis", "-q:a", "4"]}


def encode(clip: str, out: Path) -> Path:
    """A real clip in the format ``out``'s suffix names, with no tags at all."""
    codec = ENCODERS[out.suffix]
    exe = encoding_ffmpeg(codec[0])
    if exe is None:
        pytest.skip(f"no ffmpeg with {codec[0]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg_run(exe, "-i", str(real_clip(clip)), "-map_metadata", "-1", "-vn", "-c:a", *codec,
               str(out))
    return out


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """Four albums: ``Suite`` (album tags; MP3 holding the user's own genre, FLAC, M4A),
    ``Nocturnes`` (one MusicBrainz album id over two disc folders whose album tags differ;
    Opus, Ogg), ``Hits`` (album artist Various Artists) and ``Loose`` (no album tags: its
    folder; one jazz, one classical, one electronic track)."""
    root = tmp_path_factory.mktemp("albums-src") / "Music"
    suite = [encode(HUNGARIAN, root / "Suite" / "01 hungarian.flac"),
             encode(TCHAIKOVSKY, root / "Suite" / "02 tchaikovsky.mp3"),
             encode(VIBE_ACE, root / "Suite" / "03 vibe ace.m4a")]
    for path in suite:
        picard_tags(path, album="Suite", album_artist="Budapest Strings", artist="Various")
    picard_tags(suite[1], genre="Ballet")  # the user's own genre
    disc1 = [encode(TCHAIKOVSKY, root / "Nocturnes" / "CD1" / "01 tchaikovsky.opus")]
    disc2 = [encode(HUNGARIAN, root / "Nocturnes" / "CD2" / "01 hungarian.ogg"),
             encode(VIBE_ACE, root / "Nocturnes" / "CD2" / "02 vibe ace.ogg")]
    for disc, paths in (("1", disc1), ("2", disc2)):
        for path in paths:
            picard_tags(path, album=f"Nocturnes (disc {disc})", album_artist="Orchestre",
                        mbid=MBID)
    for name, clip in (("01 hungarian.ogg", HUNGARIAN), ("02 vibe ace.ogg", VIBE_ACE)):
        picard_tags(encode(clip, root / "Hits" / name), album="Hits",
                    album_artist="Various Artists", artist=name[3:-4])
    for name, clip in (("hungarian.ogg", HUNGARIAN), ("vibe ace.ogg", VIBE_ACE),
                       ("nexuiz.ogg", NEXUIZ)):
        encode(clip, root / "Loose" / name)
    at_rest(root)
    return root


def scanned_copy(library: Path, base: Path, scope: str):
    """A copy of the library scanned with ``tags.scope = scope``: (root, config, summary)."""
    root = base / "Music"
    shutil.copytree(library, root)  # copy2: the copies keep their old mtimes, at rest
    config_file = write_config(base / "tagger.toml", base / "state",
                               tags={"scope": scope, "min_confidence": 0.0})
    config = load_config(str(config_file))
    with open_catalogue(config) as catalogue:
        summary = scan([str(root)], config, catalogue, workers=2)
    return root, config_file, summary


@pytest.fixture(scope="module")
def by_track(library, tmp_path_factory):
    return scanned_copy(library, tmp_path_factory.mktemp("by-track"), "track")


@pytest.fixture(scope="module")
def by_album(library, tmp_path_factory):
    return scanned_copy(library, tmp_path_factory.mktemp("by-album"), "album")


def genres_of(folder: Path) -> dict[str, list[str]]:
    """{file name: its genre values} of every audio file below ``folder``."""
    return {str(p.relative_to(folder)): tags.read_genres(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and tags.supported(p)}


def catalogue_of(config_file: Path):
    return open_catalogue(load_config(str(config_file)))


# ---------------------------------------------------------------- identity, read from tags


@pytest.mark.parametrize("fmt", tagfiles.ALL)
def test_album_identity_is_read_from_every_format(tmp_path_factory, tmp_path, fmt):
    media = tagfiles.media(tmp_path_factory)
    path = media.copy(fmt, "empty", tmp_path)
    folder_only = tags.read_info(path)
    assert (folder_only.album_artist, folder_only.mb_album_id, folder_only.compilation) == (
        None, None, False)
    assert album_id(str(path), folder_only).identified_by is AlbumIdentity.FOLDER
    assert album_id(str(path), folder_only).key == f"folder:{tmp_path}"
    picard_tags(path, album="Nocturnes", album_artist="Various Artists", artist="Someone")
    info = tags.read_info(path)
    assert (info.album, info.album_artist, info.artist) == (
        "Nocturnes", "Various Artists", "Someone")
    by_tags = album_id(str(path), info)
    assert by_tags.identified_by is AlbumIdentity.TAGS
    assert by_tags.key == 'tags:["various artists", "nocturnes"]'
    picard_tags(path, mbid=MBID.upper(), compilation=True)
    info = tags.read_info(path)
    assert info.mb_album_id == MBID.upper() and info.compilation is True
    assert album_id(str(path), info).key == f"mbid:{MBID}"


def test_album_key_needs_no_album_artist_and_ignores_case():
    one = TagInfo("Ann", "Greatest  Hits", [])
    assert album_id("/m/a/1.mp3", one) == album_id("/m/b/2.mp3", TagInfo("ANN", "greatest hits",
                                                                         []))
    assert album_id("/m/a/1.mp3", one) != album_id("/m/a/2.mp3", TagInfo("Bob", "Greatest Hits",
                                                                         []))


# ---------------------------------------------------------------- the rule, on vote scores


def member(genres, rows, *, album_artist=None, compilation=False) -> AlbumMember:
    scores = np.asarray(rows, dtype=np.float64)
    info = TagInfo(None, "A", [], album_artist=album_artist, compilation=compilation)
    return AlbumMember(WorkItem("/m/x.mp3", 1, 1, "mp3"), info, vote(genres, scores), scores,
                       fresh=True)


def test_album_vote_pools_the_segments_and_compilations_keep_their_own():
    genres = ("rock", "jazz", "pop")
    rock = [[0.9, 0.1, 0.0]] * 2
    jazz = [[0.1, 0.8, 0.0]] * 2
    pop = [[0.1, 0.0, 0.7]] * 2
    tagged = album_id("/m/a/1.mp3", TagInfo("X", "A", []))
    album = decide_album(tagged, [member(genres, rock), member(genres, rock),
                                  member(genres, jazz)], genres)
    assert album.vote == album_vote(genres, [np.array(rock)] * 2 + [np.array(jazz)])
    assert album.vote.genre == "rock" and len(album.vote.segment_winners) == 6
    assert (album.members, album.voters, album.agreeing, album.per_track) == (3, 3, 2, None)
    # three tracks, three genres: the album's genre is one track's of three
    apart = decide_album(tagged, [member(genres, m) for m in (rock, jazz, pop)], genres)
    assert apart.per_track is PerTrack.VOTES_DISAGREE and apart.agreeing == 1
    # two of four agree: an album when its tags say so, not when only its folder does
    two_of_four = [member(genres, m) for m in (rock, rock, jazz, pop)]
    assert decide_album(tagged, two_of_four, genres).per_track is None
    folder = album_id("/m/a/1.mp3", TagInfo(None, None, []))
    assert decide_album(folder, two_of_four, genres).per_track is PerTrack.VOTES_DISAGREE
    various = [member(genres, rock, album_artist="VA"), member(genres, rock)]
    assert decide_album(tagged, various, genres).per_track is PerTrack.VARIOUS_ARTISTS
    flagged = [member(genres, rock), member(genres, rock, compilation=True)]
    assert decide_album(tagged, flagged, genres).per_track is PerTrack.COMPILATION_TAG


def test_the_album_is_as_confident_as_its_typical_track():
    """The genre is the pooled vote's; the confidence is the median of the tracks' own, the
    scale tags.min_confidence is set on: an album split between two genres is named as
    confidently as its tracks are, not at the pooled winner's diluted mean."""
    genres = ("ambient", "classical")
    ambient = [[0.45, 0.05]] * 10
    classical = [[0.05, 0.5]] * 10
    tracks = [np.array(ambient)] * 3 + [np.array(classical)] * 2
    pooled, album = pooled_vote(genres, tracks), album_vote(genres, tracks)
    assert album.genre == pooled.genre == "ambient" and album.candidates == pooled.candidates
    assert pooled.confidence == pytest.approx(0.29)  # 0.45 on 30 segments, 0.05 on 20
    assert album.confidence == pytest.approx(0.45)  # the median track's own
    assert decide_tags(album, [], Config()).genres == ("Ambient",)
    assert decide_tags(pooled, [], Config()).not_written is NotWritten.BELOW_THRESHOLD
    # one track: its own vote exactly
    assert album_vote(genres, tracks[:1]) == vote(genres, tracks[0])


# ---------------------------------------------------------------- scans of real audio


def test_track_scope_gives_each_track_its_own_decision(by_track):
    """Track scope is the per-track decision, file by file, as before albums: every file
    holds what the policy makes of its own prediction; no album is decided."""
    root, config_file, summary = by_track
    assert summary.classified == 11 and summary.failed == 0 and summary.albums == 0
    config = load_config(str(config_file))
    with catalogue_of(config_file) as catalogue:
        assert catalogue.albums() == []
        for path, held in genres_of(root).items():
            record = catalogue.track(str(root / path))
            assert record.status == "done"
            prediction = record.prediction
            own = vote(prediction.model.vocabulary,
                       np.array([[s.genre_scores[g] for g in prediction.model.vocabulary]
                                 for s in prediction.segments]))
            assert own.genre == prediction.genre
            user = ["Ballet"] if path.endswith("tchaikovsky.mp3") else []
            decision = decide_tags(own, user, config)
            assert held == (list(decision.genres) or user), path
            assert record.not_written is decision.not_written
    suite = genres_of(root / "Suite")
    assert len({g for held in suite.values() for g in held} - {"Ballet"}) == 2  # mixed


def test_album_scope_writes_one_genre_per_album(by_album, by_track):
    root, config_file, summary = by_album
    assert summary.classified == 11 and summary.failed == 0
    assert (summary.albums, summary.albums_per_track) == (4, 2)
    nocturnes = genres_of(root / "Nocturnes")
    assert len({tuple(g) for g in nocturnes.values()}) == 1  # one genre on all three
    assert len({tuple(g) for g in genres_of(by_track[0] / "Nocturnes").values()}) > 1
    with catalogue_of(config_file) as catalogue:
        album = catalogue.album(f"mbid:{MBID}")
        assert album.identified_by is AlbumIdentity.MBID
        assert (album.members, album.voters, album.written) == (3, 3, 3)
        written = display_genre(album.genre, load_config(str(config_file)).tags)
        assert nocturnes["CD1/01 tchaikovsky.opus"] == [written]
        # the album's genre is the vote over all segments of its tracks' own predictions
        records = [catalogue.track(str(p)) for p in sorted((root / "Nocturnes").rglob("*.o*"))]
        vocabulary = records[0].prediction.model.vocabulary
        pooled = album_vote(vocabulary, [
            np.array([[s.genre_scores[g] for g in vocabulary] for s in r.prediction.segments])
            for r in records])
        assert (album.genre, album.segment_count) == (pooled.genre, 30)
        assert album.confidence == pytest.approx(pooled.confidence, abs=1e-6)
        # its confidence: the median of its tracks' own
        assert album.confidence == pytest.approx(
            sorted(r.prediction.confidence for r in records)[1], abs=1e-4)
        assert all(r.status == "done" and r.not_written is None for r in records)
        assert {r.album_key for r in records} == {f"mbid:{MBID}"}


def test_the_users_genre_is_kept_in_an_album(by_album):
    """Under if_empty the user's own genre wins on its track; the others get the album's."""
    root, config_file, _ = by_album
    suite = genres_of(root / "Suite")
    assert suite["02 tchaikovsky.mp3"] == ["Ballet"]
    with catalogue_of(config_file) as catalogue:
        album = catalogue.album('tags:["budapest strings", "suite"]')
        written = display_genre(album.genre, load_config(str(config_file)).tags)
        assert suite["01 hungarian.flac"] == suite["03 vibe ace.m4a"] == [written]
        assert (album.members, album.voters, album.written, album.per_track) == (3, 3, 2, None)
        record = catalogue.track(str(root / "Suite" / "02 tchaikovsky.mp3"))
        assert record.not_written is NotWritten.KEPT_USER_GENRE
        assert record.user_genres == ("Ballet",)


def test_compilations_fall_back_to_per_track_decisions(by_album, by_track):
    root, config_file, _ = by_album
    for folder in ("Hits", "Loose"):  # each file as track scope tagged it
        assert genres_of(root / folder) == genres_of(by_track[0] / folder)
        assert len({tuple(g) for g in genres_of(root / folder).values()}) > 1
    with catalogue_of(config_file) as catalogue:
        hits = catalogue.album('tags:["various artists", "hits"]')
        loose = catalogue.album(f"folder:{root / 'Loose'}")
    assert (hits.compilation, hits.per_track, hits.members) == (
        True, PerTrack.VARIOUS_ARTISTS, 2)
    assert (loose.compilation, loose.per_track, loose.identified_by, loose.members) == (
        True, PerTrack.VOTES_DISAGREE, AlbumIdentity.FOLDER, 3)
    assert loose.agreeing <= 1 and hits.written == 2


def test_show_says_the_albums_decision(by_album, capsys):
    root, config_file, _ = by_album
    path = root / "Suite" / "03 vibe ace.m4a"
    assert main(["--config", str(config_file), "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "album: identified by tags, 3 tracks; decision" in out
    assert "held by 2 of its 3 tracks" in out
    assert main(["--config", str(config_file), "show", str(root / "Hits")]) == 0
    assert "each track keeps its own genre (various_artists)" in capsys.readouterr().out


def test_list_and_stats_know_albums(by_album, capsys):
    root, config_file, _ = by_album
    config = ["--config", str(config_file)]
    assert main([*config, "list", "--albums"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    suite = next(line for line in lines if line.startswith("Budapest Strings - Suite\t"))
    assert suite.endswith("\theld by 2 of its 3 tracks")
    assert any(line.startswith("Various Artists - Hits\t") and line.endswith(
        "each track keeps its own genre (various_artists)") for line in lines)
    assert main([*config, "list", "--albums", "--json", str(root / "Suite")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and json.loads(out[0])["album_key"] == (
        'tags:["budapest strings", "suite"]')
    assert main([*config, "stats"]) == 0
    assert "4 albums (2 of them compilations, each track its own genre)" in (
        capsys.readouterr().out)


def test_dry_run_proposes_the_album_decision(library, tmp_path):
    root = tmp_path / "Music"
    shutil.copytree(library / "Nocturnes", root / "Nocturnes")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    config = load_config(str(write_config(tmp_path / "tagger.toml", tmp_path / "state",
                                          tags={"min_confidence": 0.0})))
    assert config.tags.scope == "album"  # the default
    proposals: list[dict] = []
    with open_catalogue(config) as catalogue:
        summary = scan([str(root)], config, catalogue, dry_run=True,
                       on_proposal=proposals.append)
        assert catalogue.albums() == [] and catalogue.known_files() == {}
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert summary.albums == 1 and summary.tagged == 3
    assert len(proposals) == 3 and len({p["album"] for p in proposals}) == 1
    assert {tuple(p["proposed"]) for p in proposals} == {
        (display_genre(proposals[0]["album"], config.tags),)}


def test_a_track_joining_an_album_gets_its_genre(by_album):
    """A rescan that finds a new track of a known album pools it with the tracks classified
    before: their scores from the catalogue, or (here: one whose stored scores are gone)
    re-predicted from the embedding cache, without decoding them."""
    root, config_file, _ = by_album
    import sqlalchemy as sa

    with catalogue_of(config_file) as catalogue, catalogue.engine.begin() as conn:
        before = catalogue.album('tags:["budapest strings", "suite"]')
        conn.execute(sa.text(
            "UPDATE prediction_segments SET scores = NULL WHERE prediction_id IN (SELECT p.id "
            "FROM predictions p JOIN tracks t ON t.id = p.track_id WHERE t.path = :path)"),
            {"path": str(root / "Suite" / "01 hungarian.flac")})
    new = encode(NEXUIZ, root / "Suite" / "04 nexuiz.ogg")
    picard_tags(new, album="Suite", album_artist="Budapest Strings")
    at_rest(new)
    config = load_config(str(config_file))
    with open_catalogue(config) as catalogue:
        summary = scan([str(root)], config, catalogue, workers=1)
        after = catalogue.album('tags:["budapest strings", "suite"]')
    assert summary.classified == 1 and summary.albums == 1
    assert (after.members, after.voters, after.segment_count) == (4, 4, 40)
    assert after.genre == before.genre  # its two classical tracks outvote the others
    assert tags.read_genres(new) == [display_genre(after.genre, config.tags)]
    assert genres_of(root / "Suite")["02 tchaikovsky.mp3"] == ["Ballet"]


def test_retag_in_album_scope_decides_the_albums(library, tmp_path):
    """``retag`` decided each track alone whatever tags.scope said: in album scope it decides
    the albums from the cache as a scan does, over the genres tagger wrote per track."""
    root = tmp_path / "Music"
    shutil.copytree(library / "Nocturnes", root / "Nocturnes")  # copy2: at rest
    state = tmp_path / "state"
    by_track = write_config(tmp_path / "track.toml", state,
                            tags={"scope": "track", "min_confidence": 0.0})
    assert main(["scan", "--config", str(by_track), str(root)]) == 0
    assert len({tuple(g) for g in genres_of(root).values()}) > 1
    by_album = write_config(tmp_path / "album.toml", state,
                            tags={"scope": "album", "min_confidence": 0.0})
    assert main(["retag", "--config", str(by_album)]) == 0
    after = genres_of(root)
    assert len({tuple(g) for g in after.values()}) == 1
    with catalogue_of(by_album) as catalogue:
        album = catalogue.album(f"mbid:{MBID}")
        assert album is not None and (album.members, album.written) == (3, 3)
        written = display_genre(album.genre, load_config(str(by_album)).tags)
        assert set(map(tuple, after.values())) == {(written,)}
