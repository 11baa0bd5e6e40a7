"""`tagger scan` keeps what learning needs: each file's artist, album and genres (normalised)
and the genres the user set, in the catalogue, from the one tag read per track; on real
files, with the real model."""

from __future__ import annotations

import sqlite3

import mutagen
import pytest
from helpers.library import at_rest, user_library

from tagger.cli import main
from tagger.library import tags
from tagger.library.catalogue import Catalogue
from tagger.results import LabelSource

pytestmark = pytest.mark.slow  # the scans run the model on real audio


@pytest.fixture
def library(tmp_path, format_files, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("TAGGER_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "Music"
    # the user's ID3v2.3 tag on the MP3: two genres joined with "/"
    files = user_library(root, format_files, ("mp3", "flac", "ogg"), mp3_genre="Rock/Pop")
    flac = mutagen.File(files["flac"])
    flac["GENRE"] = ["Jazz", "jazz"]
    flac["ALBUMARTIST"] = ["Someone Else"]
    flac.save()
    return root, files, f"sqlite:///{tmp_path / 'catalogue.sqlite'}"


def columns(db: str, path) -> tuple:
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        return conn.execute("SELECT artist, album, file_genres, user_genres FROM tracks "
                            "WHERE path = ?", (str(path),)).fetchone()


def test_scan_stores_artist_album_and_the_users_genres(library):
    root, files, db = library
    at_rest(root)
    assert main(["scan", "--db", db, str(root)]) == 0
    written = tags.read_genres(files["ogg"])
    assert written  # tagger tagged the untagged file
    assert columns(db, files["mp3"]) == ("Kevin MacLeod", "Jazz Sampler", '["Rock", "Pop"]',
                                         '["Rock", "Pop"]')
    assert columns(db, files["flac"]) == ("Someone Else", None, '["Jazz"]', '["Jazz"]')
    # the genre tagger wrote is in the file, and never the user's
    assert columns(db, files["ogg"]) == (None, None, f'["{written[0]}"]', None)
    with Catalogue(db) as catalogue:
        assert [(r.path, r.genre, r.genres, r.source) for r in catalogue.labelled_tracks()] == [
            (str(files["flac"]), "Jazz", ("Jazz",), LabelSource.TAG),
            (str(files["mp3"]), "Rock", ("Rock", "Pop"), LabelSource.TAG)]
        with catalogue.engine.connect() as conn:
            check = {r[0]: r[1:] for r in conn.exec_driver_sql(
                "SELECT path, user_genre, label_source, predicted FROM genre_check")}
    assert set(check) == {str(p) for p in files.values()}
    assert check[str(files["mp3"])][:2] == ("Rock", "tag")
    assert check[str(files["ogg"])][:2] == (None, None)

    # an unchanged file is not read again: its stored values stay; --force reads them anew
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE tracks SET artist = 'stale'")
    assert main(["scan", "--db", db, str(root)]) == 0
    assert columns(db, files["mp3"])[0] == "stale"
    assert main(["scan", "--db", db, "--force", str(root)]) == 0
    assert columns(db, files["mp3"])[0] == "Kevin MacLeod"
    assert columns(db, files["ogg"]) == (None, None, f'["{written[0]}"]', None)


def test_a_genre_tagger_replaced_stays_the_users(library, tmp_path):
    """tags.write = always overwrites the user's genre; it stays their label (the journal
    has it), also when a forced rescan reads tagger's own genre back from the file."""
    root, files, db = library
    config = tmp_path / "tagger.toml"
    config.write_text('[tags]\nwrite = "always"\nmin_confidence = 0.0\n', encoding="utf-8")
    for name in ("flac", "ogg"):
        files[name].unlink()
    at_rest(root)
    assert main(["--config", str(config), "scan", "--db", db, str(root)]) == 0
    now = tags.read_genres(files["mp3"])
    assert now != ["Rock/Pop"]
    assert columns(db, files["mp3"])[2:] == (f'["{now[0]}"]', '["Rock", "Pop"]')
    assert main(["--config", str(config), "scan", "--db", db, "--force", str(root)]) == 0
    assert columns(db, files["mp3"])[2:] == (f'["{now[0]}"]', '["Rock", "Pop"]')
    assert main(["revert", "--db", db, "--all"]) == 0
    assert tags.read_genres(files["mp3"]) == ["Rock/Pop"]
