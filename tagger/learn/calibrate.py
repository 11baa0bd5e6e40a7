"""Calibration on held-out folds: expected calibration error, the calibrator, the threshold.

Input: one model's held-out predictions (:class:`tagger.learn.evaluate.HeldOut`): for every
labelled track, its confidence (the winner's mean score over the segments) and whether the
winner is the track's genre. Everything is measured the honest way, on the same folds:

* **ECE** (expected calibration error): 10 equal-width bins of confidence; the mean over
  tracks of |accuracy of the bin - mean confidence of the bin|. *Before*: the raw
  confidences. *After*: each fold's confidences mapped by a calibrator fitted on the other
  folds only (calibrate on k-1, measure on the k-th).
* **The calibrator** stored for scan is then fitted on every fold: ``isotonic``
  (scikit-learn's IsotonicRegression: a non-decreasing step curve) or ``temperature``
  (``sigmoid((logit(c) - bias) / T)``, fitted by maximum likelihood: temperature scaling of
  the confidence's logit with a shift, i.e. Platt scaling). Both are measured; the default
  is chosen in docs/training.md from the measurement.
* **Only when it helps**: a calibrator whose held-out ECE is not below the raw one (too few
  tracks, or folds too unlike each other: a calibration learnt on some artists that does not
  carry over to others) is not applied; the identity is stored instead (``temperature`` 1,
  shift 0) and the threshold is chosen on the raw confidences.
* **The auto threshold**: the lowest calibrated confidence at which the tracks at or above
  it are right at least ``target`` of the time (their precision), with the share of tracks
  it keeps (coverage); measured on the cross-calibrated held-out values, which is what scan
  compares with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tagger.errors import TaggerError
from tagger.learn.evaluate import HeldOut
from tagger.model.calibration import METHODS, Calibrator

BINS = 10
#: Fewer held-out tracks than this and no calibration is fitted. With 10 bins and 30 tracks a
#: bin holds 3 tracks on average; one track then moves a bin's accuracy by a third and the
#: ECE by ~3 points: below that the measurement is noise, and so is an isotonic curve.
MIN_TRACKS = 30
DEFAULT_METHOD = "temperature"  # docs/training.md "Calibration": why
DEFAULT_TARGET = 0.9
#: what is stored when calibrating does not help: sigmoid(logit(c)) = c
IDENTITY = Calibrator("temperature", {"temperature": 1.0, "bias": 0.0})


def expected_calibration_error(confidence, correct, bins: int = BINS) -> float:
    """ECE over ``bins`` equal-width bins of [0, 1] (the last bin includes 1.0)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if not len(confidence):
        raise ValueError("no tracks")
    index = np.minimum((np.clip(confidence, 0, 1) * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.sum() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total / len(confidence))


def reliability(confidence, correct, bins: int = BINS) -> list[dict]:
    """Per bin: its range, how many tracks, their mean confidence and their accuracy."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    index = np.minimum((np.clip(confidence, 0, 1) * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        rows.append({"low": b / bins, "high": (b + 1) / bins, "tracks": int(mask.sum()),
                     "confidence": round(float(confidence[mask].mean()), 4) if mask.any()
                     else None,
                     "accuracy": round(float(correct[mask].mean()), 4) if mask.any() else None})
    return rows


def fit_calibrator(confidence, correct, method: str = DEFAULT_METHOD) -> Calibrator:
    """Fit ``method`` (isotonic | temperature) to map confidences to P(right)."""
    confidence = np.clip(np.asarray(confidence, dtype=np.float64), 0, 1)
    correct = np.asarray(correct, dtype=np.float64)
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        iso.fit(confidence, correct)
        x = [round(float(v), 6) for v in iso.X_thresholds_]
        y = [round(float(v), 6) for v in iso.y_thresholds_]
        if len(x) == 1:  # one distinct confidence: a flat curve
            x, y = [0.0, 1.0], [y[0], y[0]]
        return Calibrator("isotonic", {"x": x, "y": y})
    if method == "temperature":
        from scipy.optimize import minimize

        eps = 1e-6
        c = np.clip(confidence, eps, 1 - eps)
        z = np.log(c) - np.log1p(-c)

        def loss(params: np.ndarray) -> float:
            log_t, bias = params
            logits = (z - bias) / np.exp(log_t)
            # binary cross-entropy, stable; a weak prior keeps T and the shift finite when
            # every track is right (or wrong)
            nll = np.mean(np.logaddexp(0, logits) - correct * logits)
            return float(nll + 1e-3 * (log_t ** 2 + bias ** 2))

        best = minimize(loss, np.zeros(2), method="L-BFGS-B",
                        bounds=[(-4.0, 4.0), (-20.0, 20.0)])
        return Calibrator("temperature", {"temperature": round(float(np.exp(best.x[0])), 6),
                                          "bias": round(float(best.x[1]), 6)})
    raise ValueError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")


def cross_calibrated(confidence, correct, folds, method: str = DEFAULT_METHOD) -> np.ndarray:
    """Each fold's confidences mapped by a calibrator fitted on the other folds."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    folds = np.asarray(folds)
    out = confidence.copy()
    for fold in np.unique(folds):
        test = folds == fold
        if (~test).sum() == 0:
            continue
        out[test] = fit_calibrator(confidence[~test], correct[~test], method).apply(
            confidence[test])
    return out


def choose_threshold(confidence, correct, target: float = DEFAULT_TARGET
                     ) -> tuple[float | None, float | None, float]:
    """(threshold, its precision, its coverage): the lowest confidence t such that the tracks
    with confidence >= t are right at least ``target`` of the time. (None, None, 0.0) when no
    threshold reaches it."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    for t in np.unique(confidence):
        kept = confidence >= t
        precision = float(correct[kept].mean())
        if precision >= target:
            return round(float(t), 6), precision, float(kept.mean())
    return None, None, 0.0


@dataclass
class CalibrationReport:
    """What ``learn`` measures and stores for one model."""

    model: str
    model_sha256: str
    method: str
    calibrator: Calibrator
    tracks: int
    ece_before: float
    ece_after: float
    ece_after_by_method: dict[str, float]
    target_precision: float
    threshold: float | None
    precision: float | None
    coverage: float
    applied: bool = True  # False: the calibrator did not lower the held-out ECE: identity
    raw_threshold: dict = field(default_factory=dict)  # the same rule on raw confidences
    reliability_before: list[dict] = field(default_factory=list)
    reliability_after: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "model": self.model, "model_sha256": self.model_sha256, "method": self.method,
            "applied": self.applied, "stored": self.calibrator.as_dict(),
            "parameters": self.calibrator.parameters, "tracks": self.tracks,
            "ece_before": round(self.ece_before, 4), "ece_after": round(self.ece_after, 4),
            "ece_after_by_method": {k: round(v, 4) for k, v in self.ece_after_by_method.items()},
            "target_precision": self.target_precision, "threshold": self.threshold,
            "precision": None if self.precision is None else round(self.precision, 4),
            "coverage": round(self.coverage, 4), "raw_threshold": self.raw_threshold,
            "reliability_before": self.reliability_before,
            "reliability_after": self.reliability_after,
        }


def calibrate(held: HeldOut, model_sha256: str, *, method: str = DEFAULT_METHOD,
              target: float = DEFAULT_TARGET, min_tracks: int = MIN_TRACKS
              ) -> CalibrationReport | None:
    """Measure and fit the calibration of one model's held-out predictions (None: too few)."""
    n = len(held.true)
    if n < min_tracks or len(np.unique(held.folds)) < 2:
        return None
    confidence, correct = held.confidence, held.correct
    after = {m: cross_calibrated(confidence, correct, held.folds, m) for m in METHODS}
    ece_after = {m: expected_calibration_error(v, correct) for m, v in after.items()}
    ece_before = expected_calibration_error(confidence, correct)
    applied = ece_after[method] < ece_before
    if applied:
        calibrator, calibrated = fit_calibrator(confidence, correct, method), after[method]
    else:
        calibrator, calibrated = IDENTITY, confidence
    threshold, precision, coverage = choose_threshold(calibrated, correct, target)
    raw_t, raw_p, raw_c = choose_threshold(confidence, correct, target)
    return CalibrationReport(
        model=held.model, model_sha256=model_sha256,
        method=method, calibrator=calibrator, tracks=n,
        ece_before=ece_before, ece_after=ece_after[method] if applied else ece_before,
        ece_after_by_method=ece_after, target_precision=target, threshold=threshold,
        precision=precision, coverage=coverage, applied=applied,
        raw_threshold={"threshold": raw_t, "precision": raw_p, "coverage": raw_c},
        reliability_before=reliability(confidence, correct),
        reliability_after=reliability(after[method], correct))


def plot_reliability(reports: list[CalibrationReport], path: str, title: str = "") -> None:
    """Reliability diagrams (accuracy against confidence per bin), one panel per model: raw
    and calibrated held-out confidences, the diagonal being perfect calibration."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise TaggerError("--plot needs matplotlib: pip install 'tagger[plot]'") from None
    figure = Figure(figsize=(4.2 * max(1, len(reports)), 4.4), dpi=100, layout="constrained")
    axes = figure.subplots(1, max(1, len(reports)), squeeze=False)[0]
    for ax, report in zip(axes, reports):
        ax.plot([0, 1], [0, 1], color="gray", linewidth=0.8, linestyle="--")
        for rows, label, colour in (
                (report.reliability_before, f"raw (ECE {report.ece_before:.3f})", "#cb181d"),
                (report.reliability_after,
                 f"{report.method} (ECE {report.ece_after_by_method[report.method]:.3f}"
                 f"{'' if report.applied else ': not applied'})", "#2171b5")):
            pts = [(r["confidence"], r["accuracy"], r["tracks"]) for r in rows if r["tracks"]]
            if pts:
                x, y, n = zip(*pts)
                ax.plot(x, y, marker="o", color=colour, label=label)
                for xi, yi, ni in pts:
                    ax.annotate(str(ni), (xi, yi), textcoords="offset points", xytext=(3, 3),
                                fontsize=7, color=colour)
        if report.threshold is not None:
            ax.axvline(report.threshold, color="#238b45", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("confidence (held-out folds)")
        ax.set_ylabel("share right")
        ax.set_title(f"{report.model}\n{report.tracks} tracks", fontsize=9)
        ax.legend(loc="upper left", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    try:
        figure.savefig(path, format="png")
    except OSError as exc:
        raise TaggerError(f"cannot write the plot: {exc}", path) from None
