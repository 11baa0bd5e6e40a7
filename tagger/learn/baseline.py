"""The classic baseline beside the head: logistic regression on MFCC and spectral statistics.

What the early genre papers report (Tzanetakis & Cook 2002, "Musical genre classification of
audio signals": timbral texture features summarised over the clip), so that a head's figures
can be read against something familiar: per track, over the same middle window the model
hears, the mean and standard deviation of 20 MFCCs, the spectral centroid, bandwidth, roll-off
and flatness, the zero-crossing rate, the RMS energy and the spectral flux (onset strength),
and the mean spectral contrast of 7 bands: 61 numbers (librosa). scikit-learn standardises
them and fits a multinomial logistic regression (classes weighted by their inverse frequency),
per fold, on the same folds as the head.

The features need a decode, so they are cached in ``<state_dir>/baseline.sqlite`` (beside the
embedding cache, keyed the same way: the audio identity and the window; 244 bytes a track).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tagger.config import Config
from tagger.errors import ReadError, TaggerError, WriteError
from tagger.learn.datasets import EmbeddedSet
from tagger.learn.evaluate import HeldOut
from tagger.library.paths import create_private_file
from tagger.model.embeddings import ExtractStats, audio_key

log = logging.getLogger(__name__)

CACHE_FILE = "baseline.sqlite"
#: bump when the features change
FEATURES_VERSION = 1
SAMPLE_RATE = 16000
N_MFCC = 20
DIMS = 2 * N_MFCC + 2 * 7 + 7
NAME = "baseline: logistic regression on MFCC + spectral statistics"


def track_features(samples: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The 61 summary statistics of one clip (float32)."""
    import librosa

    y = np.asarray(samples, dtype=np.float32)
    stft = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
    power = stft ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_mels=64)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=N_MFCC)
    frames = [
        librosa.feature.spectral_centroid(S=stft, sr=sr)[0],
        librosa.feature.spectral_bandwidth(S=stft, sr=sr)[0],
        librosa.feature.spectral_rolloff(S=stft, sr=sr)[0],
        librosa.feature.spectral_flatness(S=stft)[0],
        librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=512)[0],
        librosa.feature.rms(S=stft, frame_length=2048)[0],
        librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=sr),
    ]
    contrast = librosa.feature.spectral_contrast(S=stft, sr=sr, n_bands=6)
    stats = [mfcc.mean(axis=1), mfcc.std(axis=1)]
    stats += [np.array([f.mean(), f.std()]) for f in frames]
    stats.append(contrast.mean(axis=1))
    return np.concatenate(stats).astype(np.float32)


class FeatureCache:
    """SQLite file of baseline features, keyed by (audio identity, window settings)."""

    SCHEMA = """CREATE TABLE IF NOT EXISTS features (
        content_id TEXT NOT NULL, settings TEXT NOT NULL, features BLOB NOT NULL,
        created REAL NOT NULL, PRIMARY KEY (content_id, settings))"""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            create_private_file(self.path)  # like everything in the state directory
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute(self.SCHEMA)
            self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise WriteError(f"cannot open the baseline feature cache ({exc}); it is only a "
                             "cache: delete the file to rebuild it", self.path) from None

    @classmethod
    def for_config(cls, config: Config) -> FeatureCache:
        return cls(config.state_path / CACHE_FILE)

    def get(self, key: str, settings: str) -> np.ndarray | None:
        try:
            row = self._db.execute("SELECT features FROM features WHERE content_id = ? AND "
                                   "settings = ?", (key, settings)).fetchone()
        except sqlite3.Error as exc:
            raise ReadError(f"cannot read the baseline feature cache: {exc}", self.path) from None
        return None if row is None else np.frombuffer(row[0], dtype=np.float32).copy()

    def put(self, key: str, settings: str, features: np.ndarray) -> None:
        try:
            with self._db:
                self._db.execute("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?)",
                                 (key, settings, features.astype(np.float32).tobytes(),
                                  time.time()))
        except sqlite3.Error as exc:
            raise WriteError(f"cannot write the baseline feature cache: {exc}",
                             self.path) from None

    def close(self) -> None:
        self._db.close()


def settings_key(config: Config) -> str:
    return f"v{FEATURES_VERSION}:{config.model.window_seconds:g}s@{SAMPLE_RATE}"


def features_for(paths: Sequence[str], config: Config, *, threads: int = 2,
                 progress: Callable[[int, int], None] | None = None,
                 ) -> tuple[list[np.ndarray | None], ExtractStats]:
    """Baseline features of every file (cached ones read, the rest decoded and cached)."""
    from tagger.audio.decode import decode_window

    started = time.perf_counter()
    stats = ExtractStats()
    settings = settings_key(config)
    cache = FeatureCache.for_config(config)
    results: list[np.ndarray | None] = [None] * len(paths)
    try:
        todo, keys = [], {}
        for i, path in enumerate(paths):
            try:
                keys[i] = audio_key(path)  # reads the file: once, for the lookup and the put
                hit = cache.get(keys[i], settings)
            except TaggerError as exc:
                stats.failed += 1
                stats.failures[path] = str(exc)
                continue
            if hit is not None and hit.shape == (DIMS,):
                results[i] = hit
                stats.cached += 1
            else:
                todo.append(i)

        def compute(i: int) -> np.ndarray:
            audio = decode_window(paths[i], window_s=config.model.window_seconds,
                                  sample_rate=SAMPLE_RATE, ffmpeg=config.decode.ffmpeg,
                                  timeout_s=config.decode.timeout_seconds)
            return track_features(audio.samples)

        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            done = len(paths) - len(todo)
            for i, future in zip(todo, [pool.submit(compute, i) for i in todo]):
                try:
                    results[i] = future.result()
                    cache.put(keys[i], settings, results[i])
                    stats.decoded += 1
                except TaggerError as exc:
                    stats.failed += 1
                    stats.failures[paths[i]] = str(exc)
                    log.warning("%s", exc)
                except Exception as exc:  # a decoder or librosa bug must not stop the rest
                    stats.failed += 1
                    stats.failures[paths[i]] = f"unexpected {type(exc).__name__}: {exc}"
                    log.warning("%s: %s", paths[i], stats.failures[paths[i]])
                done += 1
                if progress:
                    progress(done, len(paths))
    finally:
        cache.close()
    stats.seconds = time.perf_counter() - started
    return results, stats


def baseline_held_out(embedded: EmbeddedSet, features: Sequence[np.ndarray | None],
                      folds: np.ndarray, seed: int = 0) -> HeldOut:
    """Fit the baseline on the other folds, predict each fold's tracks (the head's folds).

    A track without features (unreadable for the decoder) counts as a wrong prediction."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = embedded.labels
    true = [t.genre for t in embedded.tracks]
    have = np.array([f is not None for f in features])
    x = np.stack([f if f is not None else np.zeros(DIMS, np.float32) for f in features])
    y = embedded.track_labels
    predicted = ["(no features)"] * len(true)
    confidence = np.zeros(len(true))
    for fold in sorted(set(folds.tolist())):
        train = have & (folds != fold)
        test = np.flatnonzero(have & (folds == fold))
        if not len(test) or len(set(y[train].tolist())) < 2:
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(
            max_iter=2000, class_weight="balanced", random_state=seed))
        model.fit(x[train], y[train])
        probs = model.predict_proba(x[test])
        classes = model.classes_
        for row, t in zip(probs, test):
            best = int(row.argmax())
            predicted[t] = labels[classes[best]]
            confidence[t] = float(row[best])
    return HeldOut(NAME, true, predicted, confidence, folds)
