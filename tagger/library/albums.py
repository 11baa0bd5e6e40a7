"""Which album a track belongs to, the way beets and Picard tell: the MusicBrainz album id when
its tags have one, else its album artist (the track artist when there is none) and album tags,
else its folder. The key is stored on the track row (``tracks.album_key``); tracks with the
same key are one album for ``tags.scope = "album"`` (tagger.service.albums)."""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import dataclass

from tagger.library.tags import TagInfo
from tagger.results import AlbumIdentity

#: album artists that say "a compilation" (compared case-insensitively)
VARIOUS_ARTISTS = frozenset({"various artists", "various", "va", "v.a.", "v/a", "v. a."})


@dataclass(frozen=True)
class AlbumId:
    """A track's album: ``key`` is the same for every track of the album."""

    key: str  # "mbid:<id>", 'tags:["<artist>", "<album>"]' or "folder:<folder>"
    identified_by: AlbumIdentity


def _folded(text: str) -> str:
    """Case, Unicode form and runs of blanks do not split an album."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def album_id(path: str, info: TagInfo | None) -> AlbumId:
    """The album of the file at ``path`` whose tags say ``info`` (None: unreadable tags)."""
    if info is not None and info.mb_album_id:
        return AlbumId(f"mbid:{info.mb_album_id.strip().lower()}", AlbumIdentity.MBID)
    if info is not None and info.album:
        # without an album artist the track artist tells two "Greatest Hits" apart
        artist = info.album_artist or info.artist or ""
        key = json.dumps([_folded(artist), _folded(info.album)], ensure_ascii=False)
        return AlbumId(f"tags:{key}", AlbumIdentity.TAGS)
    return AlbumId(f"folder:{os.path.dirname(os.path.abspath(path))}", AlbumIdentity.FOLDER)


def is_various_artists(name: str | None) -> bool:
    """Whether an album artist says "various artists" (a compilation)."""
    return bool(name) and _folded(name) in VARIOUS_ARTISTS


def album_columns(album: AlbumId, info: TagInfo) -> dict:
    """A track's album columns for :meth:`Catalogue.set_track_tags
    <tagger.library.catalogue.Catalogue.set_track_tags>`."""
    return dict(album_key=album.key, album_artist=info.album_artist,
                mb_album_id=info.mb_album_id, compilation=info.compilation)
