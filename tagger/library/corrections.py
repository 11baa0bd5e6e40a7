"""The user's corrections of a track's genre: into the file (through the journal) and into the
catalogue's ``corrections`` table, where ``tagger learn`` finds them as labels.

One function, :func:`apply_correction`, used by ``tagger set-genre`` and the review page:

``set_genre``
    the file's genre becomes the given genre, as typed (normalised: NFC, blanks trimmed,
    known genres spelled the ID3v1 way; not split: "R&B/Soul" is one genre; never read as an
    ID3v1 genre number: "17" is the genre "17"). Refused, nothing written, when it holds NUL
    or another control character, or when the file's tag is ID3 and would read it back as
    something else (``17``, ``(4)Eurodisco``: ID3v1 references there).
``accept``
    the prediction is right: the predicted genre is the label, and goes into the file if the
    file does not say it already (a genre of the user's own there is replaced: they accepted
    the prediction over it).
``not_music``
    speech, noise, a whale: no genre is right. Nothing of the user's is touched; a genre
    *tagger* wrote (the journal's last write, still in the file) is removed, since the user
    says it is wrong. The track is no training label, and later scans write no genre into it.
``undo``
    cancels the track's newest correction in force: the tag fields it wrote get their values
    back (as ``tagger revert`` would, those rows marked reverted), and the label is what it
    was before. Refused when the file's genre was changed since the correction wrote it.

Every write is journalled the way tagger's own writes are (``tag_writes``, recorded before
the file changes, with the old values), so ``tagger revert`` puts the user's original tags
back byte for byte. ``set_genre`` and ``not_music`` also remove tagger's confidence field
(``TAGGER_GENRE_CONFIDENCE``: the model's doubt, not about the user's genre), journalled too,
so an undo or a revert puts it back; ``accept`` leaves it beside the genre the model gave.
Only catalogued tracks inside the library roots are corrected, and never through a symlink
(the file, or a folder below the root): the path must be the file itself.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

from tagger.audio import identity
from tagger.errors import ReadError, TaggerError
from tagger.formats import AIFF, MP3, WAV
from tagger.library import tags
from tagger.library.genres import (
    display_genre,
    normalise_genres,
    same_genre,
    typed_genre_problem,
)
from tagger.library.journal import journalled_write, last_written, same_genres, user_genres
from tagger.library.motion import AtRest, FileState
from tagger.library.tags.id3 import tcon_genres
from tagger.results import CorrectionAction, CorrectionSource, NotWritten

log = logging.getLogger(__name__)


class Refusal(str, Enum):
    """Why a correction was refused (nothing written, nothing recorded)."""

    NOT_CATALOGUED = "not_catalogued"  # scan it first
    MISSING = "missing"  # the catalogued file is gone
    OUTSIDE_LIBRARY = "outside_library"  # not below a library root
    SYMLINK = "symlink"  # reached through a symlink
    NO_GENRE = "no_genre"  # set_genre without a usable genre
    NO_PREDICTION = "no_prediction"  # accept, but nothing was predicted
    NOTHING_TO_UNDO = "nothing_to_undo"
    EDITED_SINCE = "edited_since"  # undo, but the genre changed after the correction


class CorrectionRefused(TaggerError):
    """A correction that cannot be applied; ``refusal`` says why (a value, not the text)."""

    def __init__(self, message: str, path: str | None, refusal: Refusal):
        super().__init__(message, path)
        self.refusal = refusal


@dataclass(frozen=True)
class CorrectionResult:
    """What :func:`apply_correction` did."""

    path: str
    action: CorrectionAction
    genre: str | None  # the label recorded (None: not_music, undo)
    previous: tuple[str, ...]  # the file's genres before
    genres: tuple[str, ...]  # the file's genres now
    written: bool  # whether the file was changed
    correction_id: int


def correction_veto(catalogue, path: str,
                    genres: Sequence[str]) -> tuple[NotWritten, str] | None:
    """Whether the user's correction in force forbids writing ``genres`` into ``path`` (any
    policy, ``tags.write = always`` included): ``(why, detail)``, or None when it does not.
    Nothing goes into a file the user said is not music, nor over the genre they gave.
    The scan's Recorder asks this before a write, and so should anything else that writes
    predictions into files (retag)."""
    if catalogue is None:  # a dry run on a library never catalogued: no correction
        return None
    correction = catalogue.correction_in_force(path)
    if correction is None:
        return None
    if correction.action is CorrectionAction.NOT_MUSIC:
        return NotWritten.NOT_MUSIC, ""
    if same_genres([correction.genre], genres):
        return None
    return NotWritten.KEPT_USER_GENRE, f"corrected: {correction.genre}"


def _refuse(path: str, refusal: Refusal, message: str) -> CorrectionRefused:
    return CorrectionRefused(message, path, refusal)


def check_correctable(path: str, roots: Sequence[str]) -> None:
    """Raise :class:`CorrectionRefused` unless ``path`` lies below one of ``roots`` (without
    roots: its own folder) with no symlink on the way, the file included."""
    roots = [os.path.abspath(os.path.expanduser(r)) for r in roots] or [os.path.dirname(path)]
    for root in roots:
        prefix = root.rstrip(os.sep) + os.sep
        if path.startswith(prefix) or path == root:
            rest = os.path.relpath(path, root)
            if os.path.realpath(path) != os.path.join(os.path.realpath(root), rest):
                raise _refuse(path, Refusal.SYMLINK, "reached through a symlink; correct the "
                                                     "file at its real path (not followed)")
            return
    raise _refuse(path, Refusal.OUTSIDE_LIBRARY,
                  "not inside the library (library.roots); not corrected")


def _check_storable(path: str, genre: str) -> None:
    """Refuse a typed genre that the file's tag would read back as another: in an ID3 tag,
    ``17`` and ``(4)Eurodisco`` are ID3v1 genre references (tagger.library.tags.id3)."""
    try:
        with identity.open_regular(path) as f:
            container = identity.detect_format(f, path)
    except OSError:
        return  # the write says what is wrong with the file
    if container not in (MP3, WAV, AIFF):
        return
    back = tcon_genres([genre])
    if back != [genre]:
        raise _refuse(path, Refusal.NO_GENRE,
                      f"an ID3 tag reads {genre!r} as the ID3v1 genre number it names "
                      f"({'; '.join(back) or 'no genre'}); not written: type the genre's name")


def apply_correction(config, catalogue, path: str, action: CorrectionAction | str,
                     genre: str | None = None, *,
                     source: CorrectionSource | str) -> CorrectionResult:
    """Apply the user's correction of the catalogued track at ``path`` (see the module
    docstring for each action) and record it; ``source`` says who asked (cli, review).

    The caller holds the writer lock (``tagger.library.lock.WriterLock``), as for a scan.
    Raises :class:`CorrectionRefused` (nothing changed), or WriteError / ReadError when the
    file's tags cannot be read or written (the file is then as it was).
    """
    action = CorrectionAction(action)
    source = CorrectionSource(source)
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    record = catalogue.track(path)
    if record is None:
        raise _refuse(path, Refusal.NOT_CATALOGUED, "not in the catalogue (run 'tagger scan' "
                                                    "on it first)")
    if record.status == "missing" or not os.path.lexists(path):
        raise _refuse(path, Refusal.MISSING, "the file is gone")
    check_correctable(path, config.library.roots)
    prediction = record.prediction
    try:
        read_state = FileState.of(os.stat(path))
    except OSError as exc:
        raise ReadError(tags.describe_oserror(exc, reading=True), path) from None
    previous = tuple(tags.read_genres(path))
    # the file read here, at rest (its catalogued state, tagger's own last write, counts)
    at_rest = AtRest(config.library.settle_seconds, expected=read_state,
                     settled=None if record.size is None or record.mtime_ns is None
                     else FileState(record.size, record.mtime_ns))
    label: str | None = None
    target: Sequence[str] | None = None  # the genres the file should hold; None: leave it
    undone = None

    if action is CorrectionAction.SET_GENRE:
        problem = typed_genre_problem(genre or "")
        if problem:
            raise _refuse(path, Refusal.NO_GENRE, problem)
        named = normalise_genres([genre or ""], split=False)
        if not named:
            raise _refuse(path, Refusal.NO_GENRE, f"{genre!r} is not a genre")
        label = named[0]
        _check_storable(path, label)
        target = [label]
    elif action is CorrectionAction.ACCEPT:
        if prediction is None:
            raise _refuse(path, Refusal.NO_PREDICTION, "no prediction to accept")
        label = (normalise_genres([prediction.genre], split=False) or [prediction.genre])[0]
        if genre is not None and not same_genre(genre, label):
            raise _refuse(path, Refusal.NO_GENRE,
                          f"the prediction is {label!r}, not {genre!r}")
        if not any(same_genre(label, g) for g in previous):
            target = [display_genre(label, config.tags.genre_case)]
    elif action is CorrectionAction.NOT_MUSIC:
        if previous and not user_genres(catalogue, path, list(previous)):
            target = []  # tagger's own genre: wrong, says the user
    else:  # undo
        undone = catalogue.correction_in_force(path)
        if undone is None:
            raise _refuse(path, Refusal.NOTHING_TO_UNDO, "no correction to undo")

    written: list[int] = []
    check_correctable(path, config.library.roots)  # again, at the last moment before a write
    if undone is not None and undone.tag_write_ids:
        wanted = set(undone.tag_write_ids)
        changes = [c for c in catalogue.tag_changes([path]) if c.id in wanted]
        if changes:
            if not same_genres(previous, last_written(changes) or ()):
                raise _refuse(path, Refusal.EDITED_SINCE,
                              "its genre was changed after the correction; not undoing")
            tags.restore(path, changes, at_rest=at_rest)
            with catalogue.batch():
                catalogue.mark_reverted(c.id for c in changes)
            written = [c.id for c in changes]
    elif target is not None:
        written = journalled_write(catalogue, path, target, None, at_rest,
                                   drop_confidence=action is not CorrectionAction.ACCEPT)

    now = tuple(tags.read_genres(path)) if written else previous
    with catalogue.batch():
        if written:
            st = os.stat(path)
            catalogue.update_stat(path, st.st_size, st.st_mtime_ns)
        correction_id = catalogue.record_correction(
            path, action, label, source=source, previous=previous,
            predicted=prediction.genre if prediction else None,
            confidence=prediction.confidence if prediction else None,
            model_sha256=prediction.model.sha256 if prediction else None,
            tag_write_ids=() if undone is not None else written)
        # the label, else what the file says (the journal knows which of it is the user's)
        user = [label] if label else user_genres(catalogue, path, list(now))
        catalogue.set_track_tags(path, record.artist, record.album, normalise_genres(now),
                                 normalise_genres(user))
    log.info("%s: %s%s (%s)%s", path, action.value, f" {label}" if label else "",
             source.value, "; file written" if written else "")
    return CorrectionResult(path, action, label, previous, now, bool(written), correction_id)
