"""How results and catalogue records are printed (tables, ``--json`` objects)."""

from __future__ import annotations


def result_to_json(result) -> dict:
    """The documented ``--json`` object for one file."""
    outcome = result.vote
    return {
        "path": result.path,
        "genre": outcome.genre if outcome else None,
        "confidence": round(outcome.confidence, 4) if outcome else None,
        "tie": outcome.tie if outcome else False,
        "tied_genres": list(outcome.tied) if outcome and outcome.tie else [],
        "candidates": [
            {"genre": c.genre, "votes": c.votes, "mean_score": round(c.mean_score, 4)}
            for c in (outcome.candidates if outcome else ())
        ],
        "segments": [
            {"start_s": s.start_s, "genre": s.genre, "scores": s.scores} for s in result.segments
        ],
        "descriptors": result.descriptors,
        "duration_s": round(result.duration_s, 3) if result.duration_s is not None else None,
        "model": {"name": result.model.name, "sha256": result.model.sha256},
        "error": result.error,
    }


def format_row(result, name_width: int) -> str:
    """One human-readable table row."""
    name = result.path if len(result.path) <= name_width else "…" + result.path[-name_width + 1:]
    if result.error:
        return f"{name:<{name_width}}  {'-':<14} {'':>5} {'':>6}  error: {result.error}"
    outcome = result.vote
    votes = outcome.candidates[0].votes
    note = ""
    if outcome.tie:
        note = "tie: " + ", ".join(f"{c.genre} {c.votes}" for c in outcome.candidates
                                   if c.genre in outcome.tied)
    elif len(outcome.candidates) > 1:
        note = "also: " + ", ".join(f"{c.genre} {c.votes}" for c in outcome.candidates[1:4])
    if result.descriptors:
        note += ("; " if note else "") + ", ".join(list(result.descriptors)[:3])
    return (f"{name:<{name_width}}  {outcome.genre:<14} {outcome.confidence:5.2f} "
            f"{votes:>2}/{len(result.segments):<3}  {note}")


def format_track(record) -> str:
    """Everything the catalogue knows of one track, for ``tagger show``."""
    lines = [record.path,
             f"  status: {record.status}" + (f" ({record.error})" if record.error else ""),
             f"  format: {record.format or '?'}, {record.size} bytes"
             + (f", {record.duration_s:.1f} s" if record.duration_s else ""),
             f"  content id: {record.content_id or '-'}",
             f"  last scanned: {record.last_scanned or '-'}"]
    if record.artist or record.album or record.file_genres:
        lines.append(f"  tags: artist {record.artist or '-'}, album {record.album or '-'}, "
                     f"genres {'; '.join(record.file_genres) or '-'}"
                     + (f" (set by you: {'; '.join(record.user_genres)})"
                        if record.user_genres else ""))
    lines += _album_lines(record)
    for prediction in record.predictions:
        tie = f", tie between {', '.join(prediction.tied)}" if prediction.tie else ""
        lines.append(f"  prediction ({prediction.model.name} {prediction.model.sha256[:12]}, "
                     f"{prediction.created:%Y-%m-%d %H:%M}): {prediction.genre} "
                     f"{prediction.confidence:.2f}, {prediction.votes}/"
                     f"{prediction.segment_count} votes{tie}")
        for c in prediction.candidates:
            lines.append(f"    {c.genre:<16} {c.votes:>2} votes  mean {c.mean_score:.3f}")
        lines.append("    segments: " + ", ".join(
            f"{s.start_s:.0f}s {s.genre}" if s.start_s is not None else s.genre
            for s in prediction.segments))
        if prediction.descriptors:
            lines.append("    descriptors: " + ", ".join(
                f"{k} {v:.2f}" for k, v in prediction.descriptors.items()))
    for write in record.tag_writes:
        reverted = f" (reverted {write.reverted_at:%Y-%m-%d %H:%M})" if write.reverted_at else ""
        lines.append(f"  tag {write.field}: {_values(write.old)} -> {_values(write.new)} "
                     f"at {write.written_at:%Y-%m-%d %H:%M}{reverted}")
    return "\n".join(lines)


