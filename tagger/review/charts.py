"""Charts drawn on the server as inline SVG: the taggram of a track's segments, the genre
distribution, the confidence histogram. Our own few lines instead of a chart library: the
page needs no JS to show them, and nothing has to be fetched."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

#: one colour per genre, stable across pages (the genre's place in the vocabulary)
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac", "#86bcb6", "#d37295", "#8cd17d", "#b6992d",
           "#499894", "#e49444", "#79706e")


def colour(genre: str, vocabulary: Sequence[str]) -> str:
    index = list(vocabulary).index(genre) if genre in vocabulary else sum(map(ord, genre))
    return PALETTE[index % len(PALETTE)]


def taggram(rows: Sequence[str], values: Sequence[Sequence[float]],
            winners: Sequence[str], vocabulary: Sequence[str]) -> Markup:
    """A heat map: one column per segment, one row per genre (or tag), darker = higher score
    (the darkest is the highest score of the map, said under it); a strip on top in the
    colour of each segment's winner. ``values[row][segment]``."""
    n = len(winners)
    top = max((float(v) for row in values for v in row), default=0.0) or 1.0
    cell_w, cell_h, strip, char_w = 52, 18, 12, 6.5  # char_w: an 11px character, roughly
    # the winners' full names stand upright over their columns: never cut, never overlapping
    head = 8 + char_w * max((len(w) for w in winners), default=0)
    label_w = max(90, round(12 + char_w * max((len(r) for r in rows), default=0)))
    body = head + strip + 4
    width, height = label_w + n * cell_w, body + len(rows) * cell_h + 34
    parts = [f'<svg class="taggram" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height:.0f}" viewBox="0 0 {width} {height:.0f}" role="img" '
             'aria-label="scores per segment">']
    for i, winner in enumerate(winners):
        x = label_w + i * cell_w
        cx, cy = x + cell_w / 2 + 4, head - 4
        parts.append(f'<g class="segment" data-index="{i}"><rect class="winner" x="{x + 1}" '
                     f'y="{head:.1f}" width="{cell_w - 2}" height="{strip}" '
                     f'fill="{colour(winner, vocabulary)}"><title>segment {i + 1}: '
                     f'{escape(winner)}</title></rect>'
                     f'<text x="{cx:.1f}" y="{cy:.1f}" transform="rotate(-90 {cx:.1f} '
                     f'{cy:.1f})" class="winner-label">{escape(winner)}</text></g>')
    for r, name in enumerate(rows):
        y = body + r * cell_h
        parts.append(f'<text x="{label_w - 6}" y="{y + cell_h - 5}" text-anchor="end" '
                     f'class="row-label">{escape(name)}</text>')
        for i in range(n):
            v = max(0.0, min(1.0, float(values[r][i])))
            parts.append(f'<rect x="{label_w + i * cell_w + 1}" y="{y + 1}" '
                         f'width="{cell_w - 2}" height="{cell_h - 2}" '
                         f'fill="rgba(30,60,140,{0.04 + 0.96 * v / top:.3f})">'
                         f'<title>{escape(name)}, segment {i + 1}: {v:.3f}</title></rect>')
    y = body + len(rows) * cell_h + 13
    for i in range(n):
        parts.append(f'<text x="{label_w + i * cell_w + cell_w / 2}" y="{y}" '
                     f'text-anchor="middle" class="axis">{i + 1}</text>')
    parts.append(f'<text x="{label_w - 6}" y="{y}" text-anchor="end" class="axis">segment'
                 f'</text><text x="{label_w}" y="{y + 15}" class="axis">darkest: score '
                 f'{top:.2f}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bars(items: Sequence[tuple[str, int]], vocabulary: Sequence[str] = ()) -> Markup:
    """Horizontal bars, one per (label, count)."""
    if not items:
        return Markup("<p>No data yet.</p>")
    label_w, bar_w, row_h = 140, 420, 22
    top = max(n for _, n in items) or 1
    width, height = label_w + bar_w + 70, row_h * len(items) + 4
    parts = [f'<svg class="chart bars" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for i, (label, n) in enumerate(items):
        y = i * row_h + 2
        w = max(1.0, bar_w * n / top)
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">'
                     f'{escape(label)}</text><rect x="{label_w}" y="{y + 2}" width="{w:.1f}" '
                     f'height="{row_h - 5}" fill="{colour(label, vocabulary)}">'
                     f'<title>{escape(label)}: {n}</title></rect>'
                     f'<text x="{label_w + w + 5:.1f}" y="{y + 15}">{n}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def histogram(buckets: Sequence[tuple[float, float, int]], threshold: float | None) -> Markup:
    """Vertical bars over [0, 1], one per (low, high, count); a line at ``threshold``."""
    if not buckets:
        return Markup("<p>No data yet.</p>")
    plot_w, plot_h, left, bottom = 500, 200, 40, 30
    top = max(n for _, _, n in buckets) or 1
    width, height = left + plot_w + 10, plot_h + bottom + 10
    step = plot_w / len(buckets)
    parts = [f'<svg class="chart histogram" xmlns="http://www.w3.org/2000/svg" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for i, (low, high, n) in enumerate(buckets):
        h = plot_h * n / top
        x = left + i * step
        parts.append(f'<rect x="{x + 1:.1f}" y="{10 + plot_h - h:.1f}" width="{step - 2:.1f}" '
                     f'height="{h:.1f}" fill="#4e79a7"><title>{low:.1f}–{high:.1f}: {n}'
                     f'</title></rect><text x="{x:.1f}" y="{plot_h + 24}" '
                     f'text-anchor="middle" class="axis">{low:.1f}</text>')
    parts.append(f'<text x="{left + plot_w:.1f}" y="{plot_h + 24}" text-anchor="middle" '
                 f'class="axis">{buckets[-1][1]:.1f}</text>')
    parts.append(f'<text x="{left - 4}" y="18" text-anchor="end" class="axis">{top}</text>')
    parts.append(f'<line x1="{left}" y1="{10 + plot_h}" x2="{left + plot_w}" '
                 f'y2="{10 + plot_h}" stroke="#333"/>')
    if threshold is not None:
        x = left + plot_w * threshold
        parts.append(f'<line x1="{x:.1f}" y1="6" x2="{x:.1f}" y2="{10 + plot_h}" '
                     'stroke="#e15759" stroke-dasharray="4 3"><title>tags.min_confidence '
                     f'{threshold:.2f}</title></line>')
    parts.append("</svg>")
    return Markup("".join(parts))
