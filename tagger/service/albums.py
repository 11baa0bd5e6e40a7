"""``tags.scope = "album"``: one genre per album, decided from all its tracks together.

While a scan runs, the Recorder catalogues each classified track (its own prediction, as in
track scope; the track stays pending) and holds it in an :class:`AlbumBook` instead of writing
its tags (:meth:`~tagger.service.recorder.Recorder.holding_albums`). Once the engine has
processed the run's files, :func:`decide_albums` takes every album the run touched
(tagger.library.albums: MusicBrainz album id, else album artist + album, else the folder):

1. **Members**: the run's tracks of the album, and the catalogued ones classified earlier
   (status done, unchanged on disk). Those vote with the segment scores their prediction by
   the same model stored, else re-predicted from the embedding cache without decoding
   (:func:`tagger.service.retag.repredict_cached`, local engine only); one with neither is a
   member that does not vote. Earlier tracks outside the scan's roots vote, unwritten.
2. **The album's vote**: :func:`tagger.model.vote.album_vote`: the segment vote over the
   segments of all voting members together (with a trained head, its per-segment
   probabilities) picks the genre; its confidence is the median of the members' own
   (calibrated) confidences, the scale ``tags.min_confidence`` is set on.
3. **Compilations keep per-track decisions** (:class:`~tagger.results.PerTrack`): an album
   artist "Various Artists" (or "VA", ...), a compilation flag on any track, or tracks that
   strongly disagree: the album's genre is the own genre of at most a third
   (:data:`MIN_AGREEMENT`) of its voting tracks, three or more; for an album told by its
   folder only (no album tags: perhaps loose tracks), of at most half
   (:data:`FOLDER_MIN_AGREEMENT`), two or more. Each track is then decided on its own vote,
   exactly as in track scope.
4. **Tags**: every member gets the decision through
   :meth:`~tagger.service.recorder.Recorder.record_decision`, the one journalled write path:
   the policy applies track by track (under ``if_empty`` the user's own genre is kept, a
   correction in force wins, only files inside the roots are written). The album's decision
   goes into the catalogue's ``albums`` table; a dry run proposes it and stores nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from tagger.library.albums import AlbumId, is_various_artists
from tagger.library.catalogue import AlbumRecord
from tagger.library.paths import is_inside
from tagger.library.tags import TagInfo
from tagger.model.vote import album_vote, calibrated, vote
from tagger.results import AlbumIdentity, NotWritten, PerTrack, TrackResult, Vote
from tagger.service.policy import decide_tags
from tagger.service.workers import WorkItem

if TYPE_CHECKING:
    from tagger.model.calibration import Calibrator
    from tagger.model.classify import Classifier
    from tagger.results import ModelInfo
    from tagger.service.recorder import Recorder, Summary

log = logging.getLogger(__name__)

#: an album whose genre is the own genre of at most this share of its voting tracks (three or
#: more) is a compilation in all but name: its tracks keep their own decisions
MIN_AGREEMENT = 1 / 3
#: the same for an album told by its folder only (no album tags: perhaps a folder of loose
#: tracks), stricter: at most half, two voting tracks or more
FOLDER_MIN_AGREEMENT = 1 / 2

#: album-wide reasons the album's genre goes into no file (the others are each track's)
ALBUM_REASONS = frozenset({NotWritten.POLICY_NEVER, NotWritten.BELOW_THRESHOLD,
                           NotWritten.TIE_SKIPPED, NotWritten.NOT_ALLOWED})


@dataclass
class AlbumMember:
    """One track of an album, as its decision needs it."""

    item: WorkItem  # the file (its stat and inode: what a write expects); no segments held
    info: TagInfo | None  # its tags as this run read them (None: read when written)
    own: Vote | None  # its own vote (None: no scores under the current model)
    scores: np.ndarray | None  # (segments, genres): the genre scores its vote compared
    fresh: bool  # classified in this run (else catalogued by an earlier one)
    writable: bool = True  # inside the scan's roots


class AlbumBook:
    """The tracks a scan holds for their albums' decisions, by album key."""

    def __init__(self) -> None:
        self.members: dict[str, list[AlbumMember]] = {}
        self.ids: dict[str, AlbumId] = {}

    def add(self, album: AlbumId, member: AlbumMember) -> None:
        # the decoded segments are not kept: only the scores are needed from here on
        member.item = dataclasses.replace(member.item, track=None)
        self.ids[album.key] = album
        self.members.setdefault(album.key, []).append(member)

    def __len__(self) -> int:
        return len(self.members)

    @property
    def paths(self) -> set[str]:
        return {m.item.path for members in self.members.values() for m in members}


