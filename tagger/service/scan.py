"""``tagger scan``: the one-shot part on top of an engine: walk the roots, skip what is
unchanged, mark what vanished, and hand the rest to the engine.

The engine (:mod:`tagger.service.engine`) runs worker processes that decode, hash and cut each
file into segments (:mod:`tagger.service.workers`; no model there) and batches their segments
through the classifier in this process; the one writer (:mod:`tagger.service.recorder`)
applies the tag policy (:mod:`tagger.service.policy`), writes the tags and commits the
catalogue.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import replace
from typing import Callable

from tagger.config import Config
from tagger.library import tags
from tagger.library.discover import FoundFile, WalkReport, walk
from tagger.library.journal import recover_interrupted_writes
from tagger.library.paths import printable_name
from tagger.results import IN_MOTION, FailureKind
from tagger.service.albums import decide_albums
from tagger.service.engine import Engine, ScanEngine, make_engine
from tagger.service.recorder import EngineHooks, NoProgress, ProgressSink, Summary

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- one-shot scan


def plan_scan(roots: list[str], config: Config, catalogue, *, force: bool,
              report: WalkReport, retry_failed: bool = False,
              left_failed: list[str] | None = None,
              redone: set[str] | None = None) -> tuple[list[FoundFile], list[str], int, int]:
    """Walk the roots and compare with the catalogue.

    Returns (files to process, paths gone missing, files seen, files unchanged). A file that
    failed before is processed again when it changed, when its failure was transient (the
    worker died, a timeout, a permission problem) or with ``retry_failed``; the unchanged
    failed files left alone are appended to ``left_failed`` when given. The unchanged files
    processed anyway (``force``, a failure retried) are added to ``redone`` when given. A root
    that is missing or suddenly empty while the catalogue knows files under it marks nothing
    missing.
    """
    files = [r for r in roots if os.path.isfile(r)]  # a file given by name is scanned as such
    roots = [r for r in roots if r not in files]
    found = list(walk(roots, config.library, report))
    for path in files:
        st = os.stat(path)
        found.append(FoundFile(os.path.abspath(path), st.st_size, st.st_mtime_ns))
    known = catalogue.known_files(roots) if catalogue is not None else {}
    if catalogue is not None and files:
        known.update(catalogue.file_states(os.path.abspath(p) for p in files))
    kinds: dict[str, FailureKind | None] | None = None
    todo, unchanged = [], 0
    for f in found:
        previous = known.get(f.path)
        same = (previous is not None and previous[2] in ("done", "not_music", "skipped", "failed")
                and previous[0] == f.size and previous[1] == f.mtime_ns)
        kind = None
        if same and previous[2] == "failed":
            if kinds is None:
                kinds = {x.path: x.kind for x in catalogue.failures()}
            kind = kinds.get(f.path)
        if same and kind not in IN_MOTION:  # read at rest before, or written by tagger
            f = replace(f, settled=True)
        if same and previous[2] == "failed" and not force:
            if retry_failed or kind is None or kind.transient:
                todo.append(f)
                if redone is not None:
                    redone.add(f.path)
                continue
            if left_failed is not None:
                left_failed.append(f.path)
        if same and not force:
            unchanged += 1
        else:
            todo.append(f)
            if same and redone is not None:
                redone.add(f.path)
    seen = {f.path for f in found} | {p for p, _ in report.skipped_links}
    seen |= {printable_name(p) for p in report.skipped_names}
    missing = []
    for root in roots:
        prefix = os.path.join(os.path.abspath(root), "")
        gone = [p for p, (_, _, status) in known.items()
                if p.startswith(prefix) and p not in seen and status != "missing"]
        if not gone:
            continue
        if not os.path.isdir(root) or not any(p.startswith(prefix) for p in seen):
            log.warning("%s is missing or empty but the catalogue knows %d files under it: "
                        "not marking them missing (unmounted?)", root, len(gone))
            continue
        missing.extend(gone)
    return todo, missing, len(found), unchanged


def record_skipped(catalogue, report: WalkReport, summary: Summary) -> None:
    """Give what a walk did not take a catalogue row with its reason: links leading outside
    the library and non-files are ``skipped``; names that are not valid UTF-8 are ``failed``
    (under a printable form of the name: they cannot be tagged)."""
    if not (report.skipped_links or report.skipped_names):
        return
    with catalogue.batch():
        for path, reason in report.skipped_links:
            catalogue.record_failure(path, reason, status="skipped")
            summary.skipped += 1
        for path in report.skipped_names:
            reason = "the file name is not valid UTF-8; rename it to have it tagged"
            catalogue.record_failure(printable_name(path), reason)
            summary.failures[reason] += 1
            summary.failure_kinds[FailureKind.UNREADABLE.value] += 1


def scan(roots: list[str], config: Config, catalogue, *, force: bool = False,
         dry_run: bool = False, workers: int = 0,
         engine: ScanEngine | None = None,
         should_stop: Callable[[], bool] = lambda: False, retry_failed: bool = False,
         progress: Callable[[int], ProgressSink] | None = None,
         on_proposal: Callable[[dict], None] | None = None,
         on_phase: Callable[[str], None] | None = None) -> Summary:
    """One pass over the library: classify what is new or changed, tag it, catalogue it.

    When ``should_stop()`` turns true, the batch being recorded is finished and committed,
    the new or changed files not classified yet stay pending for the next run (an unchanged
    one redone keeps its last result), and the summary says it was interrupted.
    ``progress(total)`` makes the :class:`ProgressSink` told of each finished file (default:
    none; the CLI passes its display); ``on_phase`` hears what is starting ("loading",
    "classifying", "albums") for a display; ``on_proposal``: see :class:`EngineHooks`.
    With ``tags.scope = "album"`` the tracks' tags wait until the engine has processed the
    run's files; then every album the run touched is decided and its tracks tagged
    (:mod:`tagger.service.albums`).
    """
    started = time.monotonic()
    report = WalkReport()
    left_failed: list[str] = []
    redone: set[str] = set()
    todo, missing, seen, unchanged = plan_scan(roots, config, catalogue, force=force,
                                               report=report, retry_failed=retry_failed,
                                               left_failed=left_failed, redone=redone)
    for problem in report.unreadable_dirs:
        log.warning("cannot read folder %s", problem)
    for name in report.skipped_names:
        log.warning("skipped a name that is not valid UTF-8: %r", name)
    for path, reason in report.skipped_links:
        log.warning("skipped %s: %s", path, reason)
    summary = Summary(seen=seen, unchanged=unchanged, left_failed=len(left_failed),
                      dry_run=dry_run)
    if not dry_run:
        record_skipped(catalogue, report, summary)
        recover_interrupted_writes(catalogue, roots)
        for directory in report.temp_dirs:
            tags.sweep_stale_temp_files(directory)
        if missing:
            with catalogue.batch():
                summary.missing = catalogue.mark_missing(missing)
        with catalogue.batch():
            # only what is new or changed: an unchanged file redone keeps its status until
            # its new result, so a run stopped half-way leaves no --force (nor
            # --retry-failed) behind for the next plain scan
            catalogue.mark_pending_many((f.path, f.size, f.mtime_ns, None) for f in todo
                                        if f.path not in redone)
    log.info("%d files found: %d to classify, %d unchanged, %d missing", seen, len(todo),
             unchanged, len(missing))
    if not todo:  # an unchanged library: no model to load, no workers to start
        summary.elapsed_s = time.monotonic() - started
        return summary
    own_engine = engine is None
    if own_engine:
        if on_phase:
            on_phase("loading")
        engine = make_engine(config, catalogue, workers=workers, dry_run=dry_run,
                             hooks=EngineHooks(on_proposal=on_proposal))
        engine.start()  # a pool that cannot start is one clear error, not one per file
    progress = (progress or NoProgress)(len(todo))
    engine.recorder.use_roots(roots)
    by_album = config.tags.scope == "album"
    try:
        with (engine.recorder.holding_albums() if by_album
              else contextlib.nullcontext()) as book:
            if on_phase:
                on_phase("classifying")
            engine.process(todo, summary, progress, should_stop)
            if book:  # every album the run touched; also after a stop: its tracks are held
                if on_phase:
                    on_phase("albums")
                decide_albums(engine.recorder, book, summary, model=engine.model_info,
                              classifier=engine.classifier if isinstance(engine, Engine)
                              else None)
    except KeyboardInterrupt:  # the held tracks stay pending: the next scan redoes them
        summary.interrupted = True
    finally:
        progress.close()
        if own_engine:
            engine.close()
        summary.elapsed_s = time.monotonic() - started
    return summary
