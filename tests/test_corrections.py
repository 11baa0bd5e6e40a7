"""`tagger set-genre` (tagger.library.corrections) end to end on a real scanned library: the
genre goes into the file through the journal, into ``corrections`` and ``labelled_tracks()``;
later scans respect it; ``--undo``, ``--not-music``, ``--accept``; ``tagger revert`` gives
back the user's original tags byte for byte; refusals and usage errors."""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest
from helpers.library import user_library
from mutagen.id3 import ID3

from tagger.cli import main
from tagger.config import Config, LibraryConfig
from tagger.library import tags
from tagger.library.catalogue import Catalogue
from tagger.library.corrections import (
    CorrectionRefused,
    Refusal,
    apply_correction,
    check_correctable,
)
from tagger.results import CorrectionAction, CorrectionSource, LabelSource, NotWritten

pytestmark = pytest.mark.slow  # the scans run the model on real audio


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, format_files):
    """Three real files scanned once: an MP3 with the user's own ID3v2.3 tag (Rock), an Ogg
    and a FLAC with no genre (tagger tags them)."""
    base = tmp_path_factory.mktemp("corrections")
    root = base / "Music"
    files = user_library(root, format_files, ("mp3", "ogg", "flac"), mp3_genre="Rock")
    originals = {name: path.read_bytes() for name, path in files.items()}
    db = f"sqlite:///{base / 'catalogue.sqlite'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(base / "state"))
        assert main(["scan", "--db", db, str(root)]) == 0
    return {"base": base, "root": root, "files": files, "db": db, "originals": originals,
            "scanned": {name: path.read_bytes() for name, path in files.items()}}


@pytest.fixture
def cli(scanned, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(scanned["base"] / "state"))
    monkeypatch.delenv("TAGGER_CONFIG", raising=False)
    monkeypatch.chdir(scanned["base"])

    def run(*argv: str) -> int:
        return main([argv[0], "--db", scanned["db"], *argv[1:]])

    return run


def catalogue(scanned) -> Catalogue:
    return Catalogue(scanned["db"])


def labels(scanned) -> dict[str, tuple[str, LabelSource]]:
    with catalogue(scanned) as cat:
        return {os.path.basename(r.path): (r.genre, r.source) for r in cat.labelled_tracks()}


def test_set_genre_writes_records_labels_and_revert_restores_the_bytes(scanned, cli, capsys):
    mp3 = scanned["files"]["mp3"]
    assert scanned["scanned"]["mp3"] == scanned["originals"]["mp3"]  # the user's genre kept
    assert labels(scanned)["mp3.mp3"] == ("Rock", LabelSource.TAG)
    assert cli("show", str(mp3)) == 0
    assert ("tags: artist Kevin MacLeod, album Jazz Sampler, genres Rock (set by you: Rock)"
            in capsys.readouterr().out)
    assert cli("set-genre", str(mp3), "acid jazz") == 0
    assert "genre Acid Jazz; Rock -> Acid Jazz" in capsys.readouterr().out
    assert tags.read_genres(mp3) == ["Acid Jazz"]  # the ID3v1 list's spelling
    assert ID3(mp3).version[:2] == (2, 3)  # the user's tag version is kept
    with catalogue(scanned) as cat:
        (correction,) = cat.corrections(str(mp3))
        record = cat.track(str(mp3))
        journal = cat.tag_changes([str(mp3)])
    assert (correction.action, correction.genre, correction.previous, correction.source) == (
        CorrectionAction.SET_GENRE, "Acid Jazz", ("Rock",), CorrectionSource.CLI)
    assert correction.predicted_genre == record.prediction.genre
    assert correction.model_sha256 == record.prediction.model.sha256
    assert [c.id for c in journal] == list(correction.tag_write_ids)
    assert [(c.field, c.old, c.new) for c in journal] == [("TCON", ("Rock",), ("Acid Jazz",))]
    assert (record.size, record.mtime_ns) == (mp3.stat().st_size, mp3.stat().st_mtime_ns)
    assert (record.file_genres, record.user_genres) == (("Acid Jazz",), ("Acid Jazz",))
    assert labels(scanned)["mp3.mp3"] == ("Acid Jazz", LabelSource.CORRECTION)
    with sqlite3.connect(scanned["db"].removeprefix("sqlite:///")) as conn:
        assert conn.execute("SELECT user_genre, label_source FROM genre_check WHERE path = ?",
                            (str(mp3),)).fetchone() == ("Acid Jazz", "correction")

    # a forced rescan keeps the correction: the file's genre is the user's
    assert cli("scan", "--force", str(scanned["root"])) == 0
    assert tags.read_genres(mp3) == ["Acid Jazz"]
    with catalogue(scanned) as cat:
        assert cat.track(str(mp3)).user_genres == ("Acid Jazz",)

    assert cli("revert", str(mp3)) == 0  # a corrected file: kept, unless asked
    assert tags.read_genres(mp3) == ["Acid Jazz"]
    assert cli("revert", "--corrections", str(mp3)) == 0
    assert mp3.read_bytes() == scanned["originals"]["mp3"]  # byte for byte