@dataclass(frozen=True)
class AlbumDecision:
    """What :func:`decide_album` made of an album's members."""

    album: AlbumId
    vote: Vote | None  # pooled over the voting members; None: none could vote
    members: int
    voters: int
    agreeing: int  # voters whose own vote is the album's genre
    per_track: PerTrack | None  # why its tracks keep their own decisions; None: one genre

    @property
    def compilation(self) -> bool:
        return self.per_track is not None


def segment_scores(result: TrackResult) -> np.ndarray | None:
    """(segments, genres) genre scores of a classified track, in the model's vocabulary order
    (what its vote compared); None when its segments kept none."""
    genres = result.model.vocabulary
    if not genres or not result.segments or not all(s.genre_scores for s in result.segments):
        return None
    return np.array([[s.genre_scores.get(g, 0.0) for g in genres] for s in result.segments],
                    dtype=np.float64)


def decide_album(album: AlbumId, members: Sequence[AlbumMember], genres: Sequence[str],
                 calibrator: Calibrator | None = None) -> AlbumDecision:
    """The album's pooled vote and whether its tracks keep their own decisions (see the
    module: compilations)."""
    voting = [m for m in members if m.scores is not None]
    pooled = album_vote(genres, [m.scores for m in voting], calibrator) if voting else None
    agreeing = sum(1 for m in voting
                   if pooled is not None and m.own is not None and m.own.genre == pooled.genre)
    per_track = None
    if any(m.info is not None and is_various_artists(m.info.album_artist) for m in members):
        per_track = PerTrack.VARIOUS_ARTISTS
    elif any(m.info is not None and m.info.compilation for m in members):
        per_track = PerTrack.COMPILATION_TAG
    elif _disagree(album, len(voting), agreeing):
        per_track = PerTrack.VOTES_DISAGREE
    return AlbumDecision(album, pooled, len(members), len(voting), agreeing, per_track)


def _disagree(album: AlbumId, voters: int, agreeing: int) -> bool:
    """Whether an album's tracks strongly disagree (see the module)."""
    if album.identified_by is AlbumIdentity.FOLDER:
        return voters >= 2 and agreeing <= FOLDER_MIN_AGREEMENT * voters
    return voters >= 3 and agreeing <= MIN_AGREEMENT * voters


# ---------------------------------------------------------------- the album pass


def decide_albums(recorder: Recorder, book: AlbumBook, summary: Summary, *,
                  model: ModelInfo, classifier: Classifier | None = None,
                  leave: frozenset[str] = frozenset()) -> None:
    """Decide every album in ``book`` and write its members' tags (see the module), votes
    calibrated with the recorder's calibration. The run's tracks are counted in ``summary``
    as a track-scope scan counts them; tracks of earlier runs whose tags changed are
    ``summary.album_retagged`` (their failures are failures of this run). The tracks at the
    paths in ``leave`` (retag: those that need a scan) are never written."""
    started = time.perf_counter()
    calibrator = recorder.calibrator
    earlier = _earlier_members(recorder, book, model, calibrator, classifier, leave)
    from tagger.service.recorder import Summary  # one class; imported here: no cycle

    others = Summary(dry_run=summary.dry_run)
    for key, fresh in book.members.items():
        album = book.ids[key]
        members = fresh + earlier.get(key, [])
        decision = decide_album(album, members, model.vocabulary, calibrator)
        written = 0
        for member in members:
            outcome = member.own if decision.per_track or decision.vote is None \
                else decision.vote
            if outcome is None or not member.writable:
                continue
            facts = dict(album=decision.vote.genre if decision.vote else None,
                         per_track=decision.per_track.value if decision.per_track else None)
            done = recorder.record_decision(member, outcome, summary if member.fresh
                                            else others, **facts)
            written += done is not None and (bool(done.genres) or done.not_written is None)
        summary.albums += 1
        summary.albums_per_track += decision.compilation
        _log_decision(decision, written)
        if not recorder.dry_run:
            recorder.catalogue.record_album(_album_record(decision, members, model, written,
                                                          recorder))
    summary.album_retagged += others.tagged
    summary.failures.update(others.failures)
    summary.failure_kinds.update(others.failure_kinds)
    summary.album_seconds += time.perf_counter() - started