def _album_lines(record) -> list[str]:
    """``tagger show``: the track's album, and its album's decision (tags.scope = album)."""
    if record.album_key is None:
        return []
    how = record.album_key.split(":", 1)[0]
    album = record.album_decision
    if album is None:
        return [f"  album: identified by {how}; no album decision recorded"]
    if album.genre is None:
        decided = "no track could vote"
    else:
        tie = f", tie between {', '.join(album.tied)}" if album.tie else ""
        decided = (f"{album.genre} {album.confidence:.2f}{tie}, {album.agreeing} of "
                   f"{album.voters} voting tracks agree")
    if album.per_track:
        outcome = f"each track keeps its own genre ({album.per_track.value})"
    elif album.not_written:
        outcome = f"not written ({album.not_written.value})"
    else:
        outcome = f"held by {album.written} of its {album.members} tracks"
    return [f"  album: identified by {how}, {album.members} tracks; decision "
            f"({album.decided_at:%Y-%m-%d %H:%M}): {decided}; {outcome}"]


def _values(values) -> str:
    return "(none)" if values is None else "; ".join(values)


def format_proposal(proposal: dict) -> str:
    """One dry-run line: ``path: existing -> proposed [genre confidence]``."""
    if proposal.get("error"):
        return f"{proposal['path']}: {proposal['error']}"
    before = "; ".join(proposal["existing"]) or "(no genre)"
    after = ("; ".join(proposal["proposed"]) if proposal["proposed"]
             else f"unchanged ({proposal['reason'] or 'already set'})")
    return (f"{proposal['path']}: {before} -> {after} [{proposal['genre']} "
            f"{proposal['confidence']:.2f}]")


def _tagged(dry_run: bool) -> str:
    return "would be tagged" if dry_run else "tagged"


def _commonest_failures(failures) -> list[str]:
    """The five commonest reasons in a Counter of failures, with their counts."""
    return [f"  failed x{count}: {reason}" for reason, count in failures.most_common(5)]


def summary_lines(summary) -> list[str]:
    """A scan's :class:`~tagger.service.recorder.Summary` for people."""
    rate = summary.classified / summary.elapsed_s if summary.elapsed_s else 0.0
    tagged = _tagged(summary.dry_run)
    out = [
        f"{summary.seen} files: {summary.classified} classified ({rate:.2f}/s), "
        f"{summary.tagged} {tagged}, {summary.unchanged} unchanged, {summary.failed} failed, "
        f"{summary.skipped} skipped, {summary.missing} missing, {summary.moved} moved",
        f"ties: {summary.ties}; below threshold: {summary.below_threshold}; "
        f"tags left as they were: {summary.kept}",
        *_commonest_failures(summary.failures),
    ]
    if summary.albums:
        out.append(f"albums: {summary.albums} decided ({summary.albums_per_track} kept "
                   f"per-track genres: compilations), {summary.album_retagged} tracks of "
                   f"earlier scans {'would be ' if summary.dry_run else ''}retagged, in "
                   f"{summary.album_seconds:.1f} s")
    if summary.in_motion:
        out.append(f"in motion: {summary.in_motion} files were still being written (a copy "
                   "or download running?); left untouched, the next scan takes them")
    if summary.left_failed:
        out.append(f"still failed: {summary.still_failed} files ({summary.left_failed} from "
                   "earlier runs, unchanged since: 'tagger scan --retry-failed' tries them "
                   "again, 'tagger list --failed' lists them)")
    if summary.interrupted:
        out.append("interrupted: everything finished so far is saved; run again to resume")
    return out


def retag_lines(summary, listed: int = 20) -> list[str]:
    """A :class:`~tagger.service.retag.RetagSummary` for people (the first ``listed`` tracks
    that need a scan by name)."""
    tagged = _tagged(summary.dry_run)
    t = summary.tags
    model = f"{summary.model.name} ({summary.model.sha256[:12]})" if summary.model else "?"
    out = [
        f"retag under {model}: {summary.considered} catalogued tracks, {summary.repredicted} "
        f"re-predicted from cached embeddings ({summary.rate:.0f} tracks/s), "
        f"{summary.decoded} decoded; {summary.changed} changed genre",
        f"{t.tagged} {tagged}, {t.kept} kept as they were, {t.below_threshold} below "
        f"threshold ({t.withdrawn} of them: tagger's earlier genre taken back), {t.failed} "
        f"failed; {summary.corrected} corrected by you (files left alone), "
        f"{summary.missing} missing",
        *_commonest_failures(t.failures),
    ]
    if summary.need_scan:
        out.append(f"need a scan ({len(summary.need_scan)}: changed since, or no cached "
                   "embeddings): 'tagger scan --force PATH' embeds them")
        out += [f"  {path}" for path in summary.need_scan[:listed]]
        if len(summary.need_scan) > listed:
            out.append(f"  ... and {len(summary.need_scan) - listed} more")
    if summary.interrupted:
        out.append("interrupted: the tracks done so far are recorded")
    return out
