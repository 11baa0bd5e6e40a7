"""The classifier in a process of its own, for the daemon: started when files need it and
stopped when the daemon is idle, so that an idle ``tagger watch`` holds neither the model nor
torch (~150 MB that a process cannot give back once it imported it)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Sequence

from tagger.config import Config
from tagger.errors import ModelError
from tagger.service.lifetime import stop_pool
from tagger.service.workers import worker_context, worker_init

if TYPE_CHECKING:
    from tagger.audio.features import PreparedTrack
    from tagger.model.cache import TrackEmbeddings
    from tagger.model.calibration import Calibrator
    from tagger.model.classify import Classifier
    from tagger.results import ModelInfo, TrackResult

_loaded: Classifier | None = None  # in the model process: its classifier, built once


def _classifier(config: Config) -> Classifier:
    global _loaded
    if _loaded is None:
        from tagger.model.classify import Classifier

        _loaded = Classifier(config)
    return _loaded


def _describe(config: Config) -> tuple[ModelInfo, Calibrator | None]:
    classifier = _classifier(config)
    return classifier.info, classifier.head_calibrator


def _classify_embedded(config: Config, calibrator: Calibrator | None,
                       tracks: Sequence[PreparedTrack]
                       ) -> list[tuple[TrackResult, TrackEmbeddings]]:
    classifier = _classifier(config)
    classifier.calibrator = calibrator
    return classifier.classify_embedded(tracks)


class ModelProcess:
    """What the local engine asks of a :class:`~tagger.model.classify.Classifier` (``info``,
    ``calibrator``, ``head_calibrator``, :meth:`classify_embedded`), with the model loaded in
    a child process, forked from the decode workers' fork server: started here, again with
    the first call after :meth:`close`."""

    def __init__(self, config: Config):
        self.config = config
        self._pool: ProcessPoolExecutor | None = None
        self.calibrator: Calibrator | None = None  # set by the engine, used in the child
        self.info, self.head_calibrator = self._call(_describe)

    @property
    def running(self) -> bool:
        return self._pool is not None

    def start(self) -> None:
        """Start loading the model now, without waiting for it (the files decode meanwhile)."""
        if self._pool is None:
            self._executor().submit(_describe, self.config)

    def classify_embedded(self, tracks: Sequence[PreparedTrack]
                          ) -> list[tuple[TrackResult, TrackEmbeddings]]:
        if not tracks:
            return []
        return self._call(_classify_embedded, self.calibrator, tracks)

    def close(self) -> None:
        """Stop the model process (the next call starts another)."""
        if self._pool is not None:
            stop_pool(self._pool)
            self._pool = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=worker_context(),
                                             initializer=worker_init)
        return self._pool

    def _call(self, fn, *args):
        try:
            return self._executor().submit(fn, self.config, *args).result()
        except BrokenProcessPool:
            self.close()
            raise ModelError("the model process died (out of memory? its error is in the "
                             "log above)") from None
