"""``tagger list`` (the review queues) and ``tagger prune`` (forget long-missing tracks,
old catalogue backups)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from pathlib import Path

from tagger.cli.common import existing_paths
from tagger.cli.output import album_outcome, printable
from tagger.config import Config

REASON_WORDS = {
    "below_threshold": "below threshold",
    "kept_user_genre": "kept your genre",
    "tie_skipped": "tie skipped",
    "policy_never": "tags.write = never",
    "outside_library": "outside the library",
}


def add_parsers(sub, parents) -> None:
    """The ``list`` and ``prune`` subcommands."""
    listing = sub.add_parser(
        "list", parents=parents, help="the review queues: low confidence, ties, failures...",
        description="Tracks that need a look. Several queues: their union; none: ties, "
                    "failures, genres of yours the model disagrees with, and tracks below the "
                    "write threshold. Tracks you already judged (set-genre, the review page) "
                    "are left out, but for the failed ones.")
    listing.add_argument("paths", nargs="*", metavar="FOLDER", help="only tracks below these")
    listing.add_argument("--low", type=float, metavar="CONF",
                         help="tracks whose confidence is below CONF (e.g. 0.35)")
    listing.add_argument("--ties", action="store_true", help="several genres won as many votes")
    listing.add_argument("--failed", action="store_true", help="files that failed (with why)")
    listing.add_argument("--disagree", action="store_true",
                         help="the genre you set is not the one the model predicts (under "
                              "the threshold too)")
    listing.add_argument("--below-threshold", action="store_true",
                         help="not written: confidence under tags.min_confidence")
    listing.add_argument("--not-music", action="store_true",
                         help="tracks that are not music, given no genre: what the content "
                              "gate heard (speech, animal, other sounds) or you said; never "
                              "in the other queues")
    listing.add_argument("--albums", action="store_true",
                         help="the albums instead (tags.scope = album): each one's genre, "
                              "how many of its tracks hold it, or why they keep their own")
    listing.add_argument("--json", action="store_true",
                         help="one JSON object per track (per album with --albums)")

    prune = sub.add_parser(
        "prune", parents=parents, help="forget long-missing tracks, delete old backups",
        description="Forget the tracks missing for more than --days (their tag history is "
                    "written to <state_dir>/pruned/ as JSON lines first, so 'revert' data stays "
                    "exportable), and keep only the newest --keep-backups catalogue backups.")
    prune.add_argument("--days", type=_days, default=30.0,
                       help="missing for longer than this (default 30)")
    prune.add_argument("--keep-backups", type=_count, default=3, metavar="N",
                       help="catalogue backups to keep (default 3; 0 deletes them all)")
    prune.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")


def _days(text: str) -> float:
    """``--days``: a number of days, finite and not negative (fractions allowed)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of days, 0 or more, "
                                         f"not {text!r}")
    return value


