"""Check that the catalogue works on PostgreSQL exactly as on SQLite, on real files.

    pip install -e '.[postgres]'
    python tools/check_postgres.py postgresql+psycopg://USER@HOST:PORT/DB [--keep]

DB must be an empty database (the check refuses one with tables). The script builds a small
library of real clips (tests/data, converted by ffmpeg into MP3, M4A, FLAC, Opus and WAV, plus
the original Ogg files), makes two copies, and runs the `tagger` command on each: one against
DB, one against a temporary SQLite file. Then it checks, on PostgreSQL:

- the scan classifies and tags the same files as on SQLite, and a rescan classifies nothing;
- every query of docs/queries.md runs and returns as many rows as on SQLite, and
  ``genre_counts`` is identical;
- ``tagger stats`` and ``tagger show`` answer, a second writer is refused by the server-side
  lock even from another state directory (another host), and ``tagger revert --all`` puts
  back each file's original genres.

Prints one line per check and exits 1 if any fails. Without ``--keep`` the schema is
removed from DB at the end (``alembic downgrade base``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402

from tagger.audio.decode import find_ffmpeg  # noqa: E402
from tagger.cli import main as tagger  # noqa: E402
from tagger.errors import WriteError  # noqa: E402
from tagger.library import tags  # noqa: E402
from tagger.library.catalogue import downgrade  # noqa: E402
from tagger.library.lock import WriterLock  # noqa: E402

CLIPS = sorted((REPO / "tests" / "data").glob("*.ogg"))
CONVERSIONS = [(".mp3", ["-c:a", "libmp3lame", "-b:a", "192k"]), (".m4a", ["-c:a", "aac"]),
               (".flac", ["-c:a", "flac"]), (".opus", ["-c:a", "libopus"]),
               (".wav", ["-c:a", "pcm_s16le"])]
QUERIES = re.findall(r"```sql\n(.*?)```", (REPO / "docs" / "queries.md").read_text("utf-8"),
                     re.S)


def build_library(folder: Path) -> None:
    ffmpeg = find_ffmpeg()
    folder.mkdir(parents=True)
    for i, clip in enumerate(CLIPS):
        shutil.copy(clip, folder / clip.name)
        suffix, codec = CONVERSIONS[i % len(CONVERSIONS)]
        subprocess.run([ffmpeg, "-v", "error", "-i", str(clip), "-map", "0:a:0", *codec,
                        str(folder / f"{clip.stem}{suffix}")], check=True)
    for path in folder.iterdir():
        path.chmod(0o644)


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = tagger(list(argv))
    return code, out.getvalue()


def summary(scan_json: str) -> dict:
    """The scan's --json summary without its timing."""
    values = json.loads(scan_json)
    values.pop("elapsed_s", None)
    return values


def run_sql(url: str, statements: list[str]) -> list[list[tuple]]:
    """Every statement's rows, run through SQLAlchemy on ``url``."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            # exec_driver_sql: the queries are plain SQL; psycopg reads % as a placeholder
            escape = url.startswith("postgresql")
            return [[tuple(r) for r in conn.exec_driver_sql(q.replace("%", "%%") if escape
                                                            else q)]
                    for q in statements]
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="SQLAlchemy URL of an empty PostgreSQL database")
    parser.add_argument("--keep", action="store_true", help="leave the schema and data in DB")
    args = parser.parse_args(argv)
    engine = sa.create_engine(args.url)
    with engine.connect() as conn:
        version = conn.exec_driver_sql("select version()").scalar()
        existing = sorted(set(sa.inspect(conn).get_table_names()) - {"alembic_version"})
    engine.dispose()
    if existing:
        sys.exit(f"{args.url}: the database has tables ({', '.join(existing[:5])}); "
                 "give an empty one")
    print(f"PostgreSQL: {version}")
    failures = 0

    def check(ok: bool, what: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}")

    with tempfile.TemporaryDirectory(prefix="tagger-pg-") as tmp:
        work = Path(tmp)
        os.environ["XDG_STATE_HOME"] = str(work / "state")
        build_library(work / "pg")
        shutil.copytree(work / "pg", work / "sqlite")
        originals = {p.name: tags.read_genres(p) for p in (work / "pg").iterdir()}
        sqlite_url = f"sqlite:///{work / 'catalogue.sqlite'}"
        try:
            code_pg, out_pg = run("scan", "--db", args.url, "--json", str(work / "pg"))
            code_sq, out_sq = run("scan", "--db", sqlite_url, "--json", str(work / "sqlite"))
            check(code_pg == code_sq == 0, f"scan of {len(originals)} real files: exit "
                                           f"{code_pg} (PostgreSQL), {code_sq} (SQLite)")
            summary_pg, summary_sq = summary(out_pg), summary(out_sq)
            check(summary_pg == summary_sq, f"the same summary on both: {summary_pg}")
            code, out = run("scan", "--db", args.url, "--json", str(work / "pg"))
            check(code == 0 and '"classified": 0' in out, "a rescan classifies nothing")
            pg, sq = run_sql(args.url, QUERIES), run_sql(sqlite_url, QUERIES)
            for i, (a, b) in enumerate(zip(pg, sq), 1):
                title = QUERIES[i - 1].strip().splitlines()[0][:60]
                check(len(a) == len(b), f"query {i:2d}: {len(a)} rows, SQLite {len(b)}: {title}")
            counts = ["select genre, tracks from genre_counts order by genre"]
            check(run_sql(args.url, counts) == run_sql(sqlite_url, counts),
                  "genre_counts identical")
            code, out = run("stats", "--db", args.url)
            check(code == 0 and "with a genre" in out, "tagger stats")
            some = sorted((work / "pg").iterdir())[0]
            code, out = run("show", "--db", args.url, str(some))
            check(code == 0 and "prediction" in out, f"tagger show {some.name}")
            with WriterLock(work / "state-a", args.url, "check_postgres"):
                try:  # another state directory: as if from another host
                    WriterLock(work / "state-b", args.url, "second writer").acquire()
                    refused = ""
                except WriteError as exc:
                    refused = exc.message
            check("being written by check_postgres" in refused,
                  f"a second writer on another host is refused: {refused}")
            code, _ = run("revert", "--db", args.url, "--all")
            after = {p.name: tags.read_genres(p) for p in (work / "pg").iterdir()}
            check(code == 0 and after == originals, "revert --all restores every file's genres")
        finally:
            if not args.keep:
                downgrade(args.url, "base")
    print(f"{failures} failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
