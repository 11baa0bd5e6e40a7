"""`tagger train` / `tagger eval` on real music: bundles, honest folds, the cache, --from-tags.

A small labelled folder is cut from the real clips in tests/data (10 s excerpts: 3 segments
each): classical (Brahms, Tchaikovsky), electronic (Nexuiz), jazz (Vibe Ace, a trumpet loop).
Other excerpts of the same clips, never trained on, are classified with the bundle. Every test
shares one state directory, so the embeddings are computed once and then read from the cache,
as a user's retraining would.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import namedtuple
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from helpers.audio import encoding_ffmpeg, ffmpeg_run, real_clip
from helpers.configs import write_config
from helpers.library import at_rest

from tagger.cli import main
from tagger.config import config_from_dict, load_config
from tagger.errors import ModelError
from tagger.learn.datasets import GenreMap, folder_dataset, tags_dataset
from tagger.learn.evaluate import segment_split, stratified_folds
from tagger.learn.train import embed, load_backbones
from tagger.library import tags
from tagger.library.catalogue import open_catalogue
from tagger.model.bundle import (
    CARD,
    WEIGHTS,
    bundle_sha256,
    load_bundle,
    resolve_bundle_path,
    write_bundle,
)
from tagger.model.cache import TABLE
from tagger.model.classify import Classifier
from tagger.model.embeddings import CACHE_FILE, EmbeddingCache
from tagger.model.heads import HeadNet
from tagger.results import ModelInfo

pytestmark = pytest.mark.slow

HUNGARIAN = "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg"
TCHAIKOVSKY = "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg"
NEXUIZ = "nexuiz_brainsukker_excerpt.ogg"
VIBE_ACE = "Kevin_MacLeod_-_Vibe_Ace.ogg"
TRUMPET = "sorohanro_-_solo-trumpet-06.ogg"
EXCERPT_S = 10.0
# genre -> (clip, start second) of each excerpt; None: the whole clip
EXCERPTS = {
    "classical": [(HUNGARIAN, 0), (HUNGARIAN, 12), (HUNGARIAN, 24), (TCHAIKOVSKY, 5),
                  (TCHAIKOVSKY, 35), (TCHAIKOVSKY, 65), (TCHAIKOVSKY, 95)],
    "electronic": [(NEXUIZ, 0), (NEXUIZ, 12), (NEXUIZ, 24), (NEXUIZ, 36)],
    "jazz": [(VIBE_ACE, 0), (VIBE_ACE, 12), (VIBE_ACE, 24), (VIBE_ACE, 36), (TRUMPET, None)],
}
# passages of the same recordings that no training excerpt overlaps
HELD_OUT = {(TCHAIKOVSKY, 20): "classical", (NEXUIZ, 48): "electronic", (VIBE_ACE, 48): "jazz"}
LABELS = ["classical", "electronic", "jazz"]
N_TRACKS = sum(len(v) for v in EXCERPTS.values())
SEGMENTS = {"classical": 21, "electronic": 12, "jazz": 13}  # 3 per excerpt, 1 for the loop
N_SEGMENTS = sum(SEGMENTS.values())


def cut(clip: str, start: float | None, out: Path) -> Path:
    """A FLAC excerpt of a real clip (EXCERPT_S long from ``start``; None: all of it)."""
    exe = encoding_ffmpeg("flac")
    if exe is None:
        pytest.skip("no ffmpeg with a FLAC encoder")
    window = [] if start is None else ["-ss", str(start), "-t", str(EXCERPT_S)]
    ffmpeg_run(exe, *window, "-i", str(real_clip(clip)), "-map_metadata", "-1",
               "-c:a", "flac", str(out))
    return out


def excerpt_name(clip: str, start: float | None) -> str:
    return f"{Path(clip).stem[:24]}_{'all' if start is None else int(start)}.flac"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labelled") / "tiny-genres"
    for genre, excerpts in EXCERPTS.items():
        (root / genre).mkdir(parents=True)
        for clip, start in excerpts:
            cut(clip, start, root / genre / excerpt_name(clip, start))
    return root


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> dict[Path, str]:
    folder = tmp_path_factory.mktemp("held-out")
    return {cut(clip, start, folder / excerpt_name(clip, start)): genre
            for (clip, start), genre in HELD_OUT.items()}


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("state")



@pytest.fixture(scope="module")
def config_file(state, tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("config") / "tagger.toml", state)


@pytest.fixture(scope="module")
def trained(labelled, config_file, tmp_path_factory):
    """`tagger train DATASET --out BUNDLE` once; returns (bundle path, CV report, exit code)."""
    out = tmp_path_factory.mktemp("bundles") / "tiny-genres-head"
    report = out.parent / "cv.json"
    code = main(["--config", str(config_file), "train", str(labelled), "--out", str(out),
                 "--folds", "3", "--report", str(report)])
    return out, json.loads(report.read_text()) if report.exists() else None, code


# ---------------------------------------------------------------- folds


def test_folds_never_split_a_track_and_keep_duplicates_together():
    labels = ["a"] * 7 + ["b"] * 4 + ["c"] * 5
    groups = [f"t{i}" for i in range(16)]
    groups[3] = groups[9] = "same-audio"  # one recording in two files (different labels even)
    folds = stratified_folds(labels, 3, seed=1, groups=groups)
    assert set(folds) == {0, 1, 2} and folds[3] == folds[9]
    for label in "abc":  # stratified: each genre spread over the folds as evenly as possible
        per_fold = np.bincount(folds[[i for i, g in enumerate(labels) if g == label]],
                               minlength=3)
        assert per_fold.max() - per_fold.min() <= 2
    segment_tracks = np.repeat(np.arange(16), [10, 3, 1, 10] * 4)
    tested = np.zeros(len(segment_tracks), dtype=int)
    for fold in range(3):
        train, test = segment_split(segment_tracks, folds, fold)
        assert not set(segment_tracks[train]) & set(segment_tracks[test])
        assert len(train) + len(test) == len(segment_tracks)
        tested[test] += 1
    assert (tested == 1).all()  # every segment is tested exactly once
    assert (stratified_folds(labels, 3, seed=1, groups=groups) == folds).all()  # seeded


def test_cv_folds_on_real_tracks_keep_segments_together(trained, labelled, state):
    _, report, code = trained
    assert code == 0
    config = config_from_dict({"state_dir": str(state)})
    embedded = embed(folder_dataset(labelled), config, load_backbones(config))
    paths = [t.path for t in embedded.tracks]
    folds = stratified_folds(list(embedded.track_labels), 3, groups=embedded.keys)
    segment_tracks = embedded.segment_tracks
    assert len(segment_tracks) == N_SEGMENTS
    for fold in range(3):
        train, test = segment_split(segment_tracks, folds, fold)
        train_files = {paths[i] for i in segment_tracks[train]}
        test_files = {paths[i] for i in segment_tracks[test]}
        assert train_files and test_files and not train_files & test_files
        assert {embedded.tracks[i].genre for i in segment_tracks[test]} == set(LABELS)
    assert report["folds"] == 3 and sum(f["tracks"] for f in report["per_fold"]) == N_TRACKS


# ---------------------------------------------------------------- train -> bundle


def test_train_writes_a_valid_bundle(trained):
    out, report, code = trained
    assert code == 0
    card = json.loads((out / CARD).read_text())
    assert card["labels"] == LABELS
    assert card["name"] == "tiny-genres-head"
    assert [b["name"] for b in card["backbones"]] == ["MSD_musicnn", "MTT_musicnn"]
    assert card["sha256"] == bundle_sha256(card, (out / WEIGHTS).read_bytes())
    training = card["training"]
    assert training["source"] == "folder" and training["tracks"] == N_TRACKS
    assert training["tracks_per_genre"] == {g: len(e) for g, e in EXCERPTS.items()}
    assert training["segments_per_genre"] == SEGMENTS
    assert training["created"] and training["options"]["embedding"] == card["embedding"]
    assert card["metrics"]["track_accuracy"] == report["track_accuracy"]
    # the head is plain tensors: loadable without unpickling code
    import torch

    state = torch.load(out / WEIGHTS, weights_only=True)
    net = HeadNet(card["head"]["input_dim"], 3, card["head"]["hidden"])
    net.load_state_dict(state)


def test_retraining_reads_the_cache_and_decodes_nothing(trained, labelled, state, tmp_path):
    assert trained[2] == 0
    config = config_from_dict({"state_dir": str(state)})
    with sqlite3.connect(state / CACHE_FILE) as db:
        rows_before = db.execute(f"select count(*) from {TABLE}").fetchone()[0]
    assert rows_before >= N_TRACKS
    backbones = load_backbones(config)
    embedded = embed(folder_dataset(labelled), config, backbones)
    assert (embedded.stats.cached, embedded.stats.decoded) == (N_TRACKS, 0)
    # the key is the audio: a renamed, retagged copy is still a hit
    copy = tmp_path / "classical" / "renamed copy.flac"
    copy.parent.mkdir()
    shutil.copy(next((labelled / "classical").iterdir()), copy)
    tags.write_genres(copy, ["Symphonic"], 0.5)
    (tmp_path / "jazz").mkdir()
    shutil.copy(next((labelled / "jazz").iterdir()), tmp_path / "jazz" / "x.flac")
    again = embed(folder_dataset(tmp_path), config, backbones)
    assert (again.stats.cached, again.stats.decoded) == (2, 0)
    with EmbeddingCache.for_config(config) as cache:
        assert cache.count() == rows_before


def test_classify_votes_with_the_bundle(trained, held_out, config_file, capsys):
    out, _, code = trained
    assert code == 0
    card = json.loads((out / CARD).read_text())
    capsys.readouterr()
    assert main(["--config", str(config_file), "classify", "--json", "--model", str(out),
                 *map(str, held_out)]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["genre"] for r in results] == list(held_out.values())
    for result in results:
        assert result["model"] == {"name": "tiny-genres-head", "sha256": card["sha256"]}
        assert {c["genre"] for c in result["candidates"]} <= set(LABELS)
        segment = result["segments"][0]["scores"]
        assert "msd:jazz" in segment  # the backbones' tags are still reported
        head = [segment[f"head:{g}"] for g in LABELS]
        assert sum(head) == pytest.approx(1.0, abs=1e-4)  # softmax over the bundle's genres
        assert result["descriptors"] is not None


def test_tagger_toml_selects_a_bundle_relative_to_its_folder(trained, tmp_path):
    out, _, code = trained
    assert code == 0
    shutil.copytree(out, tmp_path / "models" / "mine")
    toml = write_config(tmp_path / "tagger.toml", tmp_path / "state",
                        model={"bundle": "models/mine"})
    config = load_config(str(toml))
    assert resolve_bundle_path(config) == tmp_path / "models" / "mine"
    classifier = Classifier(config)
    card = json.loads((out / CARD).read_text())
    assert classifier.info == ModelInfo("tiny-genres-head", card["sha256"], tuple(LABELS))
    assert Classifier(config_from_dict({})).info.name == "musicnn"


def test_a_tampered_or_foreign_bundle_is_refused(trained, tmp_path, config_file, capsys):
    out, _, code = trained
    assert code == 0
    edited = tmp_path / "edited"
    shutil.copytree(out, edited)
    card = json.loads((edited / CARD).read_text())
    card["labels"] = ["jazz", "electronic", "classical"]  # swapping labels changes predictions
    (edited / CARD).write_text(json.dumps(card))
    capsys.readouterr()
    assert main(["--config", str(config_file), "classify", "--model", str(edited),
                 str(real_clip(TRUMPET))]) == 3
    assert "sha256 does not match" in capsys.readouterr().err
    # trained on other backbone weights: refused even with a consistent sha256
    config = config_from_dict({})
    bundle = load_bundle(out, load_backbones(config).models)
    Fake = namedtuple("Fake", "name sha256")
    write_bundle(tmp_path / "foreign", bundle.net, name="foreign", labels=bundle.labels,
                 embedding=bundle.embedding, head=card["head"],
                 backbones=[Fake("MSD_musicnn", "0" * 64), Fake("MTT_musicnn", "1" * 64)],
                 config=config, training={}, metrics=None)
    with pytest.raises(ModelError, match="backbone MSD_musicnn"):
        load_bundle(tmp_path / "foreign", load_backbones(config).models)


# ---------------------------------------------------------------- eval


REPORT_KEYS = {"track_accuracy", "segment_accuracy", "per_genre", "confusion", "tracks",
               "segments", "labels", "chance", "dataset", "model", "folds"}


def test_eval_cross_validates_and_writes_report_and_plot(labelled, config_file, trained,
                                                         tmp_path, capsys):
    assert trained[2] == 0
    report_path, plot_path = tmp_path / "report.json", tmp_path / "confusion.png"
    capsys.readouterr()
    assert main(["--config", str(config_file), "eval", str(labelled), "--folds", "3",
                 "--report", str(report_path), "--plot", str(plot_path)]) == 0
    printed = capsys.readouterr().out
    assert "track accuracy" in printed and "segment accuracy" in printed
    assert "confusion" in printed and "precision" in printed
    report = json.loads(report_path.read_text())
    assert REPORT_KEYS <= set(report)
    assert report["mode"] == "cross-validation" and report["folds"] == 3
    assert (report["tracks"], report["segments"]) == (N_TRACKS, N_SEGMENTS)
    assert report["embeddings"]["decoded"] == 0  # all from the cache
    matrix = np.array(report["confusion"]["matrix"])
    assert report["confusion"]["labels"] == LABELS and matrix.sum() == N_TRACKS
    assert matrix.sum(axis=1).tolist() == [7, 4, 5]
    assert report["track_accuracy"] == pytest.approx(np.trace(matrix) / N_TRACKS, abs=1e-4)
    for genre, row in report["per_genre"].items():
        assert 0 <= row["recall"] <= 1 and row["tracks"] == len(EXCERPTS[genre])
    # clearly separable genres, even on held-out recordings' excerpts
    assert report["track_accuracy"] >= 0.75 > report["chance"]["uniform"]
    assert 0 < report["segment_accuracy"] <= 1
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(plot_path).shape
    assert width > 150 and height > 150


def test_eval_of_the_default_model_through_the_genre_map(labelled, config_file, trained,
                                                         tmp_path, capsys):
    assert trained[2] == 0
    report_path = tmp_path / "default.json"
    assert main(["--config", str(config_file), "eval", str(labelled), "--model", "musicnn",
                 "--report", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["mode"] == "fixed model" and report["model"]["name"] == "musicnn"
    assert report["tracks"] == N_TRACKS and report["track_accuracy"] > 0.5
    # the default map hears its AudioSet genres through the content gate, whose rows the
    # musicnn head's training did not need: decoded once for them, then cached
    assert main(["--config", str(config_file), "eval", str(labelled), "--model", "musicnn",
                 "--report", str(report_path)]) == 0
    again = json.loads(report_path.read_text())
    assert again["embeddings"]["decoded"] == 0
    assert again["track_accuracy"] == report["track_accuracy"]


# ---------------------------------------------------------------- --from-tags round trip


def test_from_tags_round_trip_tags_the_untagged_rest(labelled, held_out, trained, state,
                                                     tmp_path, capsys):
    """A library the user tagged in their own spelling, with some files left bare: the
    catalogue knows it; train on its tags; a scan with the bundle tags the bare files."""
    assert trained[2] == 0
    root = tmp_path / "Music"
    spelling = {"classical": ["Classical", "classical"], "electronic": ["Electronica"],
                "jazz": ["Jazz"]}
    for genre in LABELS:
        for i, source in enumerate(sorted((labelled / genre).iterdir())):
            copy = root / genre.title() / source.name
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, copy)
            tags.write_genres(copy, [spelling[genre][i % len(spelling[genre])]], None)
    unsorted = root / "Unsorted"
    unsorted.mkdir()
    bare = {}
    for source, genre in held_out.items():
        shutil.copy(source, unsorted / source.name)
        bare[str(unsorted / source.name)] = genre
    polka = unsorted / "polka.flac"
    shutil.copy(held_out_path(held_out, "classical"), polka)
    tags.write_genres(polka, ["Polka"], None)  # one track: too few to learn
    db = f"sqlite:///{tmp_path / 'library.sqlite'}"
    with open_catalogue(db) as catalogue:  # the catalogue knows the library (as a scan leaves it)
        catalogue.mark_pending_many(
            (str(p), p.stat().st_size, p.stat().st_mtime_ns, "flac") for p in root.rglob("*.flac"))

    config = write_config(tmp_path / "tagger.toml", state, tags={"write": "if_empty"})
    bundle = tmp_path / "my-genres"
    capsys.readouterr()
    assert main(["--config", str(config), "train", "--from-tags", "--db", db, str(root),
                 "--min-tracks", "3", "--map", "electronica=electronic", "--folds", "0",
                 "--out", str(bundle)]) == 0
    card = json.loads((bundle / CARD).read_text())
    assert card["labels"] == ["Classical", "Jazz", "electronic"]  # the user's commoner spelling
    assert card["training"]["source"] == "tags"
    assert card["training"]["tracks_per_genre"] == {"Classical": 7, "Jazz": 5, "electronic": 4}
    assert card["training"]["left_out"] == {"unreadable": 0, "genres_dropped": {"Polka": 1},
                                            "unlabelled": len(bare)}
    # the same audio as the labelled folder's excerpts (other tags, other paths): cached
    assert f"{N_TRACKS} cached, 0 decoded" in capsys.readouterr().err

    # the bundle tags the files the user left bare, and the catalogue says which model did
    at_rest(unsorted)
    assert main(["--config", str(config), "scan", "--db", db, "--workers", "1",
                 "--model", str(bundle), str(unsorted)]) == 0
    expected = {"classical": "Classical", "electronic": "Electronic", "jazz": "Jazz"}
    for path, genre in bare.items():
        assert tags.read_genres(path) == [expected[genre]]
    assert tags.read_genres(polka) == ["Polka"]  # the user's own: kept
    with open_catalogue(db) as catalogue:
        for path in bare:
            prediction = catalogue.track(path).prediction
            assert (prediction.model.name, prediction.model.sha256) == ("my-genres",
                                                                        card["sha256"])
        # genres tagger wrote are not user labels: a retrain still sees those files as bare
        again = tags_dataset(catalogue, under=[str(root)], min_tracks=3,
                             genre_map=GenreMap({"electronica": "electronic"}))
    assert set(again.unlabelled) == set(bare)
    assert len(again.tracks) == N_TRACKS


def held_out_path(held_out: dict[Path, str], genre: str) -> Path:
    return next(p for p, g in held_out.items() if g == genre)