def _album_record(decision: AlbumDecision, members: Sequence[AlbumMember], model: ModelInfo,
                  written: int, recorder: Recorder) -> AlbumRecord:
    outcome = decision.vote
    tagged = next((m.info for m in members if m.info is not None and m.info.album), None)
    not_written = None
    if outcome is not None and not decision.per_track:
        album_wide = decide_tags(outcome, [], recorder.config).not_written
        not_written = album_wide if album_wide in ALBUM_REASONS else None
    return AlbumRecord(
        album_key=decision.album.key, identified_by=decision.album.identified_by,
        album=tagged.album if tagged else None,
        album_artist=(tagged.album_artist or tagged.artist) if tagged else None,
        folder=os.path.dirname(members[0].item.path), model_sha256=model.sha256,
        genre=outcome.genre if outcome else None,
        confidence=outcome.confidence if outcome else None,
        tie=bool(outcome and outcome.tie), tied=outcome.tied if outcome else (),
        segment_count=len(outcome.segment_winners) if outcome else 0,
        members=decision.members, voters=decision.voters, agreeing=decision.agreeing,
        compilation=decision.compilation, per_track=decision.per_track,
        not_written=not_written, written=written)


def _log_decision(decision: AlbumDecision, written: int) -> None:
    key, outcome = decision.album.key, decision.vote
    if outcome is None:
        log.info("album %s: no track could vote; each keeps its own decision", key)
    elif decision.per_track:
        log.info("album %s: %s (%s): each of its %s keeps its own genre", key,
                 outcome.genre, decision.per_track.value.replace("_", " "),
                 _tracks(decision.members))
    else:
        log.info("album %s: %s %.2f%s (%s, %d of %d voting agree), %d hold it", key,
                 outcome.genre, outcome.confidence, ", tie" if outcome.tie else "",
                 _tracks(decision.members), decision.agreeing, decision.voters, written)


def _tracks(count: int) -> str:
    return f"{count} track" + ("" if count == 1 else "s")


def _earlier_members(recorder: Recorder, book: AlbumBook, model: ModelInfo,
                     calibrator: Calibrator | None, classifier: Classifier | None,
                     leave: frozenset[str] = frozenset()) -> dict[str, list[AlbumMember]]:
    """The catalogued tracks of the book's albums that this run did not classify: done,
    unchanged on disk; with the scores their prediction by ``model`` stored, else those
    re-predicted from the embedding cache (with ``classifier``), else none (no vote)."""
    if recorder.catalogue is None:  # a dry run before the first scan: no catalogue yet
        return {}
    held = book.paths
    rows = [r for r in recorder.catalogue.album_members(book.members)
            if r.path not in held and r.status == "done"]
    items: list[tuple[WorkItem, str]] = []
    for row in rows:
        try:
            st = os.stat(row.path)
        except OSError:
            continue  # gone: the next scan marks it
        if (st.st_size, st.st_mtime_ns) != (row.size, row.mtime_ns):
            continue  # changed since its scan: the next scan decides it again
        items.append((WorkItem(row.path, row.size, row.mtime_ns, row.format, row.content_id,
                               ino=st.st_ino), row.album_key))
    stored = recorder.catalogue.segment_scores([item.path for item, _ in items], model.sha256)
    genres = model.vocabulary
    found: dict[str, tuple[Vote, np.ndarray]] = {}
    for path, segments in stored.items():
        scores = np.array([[s.get(g, 0.0) for g in genres] for s in segments], dtype=np.float64)
        found[path] = (calibrated(vote(genres, scores), calibrator), scores)
    missing = [(item, item.content_id) for item, _ in items
               if item.path not in found and item.content_id]
    if missing and classifier is not None:
        found.update(_from_cache(recorder, classifier, missing))
    out: dict[str, list[AlbumMember]] = {}
    for item, key in items:
        own, scores = found.get(item.path, (None, None))
        out.setdefault(key, []).append(AlbumMember(
            item, None, own, scores, fresh=False,
            writable=item.path not in leave and is_inside(item.path, recorder.roots)))
    return out


def _from_cache(recorder: Recorder, classifier: Classifier,
                items: list[tuple[WorkItem, str]]) -> dict[str, tuple[Vote, np.ndarray]]:
    """Re-predict earlier members from the embedding cache, as ``tagger retag`` does."""
    from tagger.model.cache import CACHE_FILE, EmbeddingCache, segment_settings
    from tagger.service.retag import repredict_cached

    config = recorder.config
    if not (config.state_path / CACHE_FILE).exists():  # a dry run creates nothing
        return {}
    with EmbeddingCache.for_config(config) as cache:
        ready, _ = repredict_cached(cache, classifier, segment_settings(config), items)
    return {item.path: (result.vote, scores) for item, result in ready
            if (scores := segment_scores(result)) is not None}
