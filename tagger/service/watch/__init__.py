"""``tagger watch``: the background service that keeps a library tagged as it changes.

One process, one writer. The package is the flow of an event, one module per stage:

* ``observers``: which observer watches each root (inotify, or polling for network mounts
  and when inotify runs out of watches) and the watchdog observers themselves; after
  folders change, the inotify watches are counted again and a root that lost some is
  watched afresh (and rescanned);
* ``events``: runs in the observer threads; filters each event (ignore patterns, audio
  extensions) and records it in the settle table;
* ``settle``: the settle table, thread-safe: a per-path debounce table (last stat, time of
  the last event, whether a write is still open), the ordered moves, the pending deletions;
* ``reconcile``: the main thread applies moves with ``Catalogue.move``/``move_prefix`` (no
  new inference) and deletions once their root was quiet for ``settle_seconds``; a root
  that is gone or looks empty (an unmounted NAS) is *paused* (``roots``) instead, and
  rescanned when it comes back;
* ``batch``: a file is taken once its write was closed (inotify's close-after-write; the
  polling observer has no such event) and its size and mtime_ns were stable for
  ``settle_seconds``; if they equal the catalogue's row nothing changed (tagger's own tag
  write, a read) and it is dropped; the rest goes to the scan engine in batches. A file that
  fails to decode while young (mtime within ``2 x settle_seconds``) goes back to the table;
* ``scheduler``: APScheduler runs the periodic reconcile rescan (``rescan_interval_minutes``
  or ``rescan_cron``; coalesced, one at a time; an inotify queue overflow starts one at
  once) and the retry of failed files with exponential backoff;
* ``status``: the JSON status file ``tagger status`` reads;
* ``daemon``: :class:`Watcher`, which holds the :class:`~tagger.library.lock.WriterLock`
  for its whole life and runs the main loop. On start, tracks whose newest prediction came
  from other weights or another genre vocabulary are requeued, and planned tag writes a kill
  interrupted are reconciled. Signals are the CLI's (``tagger.cli.common.graceful_stop``).
"""

from tagger.service.watch.batch import BATCH_MAX, BatchCountdown, BatchRunner
from tagger.service.watch.daemon import ROOT_CHECK_S, TICK_S, Watcher
from tagger.service.watch.events import EventRouter
from tagger.service.watch.observers import (
    FOLDERS_QUIET_S,
    NETWORK_FS,
    WATCH_MARGIN,
    Observers,
    WatchError,
    choose_observers,
    count_dirs,
    filesystem_type,
    inotify_watches_held,
    is_network_fs,
    read_mounts,
    unwatched_folders,
)
from tagger.service.watch.settle import Entry, SettleQueue
from tagger.service.watch.status import (
    STATUS_EVERY_S,
    format_status,
    read_status,
    status_path,
    write_json_atomically,
)

__all__ = [
    "BATCH_MAX", "FOLDERS_QUIET_S", "NETWORK_FS", "ROOT_CHECK_S", "STATUS_EVERY_S", "TICK_S",
    "WATCH_MARGIN",
    "BatchCountdown", "BatchRunner", "Entry", "EventRouter", "Observers", "SettleQueue",
    "WatchError", "Watcher", "choose_observers", "count_dirs", "filesystem_type",
    "format_status", "inotify_watches_held", "is_network_fs", "read_mounts", "read_status",
    "status_path", "unwatched_folders", "write_json_atomically",
]
