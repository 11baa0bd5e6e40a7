"""Honest evaluation: stratified k-fold *by track*, accuracy per segment and per track.

The folds split tracks, never segments: all segments of a track (and of every file with the
same audio) are on the same side, so a test track was never heard in training. Splitting
segments at random instead lets the head recognise the recording rather than the genre,
which is how 91-95 % GTZAN figures leak. Track accuracy is measured after the same vote
``tagger classify`` runs (:func:`tagger.model.vote.vote`).

:func:`cross_validate` trains a fresh head per fold; :func:`evaluate_head` scores a fixed
model (the default genre map, or a trained bundle) on every track. Both return the report
dict that ``tagger eval --report`` writes; :func:`format_report` prints it and
:func:`plot_confusion` draws its confusion matrix (needs Pillow: ``pip install tagger[plot]``).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Sequence

import numpy as np

from tagger.errors import ConfigError, TaggerError
from tagger.learn.datasets import EmbeddedSet
from tagger.model.embeddings import Backbones
from tagger.model.heads import HeadOptions, fit_head
from tagger.model.vote import vote

# ---------------------------------------------------------------- splitting


def stratified_folds(labels: Sequence, k: int, seed: int = 0,
                     groups: Sequence | None = None) -> np.ndarray:
    """The fold (0..k-1) of every track.

    Each genre's tracks are dealt over the folds as evenly as possible (in a seeded random
    order), so every fold holds about 1/k of each genre. Tracks sharing a group (the same
    audio in two files) go to the same fold, labelled by their most common genre.
    """
    n = len(labels)
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    groups = list(range(n)) if groups is None else list(groups)
    if len(groups) != n:
        raise ValueError("need one group per track")
    members: dict = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    group_label = {g: Counter(labels[i] for i in idx).most_common(1)[0][0]
                   for g, idx in members.items()}
    rng = np.random.default_rng(seed)
    folds = np.full(n, -1, dtype=np.int64)
    total = np.zeros(k, dtype=np.int64)
    for label in sorted(set(group_label.values()), key=str):
        these = [g for g in members if group_label[g] == label]
        order = rng.permutation(len(these))
        per_fold = np.zeros(k, dtype=np.int64)
        for j in order:
            group = these[j]
            size = len(members[group])
            fold = min(range(k), key=lambda f: (per_fold[f], total[f], f))
            per_fold[fold] += size
            total[fold] += size
            folds[members[group]] = fold
    return folds


def segment_split(segment_tracks: np.ndarray, folds: np.ndarray,
                  fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) segment indices of one fold: test = the segments of that fold's tracks."""
    test_mask = folds[segment_tracks] == fold
    return np.flatnonzero(~test_mask), np.flatnonzero(test_mask)


# ---------------------------------------------------------------- the two evaluations


def cross_validate(embedded: EmbeddedSet, backbones: Backbones, options: HeadOptions,
                   k: int = 5, seed: int = 0) -> dict:
    """Train a head on k-1 folds, test it on the k-th, for every fold; one pooled report."""
    started = time.perf_counter()
    labels = embedded.labels
    if len(labels) < 2:
        raise ConfigError("cross-validation needs at least 2 genres")
    y_track = embedded.track_labels
    rare = [labels[i] for i, c in enumerate(np.bincount(y_track)) if c < 2]
    if rare:
        # with one track, a genre would be tested without ever being trained on
        raise ConfigError(f"cross-validation needs at least 2 tracks per genre: {', '.join(rare)}")
    k_used = min(k, len(y_track))  # a genre with fewer than k tracks is simply not in every fold
    seg_tracks = embedded.segment_tracks
    x = embedded.features(options.embedding, backbones)
    y_seg = y_track[seg_tracks]
    folds = stratified_folds(list(y_track), k_used, seed, groups=embedded.keys)
    pred_track = np.full(len(y_track), -1, dtype=np.int64)
    pred_seg = np.full(len(y_seg), -1, dtype=np.int64)
    per_fold = []
    for fold in range(k_used):
        train_idx, test_idx = segment_split(seg_tracks, folds, fold)
        if not len(test_idx):
            continue
        assert not set(seg_tracks[train_idx]) & set(seg_tracks[test_idx])
        fit = fit_head(x[train_idx], y_seg[train_idx], len(labels), options)
        probs = fit.net.probabilities(x[test_idx])
        pred_seg[test_idx] = probs.argmax(axis=1)
        test_tracks = np.unique(seg_tracks[test_idx])
        for t in test_tracks:
            rows = seg_tracks[test_idx] == t
            pred_track[t] = labels.index(vote(labels, probs[rows]).genre)
        per_fold.append({
            "fold": fold,
            "tracks": int(len(test_tracks)),
            "track_accuracy": float(np.mean(pred_track[test_tracks] == y_track[test_tracks])),
            "segment_accuracy": float(np.mean(pred_seg[test_idx] == y_seg[test_idx])),
        })
    report = build_report(
        [labels[i] for i in y_track], [labels[i] for i in pred_track],
        [labels[i] for i in y_seg], [labels[i] for i in pred_seg],
        paths=[t.path for t in embedded.tracks], true_labels=labels)
    report.update({
        "mode": "cross-validation",
        "folds": k_used,
        "folds_requested": k,
        "seed": seed,
        "per_fold": per_fold,
        "model": {"name": "head trained per fold", "embedding": options.embedding,
                  "head": options.kind, "options": options.as_dict()},
        "elapsed_s": round(time.perf_counter() - started, 3),
    })
    report["per_fold_track_accuracy_sd"] = float(np.std([f["track_accuracy"] for f in per_fold]))
    return _with_dataset(report, embedded)


