"""The catalogue: what tagger knows about every file, in an SQL database (SQLite by default).

The schema is created and changed **only** by the Alembic migrations in ``migrations/``; the ORM
classes below mirror it (``tests/test_catalogue.py`` checks that they agree). Opening a
:class:`Catalogue` upgrades an existing database to the newest revision, after copying an SQLite
file aside (``<file>.bak-<old revision>-<UTC timestamp>``).

Concurrency: exactly one writer process (the daemon or a one-shot scan) by design, any number of
readers. SQLite connections run in WAL mode with a 10 s busy timeout and foreign keys on; write
transactions start with ``BEGIN IMMEDIATE`` so that a second writer waits instead of failing
half-way. Within the writer, :meth:`Catalogue.batch` groups many calls into one transaction.

Every database error surfaces as :class:`tagger.errors.WriteError` (:class:`ReadError` for a
failed query, :class:`ConfigError` for a URL that cannot be used), one line, naming the URL
without its password.

Tables (see ``docs/queries.md`` for SQL against them):

``tracks``
    one row per file ever seen: ``path`` (unique), ``folder`` (its directory), ``size``,
    ``mtime_ns``, ``content_id``, ``format``, ``duration_s``, ``status`` (pending, done, failed,
    skipped, missing), ``error`` (last failure, path not repeated), ``attempts`` (failed attempts
    since the last success or change of the file), ``failure_kind`` (why it failed: worker_died,
    timeout, permission, unreadable, tag_write, internal), ``not_written`` (why a classified
    track's genre was not written: below_threshold, kept_user_genre, tie_skipped,
    policy_never; NULL when it was), ``first_seen``, ``updated_at``,
    ``last_scanned`` (last time the classifier processed it).
``models``
    one row per set of weights: ``name``, ``sha256`` (unique), ``vocabulary`` (JSON list),
    ``created``.
``predictions``
    one per track and model (the newest replaces the previous one): ``genre``, ``confidence``,
    ``votes``, ``segment_count``, ``tie``, ``tied_genres`` (comma-separated, NULL without a tie),
    ``descriptors`` (JSON object, NULL without any), ``created``; with
    ``prediction_candidates`` (``place``, ``genre``, ``votes``, ``mean_score``) and
    ``prediction_segments`` (``segment_index``, ``start_s``, ``genre``, ``scores`` JSON object).
``tag_writes``
    every tag field tagger changed in a file: ``track_id``, ``path``, ``field``, ``old_value``
    and ``new_value`` (JSON lists, NULL for an absent field), ``written_at``, ``reverted_at``.
``tracks`` also holds what the file's tags said at its last scan: ``artist``, ``album``,
    ``file_genres`` (JSON list, normalised) and ``user_genres`` (those the user set, not
    tagger; NULL when none); and its album (tagger.library.albums): ``album_key``,
    ``album_artist``, ``mb_album_id``, ``compilation`` (the file's own flag).
``corrections``
    what the user said about a track's genre (append-only): ``track_id``, ``path``, ``action``
    (set_genre, accept, not_music, undo), ``genre``, ``previous`` (JSON list), the prediction
    it corrected (``predicted_genre``, ``predicted_confidence``, ``model_sha256``),
    ``source`` (cli, review), ``created_at``, ``undone_at`` (set by a later undo).
``adoptions``
    trained models made the library's model: ``name``, ``sha256``, ``bundle_path``,
    ``labels``, ``figures``, ``adopted_at``, ``retired_at`` (NULL: the current one).
``calibrations``
    confidence maps per model (``model_sha256``; the newest wins): ``method``, ``parameters``,
    ``ece_before``, ``ece_after``, ``tracks``, ``target_precision``, ``threshold``,
    ``precision``, ``coverage``, ``created_at``.
``albums``
    the decisions of ``tags.scope = "album"``, one per album (``album_key``, unique):
    ``identified_by`` (mbid, tags, folder), ``album``, ``album_artist``, ``folder``,
    ``model_sha256``, the pooled vote (``genre``, ``confidence``, ``tie``, ``tied_genres``,
    ``segment_count``), ``members``, ``voters``, ``agreeing`` (voters whose own vote is the
    album's genre), ``compilation`` and ``per_track`` (why its tracks keep their own decisions:
    various_artists, compilation_tag, votes_disagree), ``not_written`` (why the album's genre
    went into no file), ``written`` (tracks holding it), ``decided_at``.

Views: ``track_genres`` (``path``, ``genre``, ``confidence``, ``tie``, ``tied_genres``, ``model``:
the newest prediction of every track that has one), ``genre_counts`` (``genre``, ``tracks``) and
``genre_check`` (``path``, ``artist``, ``album``, ``user_genre``, ``label_source``,
``predicted``, ``confidence``, ``model``, ``agrees``: the user's genre beside the prediction).
"""

from tagger.library.catalogue.database import (
    alembic_config,
    current,
    downgrade,
    head,
    make_engine,
    migrations_dir,
    parse_url,
    safe_url,
    sqlite_file,
    upgrade,
)
from tagger.library.catalogue.queues import (
    GENRE_QUEUES,
    TO_JUDGE,
    Queue,
    QueuePage,
    QueueRow,
    Sort,
    queue_page,
)
from tagger.library.catalogue.records import (
    Adoption,
    AlbumRecord,
    AlbumTrack,
    Calibration,
    ConfidenceSpread,
    Correction,
    Failure,
    LabelRow,
    PredictionRecord,
    ReviewRow,
    Stats,
    TagWriteRecord,
    TrackRecord,
)
from tagger.library.catalogue.schema import (
    STATUSES,
    AdoptionRow,
    AlbumRow,
    Base,
    CalibrationRow,
    CorrectionRow,
    Model,
    Prediction,
    PredictionCandidate,
    PredictionSegment,
    TagWrite,
    Track,
)
from tagger.library.catalogue.store import Catalogue, CatalogueGoneError, open_catalogue

__all__ = [
    "Queue",
    "QueuePage",
    "QueueRow",
    "Sort",
    "queue_page",
    "TO_JUDGE",
    "GENRE_QUEUES",
    "STATUSES",
    "Base",
    "Track",
    "Model",
    "Prediction",
    "PredictionCandidate",
    "PredictionSegment",
    "TagWrite",
    "CorrectionRow",
    "AdoptionRow",
    "CalibrationRow",
    "AlbumRow",
    "TrackRecord",
    "AlbumRecord",
    "AlbumTrack",
    "LabelRow",
    "Correction",
    "Adoption",
    "Calibration",
    "PredictionRecord",
    "TagWriteRecord",
    "Failure",
    "ReviewRow",
    "ConfidenceSpread",
    "Stats",
    "Catalogue",
    "CatalogueGoneError",
    "open_catalogue",
    "upgrade",
    "downgrade",
    "current",
    "head",
    "migrations_dir",
    "safe_url",
    "sqlite_file",
    "make_engine",
    "parse_url",
    "alembic_config",
]
