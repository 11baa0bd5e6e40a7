"""``tagger retag``: every catalogued track predicted again under the current model, from the
embeddings its scan cached, with no decode, and the tag policy applied to the new vote.

The policy is the scan's (:class:`~tagger.service.recorder.Recorder`, journal first), held to
"if empty" whatever ``tags.write`` says: a genre tagger wrote itself (per the journal) may be
replaced, or taken back (the original restored) when the new vote falls below the threshold,
a file without a genre is filled, a genre the user set — or corrected with
``set-genre`` or the review page (``tagger.library.corrections.correction_veto``, which the
Recorder asks) — is never touched; those tracks get the new prediction in the catalogue.
A track whose file changed since its scan, or whose embeddings are not cached (scanned
before the cache existed, or a pooled head that needs what a scan does not keep), is listed
as needing a scan: retag never decodes. In album scope (``tags.scope = "album"``) the albums
of the re-predicted tracks are decided as a scan decides them (:mod:`tagger.service.albums`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from tagger.config import Config
from tagger.results import CorrectionAction, ModelInfo
from tagger.service.albums import decide_albums
from tagger.service.policy import use_calibration
from tagger.service.recorder import EngineHooks, Recorder, Summary
from tagger.service.workers import WorkItem

if TYPE_CHECKING:
    from tagger.model.cache import EmbeddingCache
    from tagger.model.classify import Classifier
    from tagger.results import TrackResult

log = logging.getLogger(__name__)

#: tracks re-predicted (and recorded) per round: the output layers run over all their segments
BATCH_TRACKS = 256


@dataclass
class RetagSummary:
    """What one retag did; ``tags`` holds the tag policy's counts (tagged, kept, ...). For
    people: :func:`tagger.cli.output.retag_lines`."""

    model: ModelInfo | None = None
    considered: int = 0  # catalogued tracks (classified before, file still there)
    repredicted: int = 0
    changed: int = 0  # new winning genre, other than the track's previous prediction's
    decoded: int = 0  # retag decodes nothing: always 0, printed so that nobody wonders
    corrected: int = 0  # with a correction in force (set-genre, review): file left alone
    missing: int = 0  # catalogued, but the file is not there (the next scan marks it)
    need_scan: list[str] = field(default_factory=list)  # no usable cached embeddings
    seconds: float = 0.0
    tags: Summary = field(default_factory=Summary)
    dry_run: bool = False
    interrupted: bool = False

    @property
    def rate(self) -> float:
        return self.repredicted / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {
            "model": dataclasses.asdict(self.model) if self.model else None,
            "considered": self.considered, "repredicted": self.repredicted,
            "changed": self.changed, "decoded": self.decoded, "corrected": self.corrected,
            "missing": self.missing, "need_scan": list(self.need_scan),
            "tracks_per_s": round(self.rate, 1), "elapsed_s": round(self.seconds, 3),
            "tagged": self.tags.tagged, "kept": self.tags.kept,
            "below_threshold": self.tags.below_threshold, "withdrawn": self.tags.withdrawn,
            "failed": self.tags.failed,
            "not_written": dict(self.tags.not_written), "dry_run": self.dry_run,
            "interrupted": self.interrupted,
        }


def corrected_paths(catalogue) -> set[str]:
    """Files with a correction in force (``set-genre``, the review page; not undone): their
    genre is the user's, never retagged."""
    return {c.path for c in catalogue.corrections()
            if c.action is not CorrectionAction.UNDO and c.undone_at is None}


def _selected(rows: Iterable[tuple], paths: Sequence[str] | None) -> list[tuple]:
    if not paths:
        return list(rows)
    files = {p for p in paths if not os.path.isdir(p)}
    folders = [os.path.join(p, "") for p in paths if os.path.isdir(p)]
    return [r for r in rows if r[0] in files or any(r[0].startswith(f) for f in folders)]


def retag_policy(config: Config) -> Config:
    """The config the tag policy runs under: ``tags.write = always`` is held to if_empty (a
    genre the user set is never replaced by a retag); ``never`` still writes nothing."""
    if config.tags.write != "always":
        return config
    return dataclasses.replace(config, tags=dataclasses.replace(config.tags, write="if_empty"))


