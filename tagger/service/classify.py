"""``tagger classify``: files classified by this process's model, decoded by worker processes.

The same split as a scan (:mod:`tagger.service.engine`), without the catalogue and the tags:
the decode workers (:mod:`tagger.service.pool`) cut each file into segments, and this process
batches them through the classifier. In worker processes a decoder that crashes on a hostile
file costs that file (retried once), not the run; and the decoders do not compete with the
model's streams for this process's interpreter lock, as threads here did (~10 % slower).
One file alone is decoded here, in a thread while the model loads: starting a fork server
and a worker for it would cost more than the file (and a crash costs the same one file).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Iterator, Sequence

from tagger.config import Config
from tagger.service.lifetime import use_private_temp
from tagger.service.pool import DecodePool, decode_in_workers, start_fork_server, worker_count

if TYPE_CHECKING:  # torch loads only where a classifier is built
    from tagger.model.classify import Classifier
    from tagger.results import TrackResult


def classify_files(config: Config, paths: Sequence[str], *, workers: int = 0,
                   classifier: Classifier | None = None,
                   decoders: DecodePool | None = None) -> Iterator[TrackResult]:
    """Results for ``paths``, in order; a file that cannot be read gets one with ``error``.

    The model loads here, before the first result is asked for (its errors are raised
    now), while the decode workers' fork server warms the decode stack; at most one worker
    per file, and none for a single file (decoded in this process). Writes nothing but the
    workers' sockets, under ``<state>/tmp``. A caller that classifies again and again passes
    its own ``decoders`` (kept open): fresh workers take a few files to reach their pace.
    """
    alone = decoders is None and len(paths) == 1
    if not alone:
        use_private_temp(config.state_path)  # before the fork server picks its socket dir
    decoding = _decode_meanwhile(config, paths[0]) if alone and classifier is None else None
    if classifier is None:
        if not alone:
            start_fork_server()
        from tagger.model.classify import Classifier

        classifier = Classifier(config)
    if alone:
        return _alone(classifier, paths[0], decoding)
    own = decoders is None
    if own:
        decoders = DecodePool(config, max(1, min(worker_count(config, workers), len(paths))))
    return _results(classifier, decoders, paths, close=own)


def _decode_meanwhile(config: Config, path: str) -> Future:
    """Decode the one file in a thread while torch and the model load: the decoder needs
    neither, and on a second core its ~0.3 s come off the command's few seconds."""
    from tagger.audio.features import prepare_or_error

    pool = ThreadPoolExecutor(1, thread_name_prefix="tagger-decode")
    try:
        return pool.submit(prepare_or_error, path, config)
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one file


def _alone(classifier: Classifier, path: str, decoding: Future | None = None
           ) -> Iterator[TrackResult]:
    from tagger.audio.features import prepare_or_error

    track = (decoding.result() if decoding is not None
             else prepare_or_error(path, classifier.config))
    yield from classifier.classify_decoded([(path, track)])


def _results(classifier: Classifier, decoders: DecodePool, paths: Sequence[str], close: bool
             ) -> Iterator[TrackResult]:
    try:
        yield from classifier.classify_decoded(
            decode_in_workers(decoders, paths, classifier.decode_ahead(decoders.workers)))
    finally:
        if close:
            decoders.close()
