"""The local engine: a process pool of workers feeding this process's classifier, and
:func:`make_engine`, which picks it or the Ray engine."""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Callable, Iterable, Protocol

from tagger.config import Config
from tagger.library.discover import FoundFile
from tagger.results import FailureKind, ModelInfo
from tagger.service.lifetime import use_private_temp
from tagger.service.model_process import ModelProcess
from tagger.service.policy import use_calibration
from tagger.service.pool import DecodePool, start_fork_server, stop_fork_server
from tagger.service.recorder import EngineHooks, ProgressSink, Recorder, Summary
from tagger.service.workers import WorkItem, prepare_file

if TYPE_CHECKING:  # torch loads only where a classifier is built
    from tagger.model.classify import Classifier


# ---------------------------------------------------------------- the engine


class Engine:
    """Processes files end to end; the only object that writes tags and the catalogue."""

    def __init__(self, config: Config, catalogue, *,
                 classifier: Classifier | ModelProcess | None = None,
                 workers: int = 0, dry_run: bool = False, hooks: EngineHooks | None = None):
        self.config = config
        self.decode = DecodePool(config, workers)
        self.dry_run = dry_run
        if not dry_run:  # a dry run creates nothing, not even the state dir
            use_private_temp(config.state_path)  # before the fork server picks its socket dir
        if classifier is None:
            # The fork server loads and warms the decode stack (about 2 s on one core) while
            # the model loads here; starting it does not wait for it.
            start_fork_server()
            from tagger.model.classify import Classifier

            classifier = Classifier(config)
        self.classifier = classifier
        # the calibrated confidence and the resolved threshold: what the recorder compares
        self.recorder = Recorder(use_calibration(config, catalogue, classifier), catalogue,
                                 calibrator=classifier.calibrator, dry_run=dry_run,
                                 hooks=hooks)

    @property
    def workers(self) -> int:
        """How many decode worker processes."""
        return self.decode.workers

    @property
    def model_info(self) -> ModelInfo:
        """The model every prediction of this engine is recorded with."""
        return self.classifier.info

    def worker_pids(self) -> list[int]:
        """Process ids of the decode workers running now (none before the first file)."""
        return self.decode.worker_pids()

    def submit(self, fn: Callable, *args) -> Future:
        """Run ``fn(*args)`` in one of the decode worker processes."""
        return self.decode.submit(fn, *args)

    def start(self) -> None:
        """Start the worker processes now rather than with the first file."""
        self.decode.start()

    def release(self) -> None:
        """Stop the decode workers, their fork server and the model process (when the model
        runs in one: :class:`ModelProcess`); the next :meth:`process` starts them again.
        What an idle daemon does to give its memory back."""
        self.decode.close()
        if isinstance(self.classifier, ModelProcess):
            self.classifier.close()
        stop_fork_server()

    def close(self) -> None:
        self.decode.close()
        if isinstance(self.classifier, ModelProcess):
            self.classifier.close()
        self.recorder.close()

    def process(self, files: Iterable[FoundFile], summary: Summary,
                progress: ProgressSink | None = None,
                should_stop: Callable[[], bool] = lambda: False) -> Summary:
        """Classify, tag and catalogue ``files``; results are committed batch by batch.

        Once ``should_stop()`` is true, the batch being recorded is finished and the rest
        is left as the catalogue has it (pending for a new or changed file, marked so before
        it is processed; an unchanged one redone keeps its last result).
        """
        if isinstance(self.classifier, ModelProcess):
            self.classifier.start()  # the model loads while the first files decode
        ready: list[WorkItem] = []
        queued_segments = 0
        window = _Window(self.workers, self.config.model.batch_segments,
                         self.config.model.segments)
        decoded = self.decode.in_order(files, prepare_file, name=lambda found: found.path,
                                       died=_worker_failure, window=window.size,
                                       should_stop=should_stop)
        for _, item in decoded:
            if item.track is not None:
                moved_from = self.recorder.moved_from(item)
                if moved_from:
                    self.recorder.record_move(moved_from, item, summary)
                    self._advance(progress)
                    continue
                ready.append(item)
                queued_segments += len(item.track.patches)
                decoded.window = window.seen(len(item.track.patches))
            else:
                self.recorder.record_error(item, summary)
                self._advance(progress)
            if queued_segments >= self.config.model.batch_segments or not decoded.pending:
                self._finish_batch(ready, summary, progress)
                ready, queued_segments = [], 0
        if decoded.interrupted:
            # Files decoded but not classified, and those still decoding, stay pending in
            # the catalogue: the next run redoes them (decoding is the cheap part).
            summary.interrupted = True
            return summary
        self._finish_batch(ready, summary, progress)
        return summary

    def _advance(self, progress: ProgressSink | None, count: int = 1) -> None:
        if progress:
            progress.advance(count)

    def _finish_batch(self, items: list[WorkItem], summary: Summary,
                      progress: ProgressSink | None) -> None:
        if not items:
            return
        results = self.classifier.classify_embedded([i.track for i in items])
        for item, (result, embeddings) in zip(items, results):
            self.recorder.record(item, result, summary, embeddings)
        self._advance(progress, len(items))