def test_a_correction_outranks_tagger_and_undo_brings_tagger_back(scanned, cli, capsys):
    ogg = scanned["files"]["ogg"]
    written = tags.read_genres(ogg)
    assert written and "ogg.ogg" not in labels(scanned)  # tagger's genre is no label
    assert cli("set-genre", str(ogg), "Chiptune") == 0
    assert tags.read_genres(ogg) == ["Chiptune"]
    assert labels(scanned)["ogg.ogg"] == ("Chiptune", LabelSource.CORRECTION)
    # even tags.write = always writes nothing over the user's correction
    config = scanned["base"] / "always.toml"
    config.write_text('[tags]\nwrite = "always"\nmin_confidence = 0.0\n', encoding="utf-8")
    assert main(["--config", str(config), "scan", "--db", scanned["db"], "--force",
                 str(ogg)]) == 0
    assert tags.read_genres(ogg) == ["Chiptune"]
    with catalogue(scanned) as cat:
        assert cat.track(str(ogg)).not_written is NotWritten.KEPT_USER_GENRE
    capsys.readouterr()

    assert cli("set-genre", "--undo", str(ogg)) == 0
    assert "last correction undone; Chiptune -> " in capsys.readouterr().out
    assert tags.read_genres(ogg) == written
    assert "ogg.ogg" not in labels(scanned)
    with catalogue(scanned) as cat:
        assert [c.action for c in cat.corrections(str(ogg))] == [CorrectionAction.SET_GENRE,
                                                                   CorrectionAction.UNDO]
        assert cat.correction_in_force(str(ogg)) is None
        assert cat.track(str(ogg)).user_genres == ()
    assert cli("set-genre", "--undo", str(ogg)) == 1  # nothing left to undo


def test_not_music_removes_only_taggers_genre_and_scans_leave_it_empty(scanned, cli):
    ogg, mp3 = scanned["files"]["ogg"], scanned["files"]["mp3"]
    assert tags.read_genres(ogg)  # tagger's
    assert cli("set-genre", "--not-music", str(ogg)) == 0
    assert tags.read_genres(ogg) == []
    assert cli("set-genre", "--not-music", str(mp3)) == 0  # the user's Rock stays
    assert tags.read_genres(mp3) == ["Rock"]
    assert "ogg.ogg" not in labels(scanned) and "mp3.mp3" not in labels(scanned)
    assert cli("scan", "--force", str(scanned["root"])) == 0
    assert tags.read_genres(ogg) == []
    with catalogue(scanned) as cat:
        assert cat.track(str(ogg)).not_written is NotWritten.NOT_MUSIC
    assert cli("set-genre", "--undo", str(mp3)) == 0
    assert labels(scanned)["mp3.mp3"] == ("Rock", LabelSource.TAG)
    assert cli("set-genre", "--undo", str(ogg)) == 0  # tagger's genre comes back
    assert tags.read_genres(ogg)


