"""One registry of the files tagger handles (tagger/formats.py), read by the scan, the tag
editors and the content identity alike, on real files made from a tests/data clip."""

from __future__ import annotations

import dataclasses

import pytest
from helpers.tagfiles import SOURCE, encode

from tagger import config, formats
from tagger.audio import identity
from tagger.config import Config
from tagger.errors import WriteError
from tagger.library import tags
from tagger.library.discover import is_audio_name, walk
from tagger.library.tags import TagChange

# extension -> ffmpeg arguments making a real file of it (the container from the extension
# unless named)
RECIPES = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "96k"],
    "flac": ["-c:a", "flac"],
    "ogg": ["-c:a", "libvorbis"],
    "oga": ["-c:a", "flac", "-f", "ogg"],
    "opus": ["-c:a", "libopus", "-b:a", "48k"],
    "m4a": ["-c:a", "aac", "-b:a", "96k"],
    "m4b": ["-c:a", "aac", "-b:a", "96k", "-f", "ipod"],
    "mp4": ["-c:a", "aac", "-b:a", "96k", "-f", "mp4"],
    "wav": ["-c:a", "pcm_s16le"],
    "aif": ["-c:a", "pcm_s16be", "-f", "aiff"],
    "aiff": ["-c:a", "pcm_s16be"],
    "aifc": ["-c:a", "pcm_s16be", "-f", "aiff"],
    "wma": ["-c:a", "wmav2", "-b:a", "96k"],
    "asf": ["-c:a", "wmav2", "-b:a", "96k", "-f", "asf"],
}


def test_the_scan_the_tags_and_the_identity_read_one_list():
    assert config.AUDIO_EXTENSIONS == formats.EXTENSIONS == Config().library.extensions
    assert tags.SUPPORTED_EXTENSIONS == {f".{ext}" for ext in formats.EXTENSIONS}
    assert set(formats.CONTAINERS) == {
        identity.MP3, identity.FLAC, identity.OGG, identity.MP4, identity.WAV, identity.AIFF,
        identity.ASF,
    }
    assert set(RECIPES) == set(formats.EXTENSIONS)  # every entry is tried on a real file below
    assert "aac" not in formats.EXTENSIONS  # raw ADTS: see below


@pytest.mark.parametrize("ext", formats.EXTENSIONS)
def test_every_scanned_extension_is_identified_and_tagged(ext, tmp_path):
    entry = formats.by_extension(ext)
    path = encode(SOURCE, tmp_path / f"Vibe Ace.{ext}", RECIPES[ext], seconds=3.0)
    assert [f.path for f in walk([str(tmp_path)], Config().library)] == [str(path)]
    assert tags.supported(path)
    with open(path, "rb") as f:
        assert identity.detect_format(f, str(path)) == entry.container
    before = identity.content_id(path)

    tags.write_genres(path, ["Jazz"], 0.5)
    assert tags.read_genres(path) == ["Jazz"]
    assert identity.content_id(path) == before  # the tag edit left the audio alone
    # the editor that opened it writes the registry's tag format
    with pytest.raises(WriteError, match=f"not a {entry.tags} field"):
        tags.restore(path, [TagChange(str(path), "NO-SUCH-FIELD", None, ("x",))])


def test_raw_adts_aac_is_not_scanned_because_it_cannot_hold_a_tag(tmp_path):
    library = tmp_path / "Music"
    library.mkdir()
    raw = encode(SOURCE, library / "raw.aac", ["-c:a", "aac", "-b:a", "96k", "-f", "adts"],
                 seconds=3.0)
    m4a = encode(SOURCE, library / "same.m4a", RECIPES["m4a"], seconds=3.0)
    assert raw.read_bytes()[:2] in (b"\xff\xf1", b"\xff\xf9")  # an ADTS frame header

    found = [f.path for f in walk([str(library)], Config().library)]
    assert found == [str(m4a)]
    # not even when a configuration (an old tagger.toml) still lists it
    listed = dataclasses.replace(Config().library, extensions=("aac", "m4a"))
    assert [f.path for f in walk([str(library)], listed)] == [str(m4a)]
    assert not is_audio_name("raw.aac", listed.extensions)  # the watcher's filter
    assert not tags.supported(raw) and formats.by_extension("raw.aac") is None

    # why: the file has no tag container to write the genre into
    before = raw.read_bytes()
    with pytest.raises(WriteError):
        tags.write_genres(raw, ["Jazz"], 0.5)
    assert raw.read_bytes() == before
