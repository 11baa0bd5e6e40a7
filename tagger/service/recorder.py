"""The one writer: a scan's counts, the progress seam, and the Recorder that applies the tag
policy, writes the tags (journal first) and commits the catalogue for every engine."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol, Sequence

from tagger.config import Config
from tagger.errors import ReadError, TaggerError, WriteError
from tagger.library import tags
from tagger.library.albums import album_columns, album_id
from tagger.library.genres import normalise_genres
from tagger.library.journal import genre_owners, journalled_write, revert
from tagger.library.motion import AtRest, FileInMotion, FileState
from tagger.library.paths import is_inside, outside_reason, real_roots
from tagger.library.tags import TagInfo
from tagger.results import (
    IN_MOTION,
    Content,
    FailureKind,
    NotWritten,
    TrackResult,
    Vote,
)
from tagger.service.albums import AlbumBook, AlbumMember, segment_scores
from tagger.service.plan import TagPlan, not_music_decision, plan_tags
from tagger.service.policy import TagDecision
from tagger.service.workers import WorkItem

if TYPE_CHECKING:  # torch loads only where a classifier is built
    from tagger.model.cache import EmbeddingCache, TrackEmbeddings
    from tagger.model.calibration import Calibrator

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- summary and progress seam


@dataclass
class Summary:
    seen: int = 0
    unchanged: int = 0
    classified: int = 0
    tagged: int = 0
    kept: int = 0  # classified, tags left alone by policy
    below_threshold: int = 0
    ties: int = 0
    moved: int = 0
    skipped: int = 0
    missing: int = 0
    failures: Counter = field(default_factory=Counter)
    failure_kinds: Counter = field(default_factory=Counter)  # FailureKind value -> files
    # failed in an earlier run, unchanged since, not retried now (failed for their content)
    left_failed: int = 0
    not_written: Counter = field(default_factory=Counter)  # NotWritten value -> files
    # tagger's own genre taken back: the current model's vote no longer reaches the policy
    withdrawn: int = 0
    # tags.scope = "album" (tagger.service.albums): albums decided, those whose tracks kept
    # their own decisions (compilations), tracks of earlier runs whose tags changed with
    # their album's decision, and the seconds the album pass took
    albums: int = 0
    albums_per_track: int = 0
    album_retagged: int = 0
    album_seconds: float = 0.0
    dry_run: bool = False
    interrupted: bool = False
    elapsed_s: float = 0.0

    @property
    def failed(self) -> int:
        """Files that failed in this run."""
        return sum(self.failures.values())

    @property
    def in_motion(self) -> int:
        """Files of this run left alone while another program was still writing them."""
        return sum(self.failure_kinds[kind.value] for kind in IN_MOTION)

    @property
    def still_failed(self) -> int:
        """Files under the roots whose last attempt failed: this run's and the ones left."""
        return self.failed + self.left_failed

    def as_dict(self) -> dict:
        """The ``scan --json`` summary."""
        return {
            "seen": self.seen, "unchanged": self.unchanged, "classified": self.classified,
            "tagged": self.tagged, "kept": self.kept, "below_threshold": self.below_threshold,
            "ties": self.ties, "moved": self.moved, "skipped": self.skipped,
            "missing": self.missing, "failed": self.failed, "still_failed": self.still_failed,
            "failures": dict(self.failures), "failure_kinds": dict(self.failure_kinds),
            "not_written": dict(self.not_written), "withdrawn": self.withdrawn,
            "albums": self.albums, "albums_per_track": self.albums_per_track,
            "album_retagged": self.album_retagged,
            "album_seconds": round(self.album_seconds, 3),
            "dry_run": self.dry_run,
            "interrupted": self.interrupted, "elapsed_s": round(self.elapsed_s, 3),
        }


