"""The evaluation report for people: the text ``tagger eval`` prints and its confusion-matrix
plot (matplotlib's; needs ``pip install tagger[plot]``). The report dict itself is built by
:mod:`tagger.learn.evaluate`."""

from __future__ import annotations

import numpy as np

from tagger.errors import TaggerError


def format_report(report: dict) -> str:
    """The report as the text ``tagger eval`` prints."""
    data = report["dataset"]
    model = report["model"]
    grouping = report.get("grouped_by", "track")
    if report["mode"] == "cross-validation":
        head = (f"{report['folds']}-fold cross-validation by {grouping}; head: {model['head']} "
                f"on {model['embedding']} embeddings")
    else:
        head = f"model {model['name']} ({model['sha256'][:12]}), no training"
    lines = [
        f"{data['name']}: {report['tracks']} tracks, {report['segments']} segments, "
        f"{len(report['labels'])} genres ({data['source']})",
        head,
        f"track accuracy   {report['track_accuracy']:.3f}  (after the vote; balanced "
        f"{report['balanced_track_accuracy']:.3f})",
        f"segment accuracy {report['segment_accuracy']:.3f}",
        f"chance           {report['chance']['uniform']:.3f} uniform, "
        f"{report['chance']['majority']:.3f} majority class",
    ]
    if report.get("per_fold"):
        lines.append("per fold (tracks):  " + "  ".join(
            f"{f['track_accuracy']:.3f}" for f in report["per_fold"]))
    if report.get("ungrouped"):
        u = report["ungrouped"]
        lines.append(f"by track instead  {u['track_accuracy']:.3f}  (balanced "
                     f"{_cell(u['balanced_track_accuracy'])}): what folds that split an "
                     f"{grouping} would claim")
    for name, b in (report.get("baseline") or {}).items():
        lines.append(f"baseline ({name}: by {grouping if name == 'grouped' else 'track'})  "
                     f"{_cell(b['track_accuracy'])}  (balanced "
                     f"{_cell(b['balanced_track_accuracy'])}; MFCC + spectral statistics, "
                     "logistic regression, same folds)")
    cal = report.get("calibration")
    if cal:
        threshold = (f"threshold {cal['threshold']:.3f} for precision "
                     f"{cal['target_precision']:g}: precision {cal['precision']:.3f}, "
                     f"coverage {cal['coverage']:.3f}" if cal["threshold"] is not None
                     else f"no threshold reaches precision {cal['target_precision']:g}")
        lines.append(f"calibration      ECE {cal['ece_before']:.3f} raw -> "
                     f"{cal['ece_after']:.3f} {cal['method']} (isotonic "
                     f"{cal['ece_after_by_method']['isotonic']:.3f}); {threshold}")
    if report.get("labels_unknown_to_model"):
        lines.append("genres the model cannot predict (map them with --map): "
                     + ", ".join(report["labels_unknown_to_model"]))
    width = max(12, *(len(g) for g in report["per_genre"]))
    lines += ["", f"{'genre':<{width}}  precision  recall     f1  tracks  segment recall"]
    for genre, row in report["per_genre"].items():
        if not row["tracks"] and not row["predicted"]:
            continue
        lines.append(f"{genre:<{width}}  {_cell(row['precision']):>9}  {_cell(row['recall']):>6}"
                     f"  {_cell(row['f1']):>5}  {row['tracks']:>6}  "
                     f"{_cell(row['segment_recall']):>14}")
    conf = report["confusion"]
    columns = [i for i, g in enumerate(conf["labels"])
               if any(row[i] for row in conf["matrix"]) or g in report["labels"]]
    short = [conf["labels"][i][:9] for i in columns]
    cell = max(5, *(len(s) for s in short))
    lines += ["", "confusion (tracks; rows: true genre, columns: predicted)",
              " " * width + "  " + " ".join(f"{s:>{cell}}" for s in short)]
    for i, genre in enumerate(conf["labels"]):
        if genre not in report["labels"]:
            continue
        lines.append(f"{genre:<{width}}  " + " ".join(
            f"{conf['matrix'][i][j]:>{cell}}" for j in columns))
    return "\n".join(lines)


def _cell(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def plot_confusion(report: dict, path: str) -> None:
    """Draw the track-level confusion matrix as a PNG (rows: true genre; shade: row share)."""
    try:
        from matplotlib.colors import LinearSegmentedColormap
        from matplotlib.figure import Figure
    except ImportError:
        raise TaggerError("--plot needs matplotlib: pip install 'tagger[plot]'") from None
    conf = report["confusion"]
    rows = [i for i, g in enumerate(conf["labels"]) if g in report["labels"]]
    cols = [i for i, g in enumerate(conf["labels"])
            if g in report["labels"] or any(conf["matrix"][r][i] for r in rows)]
    matrix = np.array(conf["matrix"])[np.ix_(rows, cols)]
    row_labels = [conf["labels"][i] for i in rows]
    col_labels = [conf["labels"][i] for i in cols]
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    diagonal = np.array([[r == c for c in col_labels] for r in row_labels])

    figure = Figure(figsize=(max(4.5, 2.0 + 0.7 * len(cols)), 2.6 + 0.6 * len(rows)), dpi=100,
                    layout="constrained")
    axes = figure.subplots()
    # hits in blue, confusions in red, each shaded by its share of the true genre's tracks
    for mask, colour in ((diagonal, "#2171b5"), (~diagonal, "#cb181d")):
        cmap = LinearSegmentedColormap.from_list(colour, ["white", colour])
        axes.imshow(np.ma.masked_where(~mask, share), cmap=cmap, vmin=0, vmax=1, aspect="equal")
    for i in range(len(rows)):
        for j in range(len(cols)):
            axes.text(j, i, str(int(matrix[i, j])), ha="center", va="center",
                      color="white" if share[i, j] > 0.55 else "black")
    axes.set_xticks(range(len(cols)), col_labels, rotation=90)
    axes.set_yticks(range(len(rows)), row_labels)
    axes.set_xlabel("predicted genre")
    axes.set_ylabel("true genre")
    axes.set_xticks(np.arange(len(cols) + 1) - 0.5, minor=True)
    axes.set_yticks(np.arange(len(rows) + 1) - 0.5, minor=True)
    axes.grid(which="minor", color="gray", linewidth=0.5)
    axes.tick_params(which="minor", length=0)
    scope = (f"{report['folds']}-fold CV" if report.get("folds")
             else f"model {report['model']['name']}")
    axes.set_title(f"{report['dataset']['name']}\ntrack accuracy {report['track_accuracy']:.3f}, "
                   f"segment {report['segment_accuracy']:.3f}; {scope}", fontsize=10)
    try:
        figure.savefig(path, format="png")
    except OSError as exc:
        raise TaggerError(f"cannot write the plot: {exc}", path) from None
