"""What the page says for the catalogue's codes: a track's status, why its genre was not
written (:class:`NotWritten`), why it failed (:class:`FailureKind`). One mapping, here."""

from __future__ import annotations

from tagger.library.catalogue import Queue
from tagger.results import AlbumIdentity, FailureKind, NotWritten, PerTrack

STATUS = {
    "pending": "waiting to be classified",
    "done": "done",
    "failed": "failed",
    "skipped": "skipped",
    "missing": "missing",
    "not_music": "not music",
}

NOT_WRITTEN = {
    NotWritten.BELOW_THRESHOLD: "genre not written, under the threshold",
    NotWritten.KEPT_USER_GENRE: "your genre kept",
    NotWritten.TIE_SKIPPED: "genre not written, a tie",
    NotWritten.POLICY_NEVER: "genre not written (tags.write = never)",
    NotWritten.OUTSIDE_LIBRARY: "genre not written, the file is outside the library",
    NotWritten.NOT_MUSIC: "no genre",
    NotWritten.NOT_ALLOWED: "genre not written, not in tags.allowed_genres",
}

FAILURE = {
    FailureKind.WORKER_DIED: "the decoder crashed on it",
    FailureKind.TIMEOUT: "decoding took too long",
    FailureKind.PERMISSION: "no permission to read or write it",
    FailureKind.UNREADABLE: "not readable audio",
    FailureKind.TAG_WRITE: "its tags could not be written",
    FailureKind.INTERNAL: "a bug in tagger",
    FailureKind.BUSY: "still being written; tried again later",
    FailureKind.CHANGED: "changed while being tagged; tried again later",
}


ALBUM_IDENTITY = {
    AlbumIdentity.MBID: "its MusicBrainz album id",
    AlbumIdentity.TAGS: "its album artist and album tags",
    AlbumIdentity.FOLDER: "its folder (no album tags)",
}

PER_TRACK = {
    PerTrack.VARIOUS_ARTISTS: "a compilation (Various Artists): each track keeps its own genre",
    PerTrack.COMPILATION_TAG: "a compilation (its compilation tag): each track keeps its own "
                              "genre",
    PerTrack.VOTES_DISAGREE: "its tracks disagree too much for one genre: each keeps its own",
}


def status_words(status: str, not_written: NotWritten | str | None = None,
                 failure_kind: FailureKind | str | None = None) -> str:
    """A status in words: "done", "done: your genre kept", "failed: not readable audio"."""
    words = STATUS.get(status, status)
    detail = None
    if not_written:
        detail = NOT_WRITTEN.get(NotWritten(not_written))
    elif failure_kind:
        detail = FAILURE.get(FailureKind(failure_kind))
    return f"{words}: {detail}" if detail else words


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """"1 tie", "2 ties"."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


#: each review queue's title
QUEUE_TITLES = {
    Queue.LOW: "Low confidence",
    Queue.TIES: "Ties",
    Queue.DISAGREE: "Your genre ≠ prediction",
    Queue.FAILED: "Failed",
    Queue.RECENT: "Recently tagged",
    Queue.NOT_MUSIC: "Not music",
    Queue.ALL: "All tracks",
}
