"""Records built from rows (tagger.library.catalogue.rows.record_from_row): each field read as
its type says, whatever the driver hands back (SQLite: naive timestamps; a view's untyped
columns: ints or Decimals)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace

import pytest

from tagger.library.catalogue.records import Calibration, Correction, ReviewRow, TagWriteRecord
from tagger.library.catalogue.rows import record_from_row
from tagger.results import CalibrationMethod, CorrectionAction, CorrectionSource, NotWritten

NAIVE = dt.datetime(2024, 5, 1, 12, 30)  # as SQLite gives it back: stored in UTC, no tzinfo
UTC = NAIVE.replace(tzinfo=dt.timezone.utc)


def test_timestamps_enums_json_columns_and_nulls():
    row = SimpleNamespace(
        id=7, path="/music/a.mp3", action="set_genre", genre="jazz", previous=None,
        predicted_genre=None, predicted_confidence=Decimal("0.5"), model_sha256=None,
        source="review", created_at=NAIVE, undone_at=None, tag_write_ids="[3, 4]",
    )
    assert record_from_row(Correction, row) == Correction(
        7, "/music/a.mp3", CorrectionAction.SET_GENRE, "jazz", (), None, 0.5, None,
        CorrectionSource.REVIEW, UTC, None, (3, 4),
    )
    row = SimpleNamespace(id=1, model_sha256="a" * 64, method="temperature", parameters=None,
                          ece_before=1, ece_after=None, tracks=40, target_precision=None,
                          threshold=None, precision=None, coverage=None, created_at=UTC)
    got = record_from_row(Calibration, row)
    assert (got.method, got.parameters, got.ece_before, got.created_at) == (
        CalibrationMethod.TEMPERATURE, {}, 1.0, UTC)
    assert type(got.ece_before) is float


def test_given_fields_and_optional_values():
    row = SimpleNamespace(id=2, path="/music/b.ogg", field="GENRE", old_value=None,
                          new_value='["Jazz"]', written_at=NAIVE, reverted_at=None,
                          old_layout=None)
    assert record_from_row(TagWriteRecord, row, old=None, new=("Jazz",)) == TagWriteRecord(
        2, "/music/b.ogg", "GENRE", None, ("Jazz",), UTC, None)
    # an outer-joined track with no prediction: no genre, no confidence, not a tie
    row = SimpleNamespace(path="/music/c.flac", status="failed", genre=None, confidence=None,
                          tie=None, tied_genres=None, not_written="", error="bad frame",
                          failure_kind=None, content_kind=None, content_scores=None)
    assert record_from_row(ReviewRow, row) == ReviewRow(
        "/music/c.flac", "failed", None, None, False, None, None, "bad frame", None)
    row.not_written, row.confidence, row.tie = "below_threshold", 0, 1
    got = record_from_row(ReviewRow, row)
    assert (got.not_written, got.confidence, got.tie) == (NotWritten.BELOW_THRESHOLD, 0.0, True)


def test_a_computed_timestamp_given_as_text():
    """SQLite gives a computed column (the review queue's coalesce of prediction and first
    seen) as ISO text, not as a datetime."""
    from tagger.library.catalogue import QueueRow

    row = SimpleNamespace(id=3, path="/music/d.mp3", folder="/music", status="classified",
                          genre="rock", confidence=0.75, tie=0, tied_genres=None, error=None,
                          predicted_at="2024-05-01 12:30:00.000000", not_written=None,
                          failure_kind=None)
    got = record_from_row(QueueRow, row, user_genre=None)
    assert (got.predicted_at, got.tie, got.user_genre) == (UTC, False, None)
    row.predicted_at = None
    assert record_from_row(QueueRow, row, user_genre="jazz").predicted_at is None


def test_a_value_outside_its_enum_is_refused():
    row = SimpleNamespace(id=1, model_sha256="a" * 64, method="voodoo", parameters="{}",
                          ece_before=None, ece_after=None, tracks=None, target_precision=None,
                          threshold=None, precision=None, coverage=None, created_at=UTC)
    with pytest.raises(ValueError, match="voodoo"):
        record_from_row(Calibration, row)
