"""Album tags as MusicBrainz Picard writes them (album, album artist, artist, MusicBrainz album
id, compilation flag, genre), straight through mutagen: independent of tagger.library.tags,
whose reading of them the tests check."""

from __future__ import annotations

from pathlib import Path

import mutagen
import mutagen.aiff
import mutagen.asf
import mutagen.mp4
import mutagen.wave
from mutagen.id3 import ID3, TALB, TCMP, TCON, TPE1, TPE2, TXXX, ID3NoHeaderError

MP4_MBID = "----:com.apple.iTunes:MusicBrainz Album Id"


def picard_tags(path: Path | str, *, album: str | None = None, album_artist: str | None = None,
                artist: str | None = None, mbid: str | None = None,
                compilation: bool = False, genre: str | None = None) -> None:
    """Set the given album tags of ``path`` (MP3, WAV, AIFF, FLAC, Ogg, Opus, M4A, WMA) in
    the fields Picard uses; the fields left None are not touched."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".mp3", ".wav", ".aif", ".aiff"):
        _id3(path, suffix, album, album_artist, artist, mbid, compilation, genre)
    elif suffix == ".m4a":
        audio = mutagen.mp4.MP4(path)
        if audio.tags is None:
            audio.add_tags()
        values = {"\xa9alb": album, "aART": album_artist, "\xa9ART": artist, "\xa9gen": genre}
        for key, value in values.items():
            if value is not None:
                audio.tags[key] = [value]
        if mbid is not None:
            audio.tags[MP4_MBID] = [mutagen.mp4.MP4FreeForm(mbid.encode("utf-8"))]
        if compilation:
            audio.tags["cpil"] = True
        audio.save()
    elif suffix == ".wma":
        audio = mutagen.asf.ASF(path)
        values = {"WM/AlbumTitle": album, "WM/AlbumArtist": album_artist, "Author": artist,
                  "MusicBrainz/Album Id": mbid, "WM/Genre": genre}
        for key, value in values.items():
            if value is not None:
                audio.tags[key] = [mutagen.asf.ASFUnicodeAttribute(value)]
        if compilation:
            audio.tags["WM/IsCompilation"] = [mutagen.asf.ASFBoolAttribute(True)]
        audio.save()
    else:  # Vorbis comments: FLAC, Ogg Vorbis, Ogg Opus
        audio = mutagen.File(path)
        if audio.tags is None:
            audio.add_tags()
        values = {"ALBUM": album, "ALBUMARTIST": album_artist, "ARTIST": artist,
                  "MUSICBRAINZ_ALBUMID": mbid, "GENRE": genre,
                  "COMPILATION": "1" if compilation else None}
        for key, value in values.items():
            if value is not None:
                audio.tags[key] = [value]
        audio.save()


def _id3(path: Path, suffix: str, album, album_artist, artist, mbid, compilation, genre):
    if suffix == ".mp3":
        try:
            tags = ID3(path)
        except ID3NoHeaderError:
            tags = ID3()
        owner = None
    else:
        owner = (mutagen.wave.WAVE if suffix == ".wav" else mutagen.aiff.AIFF)(path)
        if owner.tags is None:
            owner.add_tags()
        tags = owner.tags
    frames = [(TALB, album), (TPE2, album_artist), (TPE1, artist), (TCON, genre)]
    for frame, value in frames:
        if value is not None:
            tags.add(frame(encoding=3, text=[value]))
    if mbid is not None:
        tags.add(TXXX(encoding=3, desc="MusicBrainz Album Id", text=[mbid]))
    if compilation:
        tags.add(TCMP(encoding=3, text=["1"]))
    if owner is None:
        tags.save(path)
    else:
        owner.save()
