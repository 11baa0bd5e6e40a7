"""How results and catalogue records are printed (tables, ``--json`` objects).

Everything a user or a file controls (file names, tag values, genres, error text that names
them) goes through :func:`printable` before it reaches a terminal: an ESC sequence in a tag
would otherwise drive the terminal (colours, a title, a cleared screen, keys fed back), a
newline forge a line of output, a bidi override reverse what a name seems to say. ``--json``
output is left exact (JSON escapes control characters itself).
"""

from __future__ import annotations

import re

#: C0 controls (ESC, CR, LF, tab, NUL), DEL, C1 controls (CSI U+009B included), the Arabic
#: letter mark, LRM/RLM, the line and paragraph separators, the bidi embeddings, overrides and
#: isolates, and lone surrogates (a file name's undecodable bytes, as os.fsdecode gives them)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
                     "\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the undecodable byte itself
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` safe to print on a terminal, on one line: control characters, bidi controls
    and undecodable bytes written as escapes (``\\x1b``, ``\\n``, ``\\u202e``, ``\\xe9``); the
    rest, non-ASCII letters included, as it is. For every string a user or a file controls."""
    return _UNSAFE.sub(_escape, str(text))


def printable_lines(text: str) -> str:
    """:func:`printable` for each line of a report built elsewhere (the line breaks kept)."""
    return "\n".join(printable(line) for line in text.split("\n"))


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
        "content": ({"kind": result.content.kind.value, "scores": result.content.scores}
                    if result.content else None),
        "error": result.error,
    }


def format_row(result, name_width: int) -> str:
    """One human-readable table row."""
    path = printable(result.path)
    name = path if len(path) <= name_width else "…" + path[-name_width + 1:]
    if result.error:
        return printable(f"{name:<{name_width}}  {'-':<14} {'':>5} {'':>6}  error: "
                         f"{result.error}")
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
    if result.content is not None and not result.content.is_music:
        note = f"not music: {result.content.describe()}; " + note
    return printable(f"{name:<{name_width}}  {outcome.genre:<14} {outcome.confidence:5.2f} "
                     f"{votes:>2}/{len(result.segments):<3}  {note}")


def format_track(record, correction=None) -> str:
    """Everything the catalogue knows of one track, for ``tagger show`` (``correction``: the
    user's correction in force, if any)."""
    lines = [record.path,
             f"  status: {record.status}" + (f" ({record.error})" if record.error else ""),
             *content_lines(record),
             f"  format: {record.format or '?'}, {record.size} bytes"
             + (f", {record.duration_s:.1f} s" if record.duration_s else ""),
             f"  content id: {record.content_id or '-'}",
             f"  last scanned: {record.last_scanned or '-'}"]
    if record.artist or record.album or record.file_genres:
        lines.append(f"  tags: artist {record.artist or '-'}, album {record.album or '-'}, "
                     f"genres {'; '.join(record.file_genres) or '-'}"
                     + (f" (set by you: {'; '.join(record.user_genres)})"
                        if record.user_genres else ""))
    if correction is not None:
        lines.append(f"  {correction_line(correction)}")
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
    return "\n".join(printable(line) for line in lines)


def content_lines(record) -> list[str]:
    """``tagger show``: what the content gate heard (none: it did not run)."""
    if record.content_kind is None:
        return []
    scores = ", ".join(f"{k} {v:.2f}" for k, v in record.content_scores.items())
    return [f"  content: {record.content_kind.value} (AudioSet: {scores})"]


def correction_line(correction) -> str:
    """The user's correction in force, as ``tagger show`` says it."""
    what = {"set_genre": f"correction: {correction.genre}",
            "accept": f"correction: {correction.genre} (the prediction, accepted)",
            "not_music": "correction: not music"}[correction.action.value]
    where = "set-genre" if correction.source.value == "cli" else "the review page"
    return (f"{what}, by you ({where}, {correction.created_at:%Y-%m-%d %H:%M}); scans never "
            "write over it, 'tagger set-genre --undo' cancels it")


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
    return [f"  album: identified by {how}, {album.members} tracks; decision "
            f"({album.decided_at:%Y-%m-%d %H:%M}): {decided}; {album_outcome(album)}"]


def album_outcome(album) -> str:
    """What became of an album's decision, as ``show`` and ``list --albums`` say it."""
    if album.per_track:
        return f"each track keeps its own genre ({album.per_track.value})"
    if album.not_written:
        return f"not written ({album.not_written.value})"
    return f"held by {album.written} of its {album.members} tracks"


def _values(values) -> str:
    return "(none)" if values is None else "; ".join(values)


def format_proposal(proposal: dict) -> str:
    """One dry-run line: ``path: existing -> proposed [genre confidence]``."""
    if proposal.get("error"):
        return printable(f"{proposal['path']}: {proposal['error']}")
    before = "; ".join(proposal["existing"]) or "(no genre)"
    after = ("; ".join(proposal["proposed"]) if proposal["proposed"]
             else f"unchanged ({proposal['reason'] or 'already set'})")
    return printable(f"{proposal['path']}: {before} -> {after} [{proposal['genre']} "
                     f"{proposal['confidence']:.2f}]")


def _tagged(dry_run: bool) -> str:
    return "would be tagged" if dry_run else "tagged"


def _commonest_failures(failures) -> list[str]:
    """The five commonest reasons in a Counter of failures, with their counts."""
    return [printable(f"  failed x{count}: {reason}")
            for reason, count in failures.most_common(5)]


#: why a classified file's tags were left as they were (NotWritten values), for people
KEPT_WORDS = {
    "kept_user_genre": "a genre of yours kept",
    "tie_skipped": "a tie skipped",
    "policy_never": "tags.write = never",
    "outside_library": "outside the library",
    "not_music": "not music",
    "not_allowed": "not in tags.allowed_genres",
}


def _kept(summary) -> str:
    """The count of files whose tags were left as they were, and why."""
    reasons = {KEPT_WORDS[k]: n for k, n in summary.not_written.items() if k in KEPT_WORDS}
    already = summary.kept - sum(reasons.values())
    parts = ([f"{already} already held that genre"] if already > 0 else []) + [
        f"{n} {why}" for why, n in reasons.items()]
    return f"tags left as they were: {summary.kept}" + (f" ({', '.join(parts)})"
                                                        if parts else "")


def summary_lines(summary, rate: float | None = None) -> list[str]:
    """A scan's :class:`~tagger.service.recorder.Summary` for people; ``rate``: files per
    second as measured from the first file on (the progress display's), else the whole
    run's, start-up included."""
    if rate is None:
        speed = f"{summary.classified / summary.elapsed_s if summary.elapsed_s else 0.0:.2f}/s"
    else:
        speed = f"{rate:.2f}/s, start-up excluded"
    tagged = _tagged(summary.dry_run)
    out = [
        f"{summary.seen} files: {summary.classified} classified ({speed}), "
        f"{summary.tagged} {tagged}, {summary.unchanged} unchanged, {summary.failed} failed, "
        f"{summary.skipped} skipped, {summary.missing} missing, {summary.moved} moved",
        f"ties: {summary.ties}; below threshold: {summary.below_threshold}; {_kept(summary)}",
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
        out += [f"  {printable(path)}" for path in summary.need_scan[:listed]]
        if len(summary.need_scan) > listed:
            out.append(f"  ... and {len(summary.need_scan) - listed} more")
    if summary.interrupted:
        out.append("interrupted: the tracks done so far are recorded")
    return out
