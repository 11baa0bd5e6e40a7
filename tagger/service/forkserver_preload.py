"""Imported by the scan's fork server, and by nothing else.

Every decode worker is forked from that server, so what this import loads is already in each
worker: the decode stack, warmed by one run (see :func:`tagger.audio.features.warm_up`), so a
new worker does not load it again on its first file, competing with the model for the cores.
"""

from threadpoolctl import threadpool_limits

import tagger.service.workers  # noqa: F401  (the workers' entry points)
from tagger.audio.features import warm_up
from tagger.service.lifetime import die_with_parent

die_with_parent()  # the server (and so each worker it forks) dies with the scan, even on kill -9

threadpool_limits(1)  # as in each worker (workers.worker_init); the model loads on the other core
try:
    warm_up()
except Exception:  # noqa: BLE001 - never stop the server: a worker then warms on its first file
    pass