def evaluate_head(embedded: EmbeddedSet, backbones: Backbones, head) -> dict:
    """Score a fixed genre head (a :class:`tagger.model.classify.GenreHead`) on every track."""
    started = time.perf_counter()
    scores = head.genre_scores(embedded.outputs(backbones))
    genres = tuple(head.genres)
    seg_tracks = embedded.segment_tracks
    pred_seg = [genres[i] for i in scores.argmax(axis=1)]
    pred_track = [vote(genres, scores[seg_tracks == t]).genre
                  for t in range(len(embedded.tracks))]
    true_track = [t.genre for t in embedded.tracks]
    true_seg = [true_track[t] for t in seg_tracks]
    unknown = sorted(set(true_track) - set(genres))
    report = build_report(true_track, pred_track, true_seg, pred_seg,
                          paths=[t.path for t in embedded.tracks], true_labels=embedded.labels)
    report.update({
        "mode": "fixed model",
        "folds": 0,
        "model": {"name": head.info.name, "sha256": head.info.sha256,
                  "vocabulary": list(genres)},
        "labels_unknown_to_model": unknown,
        "elapsed_s": round(time.perf_counter() - started, 3),
    })
    return _with_dataset(report, embedded)


def _with_dataset(report: dict, embedded: EmbeddedSet) -> dict:
    dataset = embedded.dataset
    report["dataset"] = {
        "name": dataset.name, "source": dataset.source, "location": dataset.location,
        "tracks_per_genre": embedded.tracks_per_label(),
        "segments_per_genre": embedded.segments_per_label(),
        "unreadable": embedded.stats.failed,
    }
    report["embeddings"] = {"cached": embedded.stats.cached, "decoded": embedded.stats.decoded,
                            "seconds": round(embedded.stats.seconds, 3)}
    return report


# ---------------------------------------------------------------- metrics


def build_report(true_track: Sequence[str], pred_track: Sequence[str],
                 true_seg: Sequence[str], pred_seg: Sequence[str], *,
                 paths: Sequence[str], true_labels: Sequence[str]) -> dict:
    """Accuracies, per-genre precision/recall/F1 and the confusion matrices (rows: truth)."""
    true_labels = list(true_labels)
    extra = sorted((set(pred_track) | set(pred_seg)) - set(true_labels))
    columns = true_labels + extra
    matrix = _confusion(true_track, pred_track, columns)
    seg_matrix = _confusion(true_seg, pred_seg, columns)
    per_genre = {}
    for j, genre in enumerate(columns):
        support = int(matrix[j].sum()) if j < len(true_labels) else 0
        predicted = int(matrix[:, j].sum())
        hit = int(matrix[j, j]) if j < len(true_labels) else 0
        precision = hit / predicted if predicted else None
        recall = hit / support if support else None
        f1 = (2 * precision * recall / (precision + recall)
              if precision and recall else (0.0 if precision is not None and recall is not None
                                            else None))
        seg_support = int(seg_matrix[j].sum()) if j < len(true_labels) else 0
        per_genre[genre] = {
            "precision": _round(precision), "recall": _round(recall), "f1": _round(f1),
            "tracks": support, "predicted": predicted,
            "segment_recall": _round(seg_matrix[j, j] / seg_support if seg_support else None),
        }
    n = len(true_track)
    recalls = [per_genre[g]["recall"] for g in true_labels if per_genre[g]["recall"] is not None]
    counts = Counter(true_track)
    return {
        "tracks": n,
        "segments": len(true_seg),
        "labels": true_labels,
        "track_accuracy": _round(np.mean([a == b for a, b in zip(true_track, pred_track)])),
        "segment_accuracy": _round(np.mean([a == b for a, b in zip(true_seg, pred_seg)])),
        "balanced_track_accuracy": _round(np.mean(recalls)) if recalls else None,
        "chance": {"uniform": _round(1 / len(true_labels)),
                   "majority": _round(max(counts.values()) / n)},
        "per_genre": per_genre,
        "confusion": {"labels": columns, "rows": "true genre", "columns": "predicted genre",
                      "matrix": matrix.tolist()},
        "segment_confusion": {"labels": columns, "matrix": seg_matrix.tolist()},
        "mistakes": [{"path": p, "genre": a, "predicted": b}
                     for p, a, b in zip(paths, true_track, pred_track) if a != b],
    }