def _count(text: str) -> int:
    """``--keep-backups``: a whole number, not negative."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def not_music_words(row) -> str:
    """Why a track is not music: the gate's kind and scores, or the user's word."""
    if row.content_kind is None or row.content_kind.value == "music":
        return "you said so"
    scores = row.content_scores
    return (f"{row.content_kind.value} ({row.content_kind.value} "
            f"{scores.get(row.content_kind.value, 0):.2f}, music {scores.get('music', 0):.2f})")


def cmd_list(args: argparse.Namespace, config: Config, open_catalogue) -> int:
    under = existing_paths(args.paths, "tagger list") or None
    if args.albums:
        return _list_albums(config, open_catalogue, under, as_json=args.json)
    with open_catalogue(config) as catalogue:
        rows = catalogue.review(low=args.low, ties=args.ties, failed=args.failed,
                                disagree=args.disagree, below_threshold=args.below_threshold,
                                not_music=args.not_music, under=under)
    for row in rows:
        if args.json:
            print(json.dumps({
                "path": row.path, "status": row.status, "genre": row.genre,
                "confidence": round(row.confidence, 4) if row.confidence is not None else None,
                "tie": row.tie, "tied_genres": row.tied_genres.split(",") if row.tied_genres
                else [], "not_written": row.not_written.value if row.not_written else None,
                "error": row.error,
                "failure_kind": row.failure_kind.value if row.failure_kind else None,
                "content_kind": row.content_kind.value if row.content_kind else None,
                "content_scores": row.content_scores,
            }, ensure_ascii=False))
            continue
        if row.status == "not_music":
            print(f"{printable(row.path)}\tnot music: {not_music_words(row)}")
            continue
        if row.status == "failed":
            kind = row.failure_kind.value if row.failure_kind else "failed"
            print(f"{printable(row.path)}\tfailed ({kind}): {printable(row.error or '')}")
            continue
        genre = (f"{printable(row.genre)} {row.confidence:.2f}" if row.genre is not None
                 else "-")
        notes = []
        if row.tie:
            notes.append(f"tie: {printable(row.tied_genres)}")
        if row.not_written:
            notes.append(REASON_WORDS[row.not_written.value])
        print(f"{printable(row.path)}\t{genre}" + (f"\t{'; '.join(notes)}" if notes else ""))
    return 0


def _list_albums(config: Config, open_catalogue, under: list[str] | None, *,
                 as_json: bool) -> int:
    """``tagger list --albums``: every album decided (below ``under``), by folder."""
    with open_catalogue(config) as catalogue:
        albums = catalogue.albums()
    if under:
        albums = [a for a in albums if a.folder and any(
            a.folder == root or a.folder.startswith(root.rstrip("/") + "/") for root in under)]
    for album in sorted(albums, key=lambda a: (a.folder or "", a.album_key)):
        if as_json:
            print(json.dumps({
                "album_key": album.album_key, "identified_by": album.identified_by.value,
                "album": album.album, "album_artist": album.album_artist,
                "folder": album.folder, "genre": album.genre,
                "confidence": round(album.confidence, 4) if album.confidence is not None
                else None, "tie": album.tie, "tied_genres": list(album.tied),
                "members": album.members, "voters": album.voters, "agreeing": album.agreeing,
                "per_track": album.per_track.value if album.per_track else None,
                "not_written": album.not_written.value if album.not_written else None,
                "written": album.written}, ensure_ascii=False))
            continue
        name = " - ".join(v for v in (album.album_artist, album.album) if v) or album.folder
        genre = (f"{printable(album.genre)} {album.confidence:.2f}" if album.genre is not None
                 else "-")
        print(f"{printable(name or album.album_key)}\t{genre}\t{album_outcome(album)}")
    return 0


def cmd_prune(args: argparse.Namespace, config: Config, open_catalogue) -> int:
    from tagger.library.lock import WriterLock

    try:
        cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=args.days)
    except OverflowError:  # before year 1: no track has been missing that long
        cutoff = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    with WriterLock(config.state_path, config.database_url, "tagger prune") as lock, \
            open_catalogue(config) as catalogue:
        lock.guard(catalogue)
        paths = catalogue.missing_since(cutoff)
        history = catalogue.tag_changes(paths, include_reverted=True) if paths else []
        if paths and not args.dry_run:
            if history:
                export = _export_history(config.state_path, history)
                print(f"tag history of the pruned tracks: {printable(export)}")
            catalogue.forget(paths)
    verb = "would forget" if args.dry_run else "forgot"
    print(f"{verb} {len(paths)} tracks missing for more than {args.days:g} days")
    removed = prune_backups(config, args.keep_backups, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(removed)} old catalogue backups (kept the newest {args.keep_backups})")
    return 0


def catalogue_backups(config: Config) -> list[Path]:
    """The SQLite catalogue's backup copies (``<file>.bak-<revision>-<UTC stamp>``), oldest
    first; none for another database."""
    url = config.database_url
    if not url.startswith("sqlite:///"):
        return []
    db = Path(url.removeprefix("sqlite:///"))
    found = [p for p in db.parent.glob(f"{db.name}.bak-*") if p.is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def prune_backups(config: Config, keep: int, *, dry_run: bool = False) -> list[Path]:
    """Delete all but the newest ``keep`` catalogue backups; returns those (to be) deleted."""
    if keep < 0:
        raise ValueError(f"keep must be 0 or more, not {keep}")
    backups = catalogue_backups(config)
    doomed = backups[:-keep] if keep > 0 else backups
    if not dry_run:
        for path in doomed:
            path.unlink(missing_ok=True)
    return doomed


def _export_history(state_dir: Path, history) -> Path:
    folder = state_dir / "pruned"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = folder / f"tag-writes-{stamp}.jsonl"
    with open(target, "a", encoding="utf-8") as out:
        for w in history:
            out.write(json.dumps({
                "path": w.path, "field": w.field, "old": w.old, "new": w.new,
                "written_at": w.written_at.isoformat(),
                "reverted_at": w.reverted_at.isoformat() if w.reverted_at else None,
            }, ensure_ascii=False) + "\n")
    return target
