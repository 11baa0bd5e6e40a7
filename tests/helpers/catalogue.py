"""What the catalogue tests share: result records from score matrices, the score matrices
themselves, raw SQL access, and the queries of docs/queries.md."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from tagger.model.vote import vote
from tagger.results import ModelInfo, SegmentResult, TrackResult

QUERIES_MD = Path(__file__).resolve().parents[2] / "docs" / "queries.md"
GENRES = ("rock", "pop", "jazz", "blues")
MODEL_A = ModelInfo("musicnn", "a" * 64, GENRES)
MODEL_B = ModelInfo("trained", "b" * 64, GENRES)
TABLES = {"tracks", "models", "predictions", "prediction_candidates", "prediction_segments",
          "tag_writes", "corrections", "adoptions", "calibrations", "albums"}
VIEWS = {"track_genres", "genre_counts", "genre_check"}
HEAD = "0009_content"  # newest schema revision


def copy_catalogue(source: Path, target: Path) -> None:
    """Copy an SQLite catalogue with SQLite's online backup, never as a plain file.

    Opening and closing the database file outside SQLite drops every POSIX lock this process's
    open connections hold on it (sqlite.org/howtocorrupt.html, 2.2); another process that then
    closes its last connection believes itself alone, checkpoints and deletes the WAL, and this
    process's connections go on reading the old one: the other process's commits vanish."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()



@dataclass(frozen=True)
class Change:  # the shape of the tag writer's change objects
    path: str
    field: str
    old: tuple[str, ...] | None
    new: tuple[str, ...] | None


def result_for(path, rows, model=MODEL_A, descriptors=None, duration=30.0):
    """A TrackResult from a (segments, genres) score matrix, voted by tagger.model.vote.vote()."""
    scores = np.asarray(rows, dtype=np.float64)
    v = vote(GENRES, scores)
    segments = tuple(
        SegmentResult(3.0 * i, v.segment_winners[i],
                      {f"msd:{g}": float(x) for g, x in zip(GENRES, row, strict=True)}
                      | {"mtt:guitar": 0.25},
                      {g: float(x) for g, x in zip(GENRES, row, strict=True)})
        for i, row in enumerate(scores)
    )
    return TrackResult(path=path, model=model, vote=v, segments=segments,
                       descriptors=descriptors or {}, duration_s=duration)


# rock wins 3 of 4 segments
CLEAR_ROCK = [[0.9, 0.1, 0.0, 0.0], [0.8, 0.2, 0.0, 0.0], [0.7, 0.1, 0.1, 0.1],
              [0.2, 0.6, 0.1, 0.1]]
# rock and pop win 2 segments each; rock has the higher mean score
TIE_ROCK_POP = [[0.6, 0.3, 0.05, 0.05], [0.7, 0.2, 0.05, 0.05], [0.3, 0.4, 0.2, 0.1],
                [0.25, 0.35, 0.2, 0.2]]
# jazz wins with a low mean score
WEAK_JAZZ = [[0.1, 0.1, 0.3, 0.2], [0.1, 0.1, 0.25, 0.2], [0.2, 0.1, 0.1, 0.15]]
CLEAR_POP = [[0.1, 0.8, 0.1, 0.0], [0.1, 0.9, 0.0, 0.0]]



def rows(catalogue, sql, **params):
    with catalogue.engine.connect() as conn:
        return conn.execute(sa.text(sql), params).mappings().all()


def objects(db_path, kind):
    con = sqlite3.connect(db_path)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = ?", (kind,))}
    finally:
        con.close()



def doc_queries() -> dict[str, str]:
    """{heading: sql} for every ```sql block of docs/queries.md, under its own heading."""
    queries: dict[str, str] = {}
    heading, block = None, None
    for line in QUERIES_MD.read_text(encoding="utf-8").splitlines():
        if block is not None:
            if line.strip() == "```":
                assert heading and heading not in queries, f"no heading of its own: {heading}"
                queries[heading] = "\n".join(block)
                block = None
            else:
                block.append(line)
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.strip() == "```sql":
            block = []
    assert block is None, "unterminated ```sql block"
    return queries


def query(queries, start):
    (key,) = [k for k in queries if k.lower().startswith(start.lower())]
    return queries[key]
