"""Calibrated confidence: a track's raw confidence mapped to the probability it is right.

The raw confidence is the winning genre's mean score over the track's segments: a sigmoid tag
score for the default genre map, a softmax probability for a trained head. Neither is the
probability that the written genre is right. ``tagger learn`` fits a :class:`Calibrator` on
held-out folds of the library's labelled tracks (tagger.learn.calibrate, docs/training.md)
and records it in the catalogue; scan and watch pass it to the classifier, which reports the
calibrated value as the vote's confidence (the raw one stays in ``Vote.raw_confidence``).

Plain data (JSON parameters), applied with numpy: nothing to load, nothing to trust.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tagger.errors import ModelError

METHODS = ("isotonic", "temperature")


@dataclass(frozen=True)
class Calibrator:
    """``isotonic``: a non-decreasing step curve through ``x`` -> ``y`` (interpolated between
    the steps, clipped at the ends, as scikit-learn's IsotonicRegression predicts);
    ``temperature``: ``sigmoid((logit(c) - bias) / temperature)``."""

    method: str
    parameters: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ModelError(f"unknown calibration method {self.method!r}")
        p = self.parameters
        if self.method == "isotonic":
            x, y = p.get("x"), p.get("y")
            if not x or not y or len(x) != len(y):
                raise ModelError("isotonic calibration needs x and y of the same length")
            if any(b < a for a, b in zip(y, y[1:])) or any(b < a for a, b in zip(x, x[1:])):
                raise ModelError("isotonic calibration must be non-decreasing")
        elif not (isinstance(p.get("temperature"), (int, float)) and p["temperature"] > 0):
            raise ModelError("temperature calibration needs a temperature > 0")

    def apply(self, confidence) -> np.ndarray:
        """Calibrated values of an array of raw confidences (in [0, 1])."""
        c = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
        if self.method == "isotonic":
            return np.interp(c, self.parameters["x"], self.parameters["y"])
        eps = 1e-6
        z = np.log(np.clip(c, eps, 1 - eps)) - np.log1p(-np.clip(c, eps, 1 - eps))
        t = float(self.parameters["temperature"])
        b = float(self.parameters.get("bias", 0.0))
        return 1.0 / (1.0 + np.exp(-(z - b) / t))

    def __call__(self, confidence: float) -> float:
        value = float(self.apply([confidence])[0])
        return 0.0 if math.isnan(value) else value

    def as_dict(self) -> dict:
        return {"method": self.method, "parameters": self.parameters}

    @classmethod
    def from_dict(cls, data: dict) -> Calibrator:
        try:
            return cls(data["method"], dict(data["parameters"]))
        except (KeyError, TypeError) as exc:
            raise ModelError(f"not a calibration: {exc}") from None
