"""What the album page shows: an album's decision (``albums``) and its tracks, read through
the catalogue's public methods. Albums are addressed by their key in URL-safe base64 (a key
holds a folder or tag text, which no URL path should carry as is)."""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass

from tagger.library.catalogue import AlbumRecord, TrackRecord


def album_token(key: str) -> str:
    """The album key as it goes into a URL: ``/album/<token>``."""
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii").rstrip("=")


def album_key(token: str) -> str | None:
    """The album key a token names, None when it names none."""
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


@dataclass(frozen=True)
class AlbumMember:
    id: int
    name: str
    record: TrackRecord


@dataclass(frozen=True)
class AlbumView:
    key: str
    decision: AlbumRecord | None  # None: no album decision recorded (tags.scope = track)
    members: tuple[AlbumMember, ...]

    @property
    def title(self) -> str:
        d = self.decision
        if d and d.album:
            return f"{d.album_artist} – {d.album}" if d.album_artist else d.album
        folder = d.folder if d and d.folder else self.key.partition(":")[2]
        return os.path.basename(folder) or folder

    @property
    def paths(self) -> list[str]:
        return [m.record.path for m in self.members if m.record.status != "missing"]


def album_view(catalogue, key: str) -> AlbumView | None:
    """The album ``key``'s decision and catalogued tracks, None when it has neither."""
    decision = catalogue.album(key)
    members = []
    for track in catalogue.album_members([key]):
        record = catalogue.track(track.path)
        if record is not None:
            members.append(AlbumMember(record.id, os.path.basename(track.path), record))
    if decision is None and not members:
        return None
    return AlbumView(key, decision, tuple(members))
