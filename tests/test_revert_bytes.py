"""``tagger revert`` gives a file back byte for byte, as the journal promises.

Real files (the clip in every format, tests/conftest.py) get the user's own tags the way
other taggers leave them: Vorbis comment names in mixed case (``Genre``, ``genre``) in some
order among other comments, with no padding after the comment (as encoders write Ogg) or
some; then tagger writes twice, journalled as a scan writes (the old values committed first),
and ``journal.revert`` puts them back. The bytes must be the original's: the comment list, its
order, the names' spelling, the vendor string, the padding, the pages.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mutagen
import pytest

from tagger.library import tags
from tagger.library.catalogue import Catalogue
from tagger.library.journal import revert

# the user's comments: mixed-case genre fields among others, in two orders
AMONG_OTHERS = [("TITLE", "Vibe Ace"), ("Genre", "Rock"), ("ARTIST", "Kevin MacLeod"),
                ("genre", "Pop"), ("DATE", "2011")]
GENRES_FIRST = [("genre", "Pop"), ("TITLE", "Vibe Ace"), ("ALBUM", "Jazz Sampler"),
                ("GENRE", "Rock"), ("Tagger_Genre_Confidence", "0.250")]


def no_padding(info) -> int:
    return 0


def with_comments(source: Path, dest: Path, comments: list[tuple[str, str]],
                  padded: bool) -> Path:
    shutil.copy(source, dest)
    audio = mutagen.File(dest)
    audio.tags.clear()
    audio.tags.extend(comments)
    audio.save(padding=None if padded else no_padding)
    assert list(mutagen.File(dest).tags) == comments
    return dest


def journalled_write(catalogue, path: Path, genres: list[str], confidence: float) -> None:
    """As a scan writes: the planned change committed to the journal, then the file."""
    planned = tags.write_genres(path, genres, confidence, dry_run=True)
    assert planned
    catalogue.record_tag_changes(str(path), planned)
    tags.write_genres(path, genres, confidence)


def write_twice_and_revert(path: Path, database: Path) -> None:
    with Catalogue(f"sqlite:///{database}") as catalogue:
        journalled_write(catalogue, path, ["Jazz"], 0.5)
        journalled_write(catalogue, path, ["Blues", "Funk", "Soul"], 0.75)  # more, and longer
        assert tags.read_genres(path) == ["Blues", "Funk", "Soul"]
        report = revert(catalogue, [str(path)])
    assert report.restored == 1 and not report.refused, report.refused


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("comments", [AMONG_OTHERS, GENRES_FIRST],
                         ids=["among_others", "genres_first"])
@pytest.mark.parametrize("fmt", ["flac", "ogg", "opus"])
def test_vorbis_revert_is_byte_for_byte(format_files, tmp_path, fmt, comments, padded):
    if fmt not in format_files:
        pytest.skip(f"no {fmt} encoder")
    source = format_files[fmt]
    path = with_comments(source, tmp_path / source.name, comments, padded)
    original = path.read_bytes()

    write_twice_and_revert(path, tmp_path / "catalogue.sqlite")

    assert list(mutagen.File(path).tags) == comments  # order, spelling, values
    assert path.read_bytes() == original


def test_a_vorbis_write_keeps_the_users_field_names_and_places(format_files, tmp_path):
    source = format_files["flac"]
    path = with_comments(source, tmp_path / source.name, AMONG_OTHERS, padded=True)
    others = [c for c in AMONG_OTHERS if c[0].upper() != "GENRE"]

    tags.write_genres(path, ["Jazz", "Blues"], 0.5)
    # the genre comments take the values in order, each where it was and spelled as it was;
    # the confidence is new, so it comes last
    assert list(mutagen.File(path).tags) == [
        ("TITLE", "Vibe Ace"), ("Genre", "Jazz"), ("ARTIST", "Kevin MacLeod"),
        ("genre", "Blues"), ("DATE", "2011"), ("TAGGER_GENRE_CONFIDENCE", "0.500")]

    tags.write_genres(path, ["Soul", "Funk", "Blues"], None)  # one more: after the last
    assert [c for c in mutagen.File(path).tags if c[0].upper() == "GENRE"] == [
        ("Genre", "Soul"), ("genre", "Funk"), ("genre", "Blues")]
    tags.write_genres(path, ["Swing"], None)  # fewer: the first stays, the others go
    assert list(mutagen.File(path).tags) == [
        *others[:1], ("Genre", "Swing"), *others[1:], ("TAGGER_GENRE_CONFIDENCE", "0.500")]


@pytest.mark.parametrize("fmt", ["mp3", "wav", "aiff"])
def test_id3_revert_gives_the_padding_back(format_files, tmp_path, fmt):
    """ID3 (MP3, WAV, AIFF): the tag's padding is put back as it was, so a tag whose frames
    are in the order mutagen writes them (ffmpeg's, here) is the original's byte for byte."""
    if fmt not in format_files:
        pytest.skip(f"no {fmt} encoder")
    path = tmp_path / format_files[fmt].name
    shutil.copy(format_files[fmt], path)
    audio = mutagen.File(path)
    if audio.tags is None:
        audio.add_tags()
    audio.tags.add(mutagen.id3.TCON(encoding=3, text=["Rock"]))
    audio.save(padding=no_padding)
    original = path.read_bytes()

    write_twice_and_revert(path, tmp_path / "catalogue.sqlite")

    assert tags.read_genres(path) == ["Rock"]
    assert path.read_bytes() == original


@pytest.mark.parametrize("fmt", ["aac", "alac"])
def test_mp4_revert_gives_the_padding_back(format_files, tmp_path, fmt):
    """MP4: the ``free`` atom beside the tag is put back as it was, so a file whose tag was
    saved the way mutagen saves it (with that atom) is the original byte for byte."""
    if fmt not in format_files:
        pytest.skip(f"no {fmt} encoder")
    path = tmp_path / format_files[fmt].name
    shutil.copy(format_files[fmt], path)
    audio = mutagen.File(path)
    audio["\xa9nam"], audio["\xa9gen"] = ["Vibe Ace"], ["Rock"]
    audio.save(padding=lambda info: 8)  # less than a write needs: mutagen adds its own
    original = path.read_bytes()

    write_twice_and_revert(path, tmp_path / "catalogue.sqlite")

    assert tags.read_genres(path) == ["Rock"]
    assert path.read_bytes() == original
