"""A genre the user types (``tagger set-genre``, the review page's form) is written as typed, on
a real file of every format, read back with mutagen (issue #24): never read as an ID3v1 genre
number (``17``, ``(4)Eurodisco``), except where an ID3 tag would, and there refused rather than
changed; NUL refused rather than cut short; NFC and NFD spellings one label.

The files are catalogued without the model (``mark_pending``: a correction needs a catalogued
track, not a prediction), so these tests run in seconds.
"""

from __future__ import annotations

import os
import shutil
import unicodedata
from pathlib import Path

import mutagen.oggvorbis
import pytest
from helpers import tagfiles
from helpers.rawtags import raw_field
from mutagen.id3 import ID3, TCON

from tagger.cli import main
from tagger.config import Config
from tagger.library import tags
from tagger.library.catalogue import Catalogue
from tagger.library.corrections import CorrectionRefused, Refusal, apply_correction
from tagger.library.genres import normalise_genres
from tagger.results import CorrectionAction

ID3_FORMATS = ("mp3", "wav", "aiff")
FAMILY = {**tagfiles.FAMILY, "aac": "mp4"}  # conftest's name for AAC in .m4a


def raw_genres(path: Path, fmt: str) -> tuple[str, ...] | None:
    """The genre field's values as stored, read with mutagen (not through tagger)."""
    family = FAMILY[fmt]
    return raw_field(path, {"id3": "mp3", "vorbis": "ogg", "mp4": "m4a", "asf": "wma"}[family],
                     tagfiles.GENRE_FIELD[family])


@pytest.fixture
def library(tmp_path, format_files, monkeypatch):
    """A copy of the real clip in every format, no genre, catalogued (no prediction)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("TAGGER_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "Music"
    root.mkdir()
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    files = {}
    with Catalogue(db) as catalogue:
        for fmt, source in format_files.items():
            path = root / f"{fmt}{source.suffix}"
            shutil.copy(source, path)
            path.chmod(0o644)
            tags.write_genres(path, [], None)
            os.utime(path, (path.stat().st_atime, path.stat().st_mtime - 3600))  # at rest
            st = path.stat()
            catalogue.mark_pending(str(path), st.st_size, st.st_mtime_ns)
            files[fmt] = path
    return {"root": root, "db": db, "files": files}


def set_genre(library, path: Path, genre: str) -> int:
    return main(["set-genre", "--db", library["db"], str(path), genre])


@pytest.mark.parametrize("typed", ["17", "(4)Eurodisco", "0", "RX"])
def test_a_typed_number_is_the_genre_typed_or_refused_on_id3(library, capsys, caplog, typed):
    """``17`` became Rock, even on Ogg, and ``(4)Eurodisco`` Disco. Now Vorbis, MP4 and ASF
    hold what was typed; an ID3 tag, which would read it back as an ID3v1 genre, is left as
    it was, with one line saying why."""
    for fmt, path in library["files"].items():
        before = path.read_bytes()
        caplog.clear()
        code = set_genre(library, path, typed)
        if fmt in ID3_FORMATS:
            assert code == 1, fmt
            assert "ID3v1 genre number" in caplog.text and repr(typed) in caplog.text, fmt
            assert path.read_bytes() == before, fmt
            continue
        assert code == 0, (fmt, caplog.text)
        assert raw_genres(path, fmt) == (typed,), fmt
        assert tags.read_genres(path) == [typed], fmt
        with Catalogue(library["db"]) as catalogue:
            assert catalogue.correction_in_force(str(path)).genre == typed, fmt
            assert catalogue.track(str(path)).user_genres == (typed,), fmt
    capsys.readouterr()


def test_what_an_id3_tag_stores_in_legacy_form_is_still_read_as_its_genre(library):
    mp3 = library["files"]["mp3"]
    tag = ID3(mp3)
    tag.add(TCON(encoding=1, text=["(4)Eurodisco", "17"]))
    tag.save(mp3, v2_version=3, v23_sep=None)
    assert tags.read_genres(mp3) == ["Disco", "Eurodisco", "Rock"]
    ogg = library["files"]["ogg"]
    f = mutagen.oggvorbis.OggVorbis(ogg)
    f["GENRE"] = ["(4)Eurodisco", "17"]
    f.save()
    assert normalise_genres(tags.read_genres(ogg)) == ["(4)Eurodisco", "17"]


def test_a_genre_holding_nul_is_refused_not_cut_short(library, capsys):
    """NUL cut "Jazz\\0Rock" to Jazz: a usage error now (exit 2), nothing written; the
    library API (the review page's path) refuses it too."""
    for fmt, path in library["files"].items():
        before = path.read_bytes()
        assert set_genre(library, path, "Jazz\x00Rock") == 2, fmt
        err = capsys.readouterr().err.strip().splitlines()
        assert "NUL" in err[-1], err
        assert set_genre(library, path, "Jazz\x1b[31m") == 2, fmt
        assert "control character" in capsys.readouterr().err
        assert path.read_bytes() == before, fmt
    config = Config()
    path = library["files"]["ogg"]
    with Catalogue(library["db"]) as catalogue:
        for genre in ("Jazz\x00Rock", "\x00", "Acid\x7fJazz"):
            with pytest.raises(CorrectionRefused) as refused:
                apply_correction(config, catalogue, str(path), CorrectionAction.SET_GENRE,
                                 genre, source="review")
            assert refused.value.refusal is Refusal.NO_GENRE
        assert catalogue.corrections(str(path)) == []
    assert raw_genres(path, "ogg") is None


def test_nfc_and_nfd_spellings_are_one_label(library):
    nfd = unicodedata.normalize("NFD", "Música Popular Brasileira")
    nfc = unicodedata.normalize("NFC", nfd)
    assert nfd != nfc
    files = library["files"]
    for fmt, spelling in (("flac", nfd), ("aac", nfc), ("wma", nfd), ("mp3", nfd)):
        assert set_genre(library, files[fmt], spelling) == 0, fmt
        assert raw_genres(files[fmt], fmt) == (nfc,), fmt  # written NFC, whatever was typed
    ogg = files["ogg"]  # a tag written on a Mac, in NFD: the same genre
    f = mutagen.oggvorbis.OggVorbis(ogg)
    f["GENRE"] = [nfd, "música popular brasileira"]
    f.save()
    assert normalise_genres(tags.read_genres(ogg)) == [nfc]
    with Catalogue(library["db"]) as catalogue:
        genres = {c.genre for c in catalogue.corrections()}
        assert genres == {nfc}
        assert {r.genre for r in catalogue.labelled_tracks()} == {nfc}
