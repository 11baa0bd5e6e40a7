"""The content gate (issue #26): speech, an audiobook chapter and a whale song are never given a
genre by ``tagger scan`` (their files byte for byte as they were, status ``not_music`` with the
kind in the catalogue), while the music clips are tagged as they are with the gate off; what
``show``, ``list --not-music``, ``stats``, the review page and the album pass make of them;
the user's ``set-genre`` overrides the gate; ``retag`` does not run the gate's network."""

from __future__ import annotations

import json
import shutil
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers.audio import real_clip
from helpers.library import at_rest

from tagger.cli import main
from tagger.config import load_config
from tagger.library import tags
from tagger.library.catalogue import open_catalogue
from tagger.model.classify import Classifier
from tagger.model.content import content_of, group_scores
from tagger.review import create_app
from tagger.service.retag import retag

warnings.filterwarnings("ignore", message=".*httpx.*")
from starlette.testclient import TestClient  # noqa: E402

pytestmark = pytest.mark.slow  # the scans run both models on real audio

SPEECH = "198-209-0000.ogg"  # LibriSpeech: a woman reading Jane Austen, 14 s
WHALE = "glacier-bay-humpback.ogg"  # humpback whale song, 65 s
BOOK = "audiobook_chapter.m4b"  # espeak-ng reading a chapter, AAC in M4B with album tags
NOT_MUSIC = {SPEECH: "speech", WHALE: "animal", BOOK: "speech"}
MUSIC = ("Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg",
         "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg",
         "Kevin_MacLeod_-_Vibe_Ace.ogg", "nexuiz_brainsukker_excerpt.ogg",
         "sorohanro_-_solo-trumpet-06.ogg")
TOKEN = "test-token-0123456789"


def rows(db: Path, query: str, *params):
    with sqlite3.connect(db) as conn:
        return conn.execute(query, params).fetchall()


def scanned_library(base: Path, gate: bool) -> dict:
    """Every clip under ``base/lib`` (the speech beside two untagged music clips in one folder:
    one album, told by its folder), scanned with tags.min_confidence = 0: without the gate,
    every file gets a genre."""
    lib = base / "lib"
    folder_album = lib / "folder album"
    folder_album.mkdir(parents=True)
    places = {name: lib / name for name in (*MUSIC, WHALE, BOOK)}
    for name in (SPEECH, MUSIC[0], MUSIC[4]):  # no album tags: the folder is the album
        places[name] = folder_album / name
    for name, path in places.items():
        shutil.copy(real_clip(name), path)
        path.chmod(0o644)
    config_file = base / "tagger.toml"
    config_file.write_text(
        f'state_dir = "{base / "state"}"\ndatabase = "sqlite:///{base / "c.sqlite"}"\n'
        f'[library]\nroots = ["{lib}"]\n[tags]\nmin_confidence = 0.0\n'
        f'[content]\ngate = {"true" if gate else "false"}\n', encoding="utf-8")
    at_rest(lib)
    before = {name: path.read_bytes() for name, path in places.items()}
    assert main(["scan", "--config", str(config_file)]) == 0
    return {"base": base, "lib": lib, "db": base / "c.sqlite", "config_file": config_file,
            "config": load_config(str(config_file)), "places": places, "before": before}


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    return scanned_library(tmp_path_factory.mktemp("gate-on"), gate=True)


@pytest.fixture(scope="module")
def ungated(tmp_path_factory):
    return scanned_library(tmp_path_factory.mktemp("gate-off"), gate=False)


def cli(library, *argv: str) -> int:
    return main([argv[0], "--config", str(library["config_file"]), *argv[1:]])


def track_row(library, name: str):
    return rows(library["db"], "select status, content_kind, content_scores, not_written "
                "from tracks where path = ?", str(library["places"][name]))[0]


def test_speech_audiobook_and_whale_song_are_given_no_genre(gated, ungated):
    for name, kind in NOT_MUSIC.items():
        path = gated["places"][name]
        assert path.read_bytes() == gated["before"][name], name  # byte for byte
        status, content_kind, scores, not_written = track_row(gated, name)
        assert (status, content_kind, not_written) == ("not_music", kind, "not_music"), name
        scores = json.loads(scores)
        assert scores[kind] > 0.3 and scores[kind] > scores["music"], (name, scores)
        # the gate is what keeps them clean: without it each is given a genre
        assert tags.read_genres(ungated["places"][name]), name
        assert track_row(ungated, name)[:2] == ("done", None)


def test_every_music_clip_is_tagged_as_without_the_gate(gated, ungated):
    for name in MUSIC:
        status, content_kind, scores, _ = track_row(gated, name)
        assert (status, content_kind) == ("done", "music"), (name, scores)
        written = tags.read_genres(gated["places"][name])
        assert written, name
        assert written == tags.read_genres(ungated["places"][name]), name