def test_accept_keeps_the_prediction_as_the_label(scanned, cli):
    flac = scanned["files"]["flac"]
    before = flac.read_bytes()
    with catalogue(scanned) as cat:
        predicted = cat.track(str(flac)).prediction.genre
    assert cli("set-genre", "--accept", str(flac)) == 0
    assert flac.read_bytes() == before  # the file says it already
    genre, source = labels(scanned)["flac.flac"]
    assert (genre.casefold(), source) == (predicted.casefold(), LabelSource.CORRECTION)
    assert cli("set-genre", "--accept", str(flac), "not-the-prediction") == 1


def test_refusals_and_usage_errors(scanned, cli, caplog, tmp_path):
    ogg, root = scanned["files"]["ogg"], scanned["root"]
    stranger = root / "not-scanned.ogg"
    shutil.copy(ogg, stranger)
    try:
        assert cli("set-genre", str(stranger), "Jazz") == 1
        assert "not-scanned.ogg: not in the catalogue" in caplog.text
    finally:
        stranger.unlink()
    assert cli("set-genre", str(ogg)) == 2
    assert cli("set-genre", "--not-music", str(ogg), "Jazz") == 2
    assert cli("set-genre", "--not-music", "--undo", str(ogg)) == 2
    assert cli("set-genre", str(ogg), "   ") == 2
    # the catalogued path swapped for a symlink to a file outside: never written through
    outside = tmp_path / "outside.ogg"
    shutil.copy(ogg, outside)
    before = outside.read_bytes()
    saved = tmp_path / "saved.ogg"
    os.replace(ogg, saved)
    os.symlink(outside, ogg)
    try:
        caplog.clear()
        assert cli("set-genre", str(ogg), "Jazz") == 1
        assert "reached through a symlink" in caplog.text
        assert outside.read_bytes() == before
    finally:
        os.unlink(ogg)
        os.replace(saved, ogg)


def test_a_folder_corrects_every_track_below_it_and_revert_all_restores(scanned, cli):
    assert cli("set-genre", str(scanned["root"]), "Video Game Music") == 0
    for path in scanned["files"].values():
        assert tags.read_genres(path) == ["Video Game Music"]
    assert cli("revert", "--all", "--corrections") == 0
    for name, path in scanned["files"].items():
        if name == "mp3":  # the user's own tag, byte for byte
            assert path.read_bytes() == scanned["originals"]["mp3"]
        else:  # no genre, as before tagger's first scan
            assert tags.read_genres(path) == []


def test_library_roots_and_symlinked_folders(tmp_path, scanned):
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.ogg").write_bytes(b"x")
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    check_correctable(str(real / "a.ogg"), [str(real)])
    check_correctable(str(real / "a.ogg"), [])
    with pytest.raises(CorrectionRefused) as refused:
        check_correctable(str(tmp_path / "link" / "a.ogg"), [str(tmp_path)])
    assert refused.value.refusal is Refusal.SYMLINK
    check_correctable(str(tmp_path / "link" / "a.ogg"), [str(tmp_path / "link")])  # a root
    with pytest.raises(CorrectionRefused) as refused:
        check_correctable(str(real / "a.ogg"), [str(tmp_path / "elsewhere")])
    assert refused.value.refusal is Refusal.OUTSIDE_LIBRARY
    # the library API: roots from the config, the review page's source
    config = Config(library=LibraryConfig(roots=(str(tmp_path / "elsewhere"),)))
    with catalogue(scanned) as cat, pytest.raises(CorrectionRefused) as refused:
        apply_correction(config, cat, str(scanned["files"]["flac"]), "set_genre", "Jazz",
                         source="review")
    assert refused.value.refusal is Refusal.OUTSIDE_LIBRARY


def test_completion_knows_set_genre(capsys):
    assert main(["completion", "bash"]) == 0
    out = capsys.readouterr().out
    assert "set-genre)" in out and "--not-music" in out and "--undo" in out