class _Window:
    """How many files the engine keeps in flight (decoding, or decoded and waiting): enough
    to fill the next inference batch while the model runs this one, and one more per worker
    so that none waits; no more, since every decoded file waiting is held in the scanning
    process (with the content gate a full-length track carries its window at 32 kHz: 4.6 MB,
    bench/RESULTS.md). Short tracks have fewer segments, so a batch takes more of them: the
    window grows with the tracks seen, up to twice a batch of full tracks."""

    def __init__(self, workers: int, batch_segments: int, segments: int):
        self.workers, self.batch_segments = workers, batch_segments
        self.full_batch = -(-batch_segments // segments)  # tracks of a batch, full length
        self.tracks = self.segments = 0

    @property
    def size(self) -> int:
        if not self.tracks:
            return self.workers + self.full_batch
        batch = -(-self.batch_segments * self.tracks // self.segments)
        return self.workers + min(2 * self.full_batch, max(self.full_batch, batch))

    def seen(self, segments: int) -> int:
        """Count a decoded track of ``segments``; the window's size now."""
        self.tracks += 1
        self.segments += max(1, segments)
        return self.size


def _worker_failure(found: FoundFile, reason: str, kind: FailureKind) -> WorkItem:
    return WorkItem(found.path, found.size, found.mtime_ns, None, error=reason, kind=kind)


class ScanEngine(Protocol):
    """The seam ``scan`` and ``watch`` drive: the local pool (:class:`Engine`) or a cluster
    (:class:`tagger.service.cluster.RayEngine`). Each feeds its results to one Recorder."""

    recorder: Recorder  # given the calibration and threshold when built

    @property
    def model_info(self) -> ModelInfo: ...

    def start(self) -> None: ...

    def process(self, files: Iterable[FoundFile], summary: Summary,
                progress: ProgressSink | None = None,
                should_stop: Callable[[], bool] = lambda: False) -> Summary: ...

    def close(self) -> None: ...


def make_engine(config: Config, catalogue, *, workers: int = 0, dry_run: bool = False,
                hooks: EngineHooks | None = None,
                classifier: Classifier | ModelProcess | None = None) -> ScanEngine:
    """The engine ``cluster.engine`` selects: worker processes here, or a Ray cluster
    (``classifier`` and ``workers`` are the local engine's)."""
    if config.cluster.engine == "ray":
        from tagger.service.cluster import RayEngine

        return RayEngine(config, catalogue, dry_run=dry_run, hooks=hooks)
    return Engine(config, catalogue, classifier=classifier, workers=workers, dry_run=dry_run,
                  hooks=hooks)