def test_a_gated_track_does_not_vote_for_its_album(gated):
    folder = str(gated["places"][SPEECH].parent)
    (members, voters, genre), = rows(gated["db"], "select members, voters, genre from albums "
                                     "where album_key = ?", f"folder:{folder}")
    assert (members, voters) == (2, 2) and genre  # the two music clips, not the speech
    assert gated["places"][SPEECH].read_bytes() == gated["before"][SPEECH]


def test_show_list_and_stats_say_not_music(gated, capsys):
    assert cli(gated, "show", str(gated["places"][WHALE])) == 0
    out = capsys.readouterr().out
    assert "status: not_music" in out and "content: animal (AudioSet: music 0." in out
    assert cli(gated, "list", "--not-music") == 0
    listed = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert {Path(p).name: why.split(" (")[0] for p, why in listed.items()} == {
        name: f"not music: {kind}" for name, kind in NOT_MUSIC.items()}
    assert cli(gated, "list", "--ties", "--below-threshold", "--low", "1.0", "--json") == 0
    queued = {Path(json.loads(line)["path"]).name for line in capsys.readouterr().out.splitlines()}
    assert queued and not queued & set(NOT_MUSIC)  # in no genre queue
    assert cli(gated, "stats", "--json") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["not_music"] == 3 and sum(n for _, n in stats["genres"]) == len(MUSIC)


def test_the_review_page_shows_not_music(gated):
    config = gated["config"]
    with open_catalogue(config.database_url) as catalogue:
        app = create_app(config, catalogue, token=TOKEN, allowed_hosts=["127.0.0.1"])
        client = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
        assert client.get(f"/?token={TOKEN}").status_code == 303
        (track_id,), = rows(gated["db"], "select id from tracks where path = ?",
                            str(gated["places"][BOOK]))
        page = client.get(f"/track/{track_id}").text
        assert 'id="not-music-verdict">Not music: speech' in page
        assert 'id="status">not music: no genre</span>; heard as <span id="content">speech' in page
        queue = client.get("/queue?q=not_music&sort=path").text
        assert all(name in queue for name in NOT_MUSIC)
        low = client.get("/queue?q=low&sort=path").text
        assert not any(name in low for name in NOT_MUSIC)


def test_retag_keeps_the_verdicts_without_running_the_gate(gated):
    config = gated["config"]
    classifier = Classifier(config)

    def not_again(*args, **kwargs):
        raise AssertionError("retag ran the content gate's network")

    classifier.gate.run = not_again
    with open_catalogue(config.database_url) as catalogue:
        summary = retag(config, catalogue, classifier)
    assert summary.repredicted == len(MUSIC) + len(NOT_MUSIC) and not summary.need_scan
    for name, kind in NOT_MUSIC.items():
        assert track_row(gated, name)[:2] == ("not_music", kind)
        assert gated["places"][name].read_bytes() == gated["before"][name]


def test_set_genre_overrides_the_gate_and_undo_gives_it_back(gated, capsys):
    whale = str(gated["places"][WHALE])
    assert cli(gated, "set-genre", whale, "Ambient") == 0
    assert tags.read_genres(whale) == ["Ambient"]
    assert track_row(gated, WHALE)[::3] == ("done", None)
    assert cli(gated, "scan", "--force", whale) == 0  # the next scan keeps the user's word
    assert tags.read_genres(whale) == ["Ambient"]
    assert track_row(gated, WHALE)[:2] == ("done", "animal")
    assert cli(gated, "set-genre", "--undo", whale) == 0
    assert track_row(gated, WHALE)[::3] == ("not_music", "not_music")
    assert tags.read_genres(whale) == []
    assert cli(gated, "set-genre", "--not-music", str(gated["places"][MUSIC[3]])) == 0
    assert track_row(gated, MUSIC[3])[0] == "not_music"  # the user's word, the same status
    assert cli(gated, "set-genre", "--undo", str(gated["places"][MUSIC[3]])) == 0
    assert track_row(gated, MUSIC[3])[0] == "done"
    capsys.readouterr()


def test_the_rule_keeps_music_unless_another_group_is_heard_clearly():
    scores = np.zeros((2, 527))
    scores[:, 137] = 0.2  # Music, weak
    scores[:, 0] = 0.25  # Speech louder, but under the evidence needed
    assert content_of(scores).kind.value == "music"
    scores[:, 0] = 0.6
    verdict = content_of(scores)
    assert verdict.kind.value == "speech" and verdict.scores["speech"] == 0.6
    scores[:, 33] = 0.7  # Female singing: music's group
    assert content_of(scores).kind.value == "music"
    assert group_scores(np.eye(527)[500])["other"] == 1.0  # Silence: other sounds
