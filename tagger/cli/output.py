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


def _values(values) -> str:
    return "(none)" if values is None else "; ".join(values)