def _confusion(true: Sequence[str], pred: Sequence[str], columns: list[str]) -> np.ndarray:
    index = {g: i for i, g in enumerate(columns)}
    matrix = np.zeros((len(columns), len(columns)), dtype=np.int64)
    for a, b in zip(true, pred):
        matrix[index[a], index[b]] += 1
    return matrix


def _round(value) -> float | None:
    return None if value is None else round(float(value), 4)


# ---------------------------------------------------------------- output


def format_report(report: dict) -> str:
    """The report as the text ``tagger eval`` prints."""
    data = report["dataset"]
    model = report["model"]
    if report["mode"] == "cross-validation":
        head = (f"{report['folds']}-fold cross-validation by track; head: {model['head']} on "
                f"{model['embedding']} embeddings")
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
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise TaggerError("--plot needs Pillow: pip install 'tagger[plot]'") from None
    conf = report["confusion"]
    rows = [i for i, g in enumerate(conf["labels"]) if g in report["labels"]]
    cols = [i for i, g in enumerate(conf["labels"])
            if g in report["labels"] or any(conf["matrix"][r][i] for r in rows)]
    matrix = np.array(conf["matrix"])[np.ix_(rows, cols)]
    row_labels = [conf["labels"][i] for i in rows]
    col_labels = [conf["labels"][i] for i in cols]
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(text: str) -> tuple[int, int]:
        box = probe.textbbox((0, 0), text, font=font)
        return box[2] - box[0], box[3] - box[1]

    cell = max(48, max(text_size(str(int(matrix.max())))[0] + 16, 48))
    left = max(text_size(g)[0] for g in row_labels) + 20
    top_label_h = max(text_size(g)[0] for g in col_labels) + 20
    title = (f"{report['dataset']['name']}: track accuracy {report['track_accuracy']:.3f}, "
             f"segment {report['segment_accuracy']:.3f}")
    subtitle = ("rows: true genre, columns: predicted"
                + (f"; {report['folds']}-fold CV" if report.get("folds") else
                   f"; model {report['model']['name']}"))
    title_h = 50
    width = max(left + cell * len(cols) + 20, *(text_size(t)[0] + 20 for t in (title, subtitle)))
    height = title_h + top_label_h + cell * len(rows) + 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), title, fill="black", font=font)
    draw.text((10, 28), subtitle, fill="dimgray", font=font)
    origin_y = title_h + top_label_h
    for j, label in enumerate(col_labels):  # column labels, rotated
        w, h = text_size(label)
        tile = Image.new("RGBA", (w + 4, h + 8), (255, 255, 255, 0))
        ImageDraw.Draw(tile).text((2, 0), label, fill="black", font=font)
        tile = tile.rotate(90, expand=True)
        x = left + j * cell + (cell - tile.width) // 2
        image.paste(tile, (x, origin_y - tile.height - 6), tile)
    for i, label in enumerate(row_labels):
        total = matrix[i].sum()
        _, h = text_size(label)
        draw.text((10, origin_y + i * cell + (cell - h) // 2), label, fill="black", font=font)
        for j in range(len(cols)):
            share = matrix[i, j] / total if total else 0.0
            diagonal = row_labels[i] == col_labels[j]
            base = (33, 113, 181) if diagonal else (203, 24, 29)
            colour = tuple(int(255 - share * (255 - c)) for c in base)
            x0, y0 = left + j * cell, origin_y + i * cell
            draw.rectangle([x0, y0, x0 + cell, y0 + cell], fill=colour, outline="gray")
            text = str(int(matrix[i, j]))
            w, h = text_size(text)
            draw.text((x0 + (cell - w) // 2, y0 + (cell - h) // 2 - 2), text,
                      fill="white" if share > 0.55 else "black", font=font)
    try:
        image.save(path, format="PNG")
    except OSError as exc:
        raise TaggerError(f"cannot write the plot: {exc}", path) from None