class ProgressSink(Protocol):
    """What an engine tells of each finished file: a display (the CLI's), a bench's sampler,
    the daemon's batch countdown. The service itself never prints."""

    def advance(self, count: int = 1) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    """A progress sink that shows nothing: what ``scan()`` uses when the caller gives none."""

    def __init__(self, total: int = 0):
        self.total = total

    def advance(self, count: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- the writer


@dataclass(frozen=True)
class EngineHooks:
    """What a caller (the watch daemon, the CLI, a bench) may plug into an engine."""

    # a file that failed to decode: return True to take it back (it is not recorded now,
    # the caller retries it later), False to record the failure
    defer_failure: Callable[[WorkItem], bool] | None = None
    # called with each classified file's path once its result is committed
    recorded: Callable[[str], None] | None = None
    # in a dry run, each file's ``existing -> proposed`` as a dict (path, existing, proposed,
    # genre, confidence, tie, not_written, reason, error); the caller shows it (the CLI)
    on_proposal: Callable[[dict], None] | None = None
    tagged_log_level: int = logging.DEBUG  # how loudly each tag written is logged


@dataclass
class Applied:
    """What deciding and writing one file's tags did (:meth:`Recorder.record`,
    :meth:`Recorder.record_decision`)."""

    stat: tuple[int | None, int | None]  # the file's (size, mtime_ns) afterwards
    info: TagInfo | None  # its tags (None: unreadable)
    decision: TagDecision | None = None  # None: no decision (the tags could not be read)
    labelled: list[str] = field(default_factory=list)  # the genres the user set on it
    tag_error: str | None = None  # why its tags could not be read or written
    kind: FailureKind = FailureKind.TAG_WRITE


class Recorder:
    """The single writer: applies the tag policy, writes tags (journal first) and records
    every outcome in the catalogue and each classified track's embeddings in the embedding
    cache (:mod:`tagger.model.cache`: what ``learn`` and ``retag`` read instead of decoding
    again). Each engine (local pool, Ray cluster) feeds one. A dry run stores nothing."""

    def __init__(self, config: Config, catalogue, *, calibrator: Calibrator | None = None,
                 dry_run: bool = False, hooks: EngineHooks | None = None,
                 withdraw_unbacked: bool = False):
        # config: tags.min_confidence a number (policy.resolve_calibration); calibrator:
        # what maps the model's raw confidence to the scale of that threshold (None: raw)
        self.config = config
        self.calibrator = calibrator
        # retag: a genre tagger wrote that the current model's vote no longer backs (below
        # the threshold, a skipped tie) is taken back, the file's original values restored
        self.withdraw_unbacked = withdraw_unbacked
        self.catalogue = catalogue
        self.roots = real_roots(config.library.roots)  # tags are written only inside them
        self.dry_run = dry_run
        self.hooks = hooks or EngineHooks()
        self._cache: EmbeddingCache | None = None
        self._cache_failed = False
        self.albums: AlbumBook | None = None  # tracks held for their album's decision

    def keep_embeddings(self, item: WorkItem,
                        embeddings: Sequence[TrackEmbeddings] | None) -> None:
        """Store a classified track's embeddings (musicnn's, the content gate's) under its
        audio identity (its content id: moves and retags keep the rows). Only a cache: a
        failure is logged once, never fatal."""
        if (self.dry_run or not embeddings or not item.content_id
                or self._cache_failed):
            return
        from tagger.model.cache import EmbeddingCache, segment_settings

        try:
            if self._cache is None:
                self._cache = EmbeddingCache.for_config(self.config)
            for kept in embeddings:
                self._cache.put_many([(item.content_id, kept)], kept.backbone,
                                     kept.settings or segment_settings(self.config))
        except TaggerError as exc:
            self._cache_failed = True
            log.warning("%s; the scan goes on without it (retag and learn decode these "
                        "tracks again)", exc)

    def close(self) -> None:
        """Close the embedding cache (the catalogue is the caller's)."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def use_roots(self, roots: Iterable[str]) -> None:
        """The library roots: tags are written only to files inside them (symlinks resolved)."""
        self.roots = real_roots(roots)

    def moved_from(self, item: WorkItem) -> str | None:
        """A catalogued track with the same audio whose old path is gone: a rename."""
        if self.dry_run or not item.content_id:
            return None
        for old in self.catalogue.find_by_content_id(item.content_id):
            if old != item.path and not os.path.exists(old):
                return old
        return None

    def record_move(self, old: str, item: WorkItem, summary: Summary) -> None:
        with self.catalogue.batch():
            self.catalogue.move(old, item.path, size=item.size, mtime_ns=item.mtime_ns)
        summary.moved += 1
        log.info("moved: %s -> %s (no new inference)", old, item.path)

    def record_error(self, item: WorkItem, summary: Summary) -> None:
        """Record a file that could not be classified (unless the caller defers it)."""
        if self.hooks.defer_failure is not None and self.hooks.defer_failure(item):
            return
        if item.status == "skipped":
            summary.skipped += 1
        else:
            summary.failures[item.error] += 1
            summary.failure_kinds[item.kind.value] += 1
        level = (logging.INFO if item.status == "skipped" else
                 logging.WARNING if item.kind in IN_MOTION else logging.ERROR)
        log.log(level, "%s: %s", item.path, item.error)
        if self.dry_run:
            self._propose(path=item.path, error=f"{item.status}: {item.error}")
            return
        with self.catalogue.batch():
            self.catalogue.record_failure(item.path, item.error, size=item.size,
                                          mtime_ns=item.mtime_ns, status=item.status,
                                          format=item.format, content_id=item.content_id,
                                          kind=item.kind)

    def _propose(self, **proposal) -> None:
        if self.hooks.on_proposal is not None:
            self.hooks.on_proposal(proposal)

    def _count_decision(self, decision: TagDecision, summary: Summary) -> None:
        if decision.not_written is NotWritten.BELOW_THRESHOLD:
            summary.below_threshold += 1
        elif not decision.genres:
            summary.kept += 1
        if decision.not_written is not None:
            summary.not_written[decision.not_written.value] += 1

    def _dry_run_line(self, item: WorkItem, result: TrackResult, summary: Summary) -> None:
        summary.classified += 1
        summary.ties += result.vote.tie
        self._propose_decision(item, result.vote, None, summary, content=result.content)

    def _propose_decision(self, item: WorkItem, outcome: Vote, info: TagInfo | None,
                          summary: Summary, content: Content | None = None, **album) -> None:
        """A dry run's line for one file: the plan the real run would execute for
        ``outcome`` (``info``: the file's tags as read already; None: read them now;
        ``content``: the content gate's verdict)."""
        try:
            plan = self.plan(item, outcome, info, content)
        except TaggerError as exc:
            summary.failures[f"cannot read tags: {exc.message}"] += 1
            summary.failure_kinds[FailureKind.TAG_WRITE.value] += 1
            self._propose(path=item.path, error=f"cannot read tags: {exc.message}")
            return
        decision = plan.decision
        self._count_decision(decision, summary)
        summary.tagged += plan.writes
        summary.withdrawn += plan.withdraw
        reason = decision.reason
        if plan.withdraw:
            reason = f"tagger's genre would be taken back: {reason}"
        self._propose(path=item.path, existing=list(plan.info.genres),
                      proposed=list(decision.genres) if plan.writes else [],
                      genre=outcome.genre, confidence=round(outcome.confidence, 4),
                      tie=outcome.tie,
                      not_written=decision.not_written.value if decision.not_written else None,
                      reason=reason, error=None, **album)

    def plan(self, item: WorkItem, outcome: Vote, info: TagInfo | None = None,
             content: Content | None = None) -> TagPlan:
        """What happens to ``item``'s tags for ``outcome`` (:func:`~tagger.service.plan.
        plan_tags`), under this recorder's config, roots and withdrawal; what the real run
        writes and a dry run proposes."""
        at_rest = AtRest() if self.dry_run else self.at_rest(item)
        return plan_tags(item.path, outcome, self.config, self.catalogue, self.roots,
                         info=info, at_rest=at_rest, withdraw_unbacked=self.withdraw_unbacked,
                         content=content)

    def record(self, item: WorkItem, result: TrackResult, summary: Summary,
               embeddings: Sequence[TrackEmbeddings] | None = None) -> None:
        """Decide and write the tags of one classified file, then catalogue its result (and
        keep its ``embeddings``). While albums are held (:meth:`holding_albums`), the tags
        wait for the album's decision (:meth:`record_decision`)."""
        if self.albums is not None and self._hold(item, result, summary, embeddings):
            return
        if self.dry_run:
            self._dry_run_line(item, result, summary)
            return
        path, outcome = item.path, result.vote
        summary.classified += 1
        summary.ties += outcome.tie
        applied = self._apply(item, outcome, None, summary, result.content)
        with self.catalogue.batch():
            self.catalogue.record_result(
                result, size=applied.stat[0], mtime_ns=applied.stat[1],
                content_id=item.content_id, format=item.format,
                not_written=applied.decision.not_written if applied.decision else None)
            self._record_applied(path, applied)
        if result.ok:
            self.keep_embeddings(item, embeddings)
        self._report(path, outcome, applied, summary)
        if self.hooks.recorded is not None:
            self.hooks.recorded(path)

    # ---------------------------------------------------------------- albums

    @contextlib.contextmanager
    def holding_albums(self) -> Iterator[AlbumBook]:
        """Within the block, each classified track is catalogued (pending) and held in the
        :class:`AlbumBook` it yields, its tags written only when its album is decided
        (tagger.service.albums; ``tags.scope = "album"``)."""
        self.albums = AlbumBook()
        try:
            yield self.albums
        finally:
            self.albums = None

    def _hold(self, item: WorkItem, result: TrackResult, summary: Summary,
              embeddings: Sequence[TrackEmbeddings] | None) -> bool:
        """Catalogue a classified track, and hold it for its album's decision; False when its
        tags cannot be read, or it is not music (it is then decided alone: a track that is
        not music neither votes for its album nor gets the album's genre)."""
        if not result.ok or result.vote is None:
            return False
        if not_music_decision(self.catalogue, self.config, item.path,
                              result.content) is not None:
            return False
        try:
            info = tags.read_info(item.path)  # the one tag read: genres, artist, album
        except TaggerError:
            return False
        album = album_id(item.path, info)
        summary.classified += 1
        summary.ties += result.vote.tie
        if not self.dry_run:
            labelled = genre_owners(self.catalogue, item.path, info.genres)[1]
            with self.catalogue.batch():
                self.catalogue.record_result(result, size=item.size, mtime_ns=item.mtime_ns,
                                             content_id=item.content_id, format=item.format,
                                             awaiting_album=True)
                self.catalogue.set_track_tags(
                    item.path, info.artist, info.album, normalise_genres(info.genres),
                    normalise_genres(labelled), **album_columns(album, info))
            self.keep_embeddings(item, embeddings)
        self.albums.add(album, AlbumMember(item, info, result.vote, segment_scores(result),
                                           fresh=True))
        if self.hooks.recorded is not None:
            self.hooks.recorded(item.path)
        return True

    def record_decision(self, member: AlbumMember, outcome: Vote, summary: Summary,
                        **album) -> TagDecision | None:
        """Apply the tag policy to ``outcome`` (its album's vote, or its own) for one track of
        an album, write its tags (journal first) and catalogue what was done; a dry run
        proposes it (with the ``album`` facts). Returns the decision (None: the tags could
        not be read or written)."""
        item = member.item
        if self.dry_run:
            self._propose_decision(item, outcome, member.info, summary, **album)
            return None
        applied = self._apply(item, outcome, member.info, summary)
        with self.catalogue.batch():
            if not applied.tag_error:
                self.catalogue.record_tag_decision(
                    item.path, size=applied.stat[0], mtime_ns=applied.stat[1],
                    not_written=applied.decision.not_written)
            self._record_applied(item.path, applied)
        self._report(item.path, outcome, applied, summary)
        return None if applied.tag_error else applied.decision

    # ---------------------------------------------------------------- one file's tags

    def _apply(self, item: WorkItem, outcome: Vote, info: TagInfo | None,
               summary: Summary, content: Content | None = None) -> Applied:
        """Plan the tags of one file for ``outcome`` (:meth:`plan`) and execute the plan:
        the journalled write, or the withdrawal of an unbacked genre. ``info``: the file's
        tags as read already (None: read them now); ``content``: the content gate's verdict."""
        path = item.path
        applied = Applied((item.size, item.mtime_ns), info)
        try:
            plan = self.plan(item, outcome, info, content)
            applied.info, applied.labelled, applied.decision = (plan.info, plan.labelled,
                                                                plan.decision)
            if plan.decision.genres:
                applied.stat = self._write_tags(plan, summary, self.at_rest(item))
            elif plan.withdraw:
                withdrawn = self._withdraw(path, summary)
                if withdrawn:
                    applied.stat, applied.info = withdrawn
                    applied.labelled = genre_owners(self.catalogue, path,
                                                    applied.info.genres)[1]
            self._count_decision(plan.decision, summary)
        except FileInMotion as exc:  # not written: picked up again once it is at rest
            applied.tag_error, applied.kind = f"not tagged: {exc.message}", exc.kind
        except (ReadError, WriteError, OSError) as exc:
            applied.tag_error = f"tag write failed: {getattr(exc, 'message', None) or exc}"
            cause = exc if isinstance(exc, OSError) else exc.__cause__
            if isinstance(cause, OSError) and cause.errno in (errno.EACCES, errno.EPERM):
                applied.kind = FailureKind.PERMISSION
        return applied

    def _record_applied(self, path: str, applied: Applied) -> None:
        """The catalogue's side of :meth:`_apply` (inside the caller's batch): the file's tags
        and album as they are now, or the failure."""
        info, decision = applied.info, applied.decision
        if info is not None:
            held = decision.genres if decision and decision.genres and not applied.tag_error \
                else info.genres
            self.catalogue.set_track_tags(
                path, info.artist, info.album, normalise_genres(held),
                normalise_genres(applied.labelled), **album_columns(album_id(path, info), info))
        if applied.tag_error:
            self.catalogue.record_failure(path, applied.tag_error, size=applied.stat[0],
                                          mtime_ns=applied.stat[1], kind=applied.kind)

    def _report(self, path: str, outcome: Vote, applied: Applied, summary: Summary) -> None:
        """Count a failed write, and log what became of the file's tags."""
        tag_error, decision = applied.tag_error, applied.decision
        if tag_error:
            summary.failures[tag_error] += 1
            summary.failure_kinds[applied.kind.value] += 1
            log.log(logging.WARNING if applied.kind in IN_MOTION else logging.ERROR, "%s: %s",
                    path, tag_error)
        elif decision.genres:
            log.log(self.hooks.tagged_log_level, "%s: tagged %s (%.2f%s)", path,
                    "; ".join(decision.genres), outcome.confidence, ", tie" if outcome.tie else "")
        else:
            log.log(self.hooks.tagged_log_level, "%s: %s %.2f, not written: %s", path,
                    outcome.genre, outcome.confidence,
                    decision.reason or "the file already says it")

    def at_rest(self, item: WorkItem) -> AtRest:
        """What a write into ``item``'s file demands: the file its worker read and found at
        rest (or the catalogue recorded, for retag), unchanged since."""
        state = FileState(item.size, item.mtime_ns, item.ino)
        return AtRest(self.config.library.settle_seconds, expected=state, settled=state)

    def _withdraw(self, path: str, summary: Summary):
        """Restore the values tagger overwrote in ``path`` (the journal's revert, inside the
        roots only); (new stat, new tags) when it did, else None."""
        report = revert(self.catalogue, [path], roots=self.roots,
                        settle_seconds=self.config.library.settle_seconds)
        if not report.restored:
            for _, why in report.refused:
                log.info("%s: tagger's genre not taken back: %s", path, why)
            return None
        summary.withdrawn += 1
        log.log(self.hooks.tagged_log_level, "%s: took back tagger's genre", path)
        stat, info = report.after[path]
        # unreadable right after the restore: read again, so that the error is the file's
        return stat, info if info is not None else tags.read_info(path)

    def _write_tags(self, plan: TagPlan, summary: Summary, at_rest: AtRest) -> tuple[int, int]:
        """Execute a plan's write (:func:`~tagger.library.journal.journalled_write`: the
        journal row, then the file). Returns the file's (size, mtime_ns) afterwards."""
        path = plan.path
        if not is_inside(path, self.roots):  # checked again at the last moment
            raise WriteError(outside_reason(path), path)
        if journalled_write(self.catalogue, path, plan.decision.genres, plan.confidence,
                            at_rest, planned=plan.changes):
            summary.tagged += 1
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
