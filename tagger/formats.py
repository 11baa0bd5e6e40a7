"""The one registry of the audio files tagger handles: extension -> container -> tag format.

Everything that asks "is this a file for tagger?" reads this table: the extensions scanned
and watched by default (``library.extensions``), the names :func:`tagger.library.tags.supported`
accepts, and the containers :mod:`tagger.audio.identity` finds the audio payload of (and the
tag editors open). An extension is listed only when a file of it can be decoded, identified
*and* tagged; a file is recognised by its content, the extension only picks what is scanned.

Left out on purpose:

``.aac`` (raw ADTS AAC)
    a bare stream of AAC frames has no tag container, so the genre cannot be stored in the
    file (mutagen reads ADTS but cannot write it). Scanning it would classify every such file
    and then fail it; AAC in an MP4 container (``.m4a``) is supported.
"""

from __future__ import annotations

from dataclasses import dataclass

# containers: the kinds tagger.audio.containers.detect_format() returns
MP3, FLAC, OGG, MP4, WAV, AIFF, ASF = "mp3", "flac", "ogg", "mp4", "wav", "aiff", "asf"


@dataclass(frozen=True)
class AudioFormat:
    """One file extension tagger scans, its container and the tags written into it."""

    extension: str  # lower case, without the dot
    container: str  # one of the container kinds above
    tags: str  # the tag format the genre goes into


FORMATS: tuple[AudioFormat, ...] = (
    AudioFormat("mp3", MP3, "ID3v2"),
    AudioFormat("flac", FLAC, "Vorbis comment"),
    AudioFormat("ogg", OGG, "Vorbis comment"),  # Vorbis, Opus or FLAC in Ogg
    AudioFormat("oga", OGG, "Vorbis comment"),
    AudioFormat("opus", OGG, "Vorbis comment"),
    AudioFormat("m4a", MP4, "MP4"),
    AudioFormat("m4b", MP4, "MP4"),
    AudioFormat("mp4", MP4, "MP4"),
    AudioFormat("wav", WAV, "ID3v2"),
    AudioFormat("aif", AIFF, "ID3v2"),
    AudioFormat("aiff", AIFF, "ID3v2"),
    AudioFormat("aifc", AIFF, "ID3v2"),
    AudioFormat("wma", ASF, "ASF"),
    AudioFormat("asf", ASF, "ASF"),
)

#: every extension tagger scans by default, without the dot
EXTENSIONS: tuple[str, ...] = tuple(f.extension for f in FORMATS)
#: every container kind, in the order first listed
CONTAINERS: tuple[str, ...] = tuple(dict.fromkeys(f.container for f in FORMATS))

_BY_EXTENSION = {f.extension: f for f in FORMATS}


def by_extension(name: str) -> AudioFormat | None:
    """The registry entry for a file name or bare extension (``"x.MP3"``, ``".mp3"``, ``"mp3"``);
    None when tagger does not handle it."""
    return _BY_EXTENSION.get(name.rpartition(".")[2].lower())


def extensions_of(container: str) -> tuple[str, ...]:
    """The extensions (without the dot) whose files are in ``container``."""
    return tuple(f.extension for f in FORMATS if f.container == container)