def retag(config: Config, catalogue, classifier: Classifier, paths: Sequence[str] | None = None,
          *, dry_run: bool = False, on_proposal: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] = lambda: False) -> RetagSummary:
    """Re-predict the catalogued tracks (below ``paths``: files or folders; default all) from
    their cached embeddings under ``classifier``'s model, record the predictions and apply
    the tag policy (see the module). A dry run changes nothing and hands each track's
    ``existing -> proposed`` to ``on_proposal`` (see :class:`~tagger.service.recorder.EngineHooks`).
    """
    from tagger.model.cache import CACHE_FILE, EmbeddingCache, segment_settings

    started = time.perf_counter()
    summary = RetagSummary(model=classifier.info, dry_run=dry_run)
    summary.tags.dry_run = dry_run
    paths = [os.path.abspath(p) for p in paths] if paths else None
    rows = [r for r in _selected(catalogue.track_identities(), paths)
            if r[3] in ("done", "not_music")]
    corrected = corrected_paths(catalogue)
    # the calibrated confidence and tags.min_confidence = "auto" resolved, as scan has them
    config = use_calibration(config, catalogue, classifier)
    recorder = Recorder(retag_policy(config), catalogue, calibrator=classifier.calibrator,
                        dry_run=dry_run, hooks=EngineHooks(on_proposal=on_proposal),
                        withdraw_unbacked=True)
    # tags are written only inside the roots (symlinks resolved): the paths given, else the
    # library's roots, else each track's own folder
    recorder.use_roots(paths or config.library.roots
                       or sorted({os.path.dirname(r[0]) for r in rows}))
    todo: list[tuple[WorkItem, str]] = []
    for path, size, mtime_ns, _, content_id, fmt in rows:
        summary.corrected += path in corrected  # re-predicted; the Recorder writes nothing
        try:
            st = os.stat(path)
        except FileNotFoundError:
            summary.missing += 1
            continue
        except OSError as exc:
            summary.need_scan.append(path)
            log.warning("%s: %s", path, exc.strerror or exc)
            continue
        summary.considered += 1
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns) or not content_id:
            summary.need_scan.append(path)  # the cached embeddings may not be its audio now
            continue
        todo.append((WorkItem(path, size, mtime_ns, fmt, content_id, ino=st.st_ino),
                     content_id))
    settings = segment_settings(config)
    previous = catalogue.newest_genres(item.path for item, _ in todo)
    if todo and not (config.state_path / CACHE_FILE).exists():  # a dry run creates nothing
        summary.need_scan += [item.path for item, _ in todo]
        todo = []
    by_album = config.tags.scope == "album" and bool(todo)
    with EmbeddingCache.for_config(config) if todo else contextlib.nullcontext() as cache, \
            recorder.holding_albums() if by_album else contextlib.nullcontext() as book:
        for start in range(0, len(todo), BATCH_TRACKS):
            if should_stop():
                summary.interrupted = True
                break
            chunk = todo[start:start + BATCH_TRACKS]
            ready, uncached = repredict_cached(cache, classifier, settings, chunk)
            summary.need_scan += [item.path for item in uncached]
            for item, result in ready:
                summary.repredicted += 1
                summary.changed += previous.get(item.path) != result.vote.genre
                recorder.record(item, result, summary.tags)
        if book:  # tags.scope = album: the albums of the re-predicted tracks, as a scan does
            decide_albums(recorder, book, summary.tags, model=classifier.info,
                          classifier=classifier, leave=frozenset(summary.need_scan))
    summary.need_scan.sort()
    summary.seconds = time.perf_counter() - started
    log.info("retag: %d tracks re-predicted in %.1f s, %d need a scan", summary.repredicted,
             summary.seconds, len(summary.need_scan))
    return summary


def repredict_cached(cache: EmbeddingCache, classifier: Classifier, settings,
                     items: Sequence[tuple[WorkItem, str]]
                     ) -> tuple[list[tuple[WorkItem, TrackResult]], list[WorkItem]]:
    """Predict ``items`` (``(item, content id)`` pairs) again under ``classifier``'s model from
    the embeddings ``cache`` holds for them (``settings``: the segment settings of the scan
    that cached them, :func:`tagger.model.cache.segment_settings`), with no decode: each
    ``(item, result)`` re-predicted, and the items whose embeddings are not cached (or
    cannot feed this model: they need a scan). The content gate's verdict (and a head on
    the AudioSet features its input) comes from its cached embeddings too (none cached: the
    track is not gated now). Used by :func:`retag` and the album pass
    (tagger.service.albums)."""
    cached = cache.get_many([key for _, key in items], classifier.backbones.sha256, settings,
                            pooled=classifier.head.needs_pooled)
    # the content gate's rows: its verdict, the AudioSet genres of the genre map, and the
    # input of a head on the AudioSet features (which cannot do without them)
    gate = classifier.gate_cached(cache, list(cached))
    ready = [(item, cached[key]) for item, key in items
             if key in cached and classifier.can_use_cached(cached[key], gate.get(key))]
    results = classifier.classify_cached([(item.path, emb) for item, emb in ready], gate)
    done = {id(item) for item, _ in ready}
    return ([(item, result) for (item, _), result in zip(ready, results)],
            [item for item, _ in items if id(item) not in done])
