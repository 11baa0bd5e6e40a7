"""`tagger learn`: grouped folds, the baseline, calibration, the auto threshold, adoption.

The end-to-end tests build a tiny real library from 10 s excerpts of the clips in tests/data
(3 segments each), tagged with mutagen as a user would (artist, album, their own genre
spelling; some files left bare), then run `tagger scan` and `tagger learn --adopt`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mutagen
import numpy as np
import pytest
from helpers.audio import encoding_ffmpeg, ffmpeg_run, real_clip
from helpers.library import at_rest

from tagger.cli import main
from tagger.config import config_from_dict
from tagger.errors import ConfigError
from tagger.learn.calibrate import (
    choose_threshold,
    cross_calibrated,
    expected_calibration_error,
    fit_calibrator,
)
from tagger.learn.datasets import LabelledTrack
from tagger.learn.evaluate import default_grouping, groups_for, stratified_folds
from tagger.learn.train import load_backbones
from tagger.library.catalogue import open_catalogue
from tagger.model.cache import segment_settings
from tagger.model.calibration import Calibrator
from tagger.model.heads import HeadOptions

HUNGARIAN = "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg"
TCHAIKOVSKY = "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg"
NEXUIZ = "nexuiz_brainsukker_excerpt.ogg"
VIBE_ACE = "Kevin_MacLeod_-_Vibe_Ace.ogg"
TRUMPET = "sorohanro_-_solo-trumpet-06.ogg"


def _excerpts(clip, artist, album, genres, starts=(0, 12, 24, 36)):
    """Excerpts of one clip as one album's tracks: ``(clip, start, artist, album, genre)``, a
    genre (as the user spelled it; None: left bare) for each start."""
    return [(clip, start, artist, album, genre) for start, genre in zip(starts, genres)]


# (clip, start, artist, album, genre); start None: the whole clip
LIBRARY = [
    *_excerpts(HUNGARIAN, "Johannes Brahms", "Hungarian Dances",
               ["Classical", "classical", "Classical"]),
    *_excerpts(TCHAIKOVSKY, "Tchaikovsky", "Nutcracker", ["Classical", "Classical", None],
               starts=(5, 35, 65)),
    *_excerpts(NEXUIZ, "Parapraxis", "Nexuiz", ["Electronica", "Electronica"]),
    *_excerpts(NEXUIZ, "Nexuiz Crew", "Nexuiz Remixes", ["Electronica", "Electronica"],
               starts=(24, 36)),
    *_excerpts(VIBE_ACE, "Kevin MacLeod", "Jazz Sampler", ["Jazz", "Jazz", None]),
    (TRUMPET, None, "sorohanro", "Solo Trumpet", "Jazz"),
    (TRUMPET, None, "sorohanro", "Solo Trumpet", "Polka"),  # same audio, another file
]


# ---------------------------------------------------------------- folds


def synthetic_tracks() -> list[LabelledTrack]:
    """3 genres x 4 artists x 3 tracks (artist i of a genre: album i)."""
    return [LabelledTrack(f"/m/{g}/{a}/{t}.flac", g, f"{g}-artist-{a}", f"{g}-album-{a}")
            for g in ("classical", "jazz", "rock") for a in range(4) for t in range(3)]


def artist_sides(tracks, folds) -> dict[str, set[int]]:
    sides: dict[str, set[int]] = {}
    for track, fold in zip(tracks, folds):
        sides.setdefault(track.artist, set()).add(int(fold))
    return sides


def test_grouped_folds_keep_each_artist_on_one_side():
    tracks = synthetic_tracks()
    labels = [t.genre for t in tracks]
    for seed in range(5):
        grouped = stratified_folds(labels, 3, seed, groups=groups_for(tracks, "artist"))
        assert all(len(s) == 1 for s in artist_sides(tracks, grouped).values())
        # every genre is still tested in every fold (4 artists over 3 folds)
        for fold in range(3):
            assert {t.genre for t, f in zip(tracks, grouped) if f == fold} == {
                "classical", "jazz", "rock"}
    # the same check fails on folds by track: artists straddle the split
    ungrouped = stratified_folds(labels, 3, 0)
    assert any(len(s) > 1 for s in artist_sides(tracks, ungrouped).values())


def test_groups_fall_back_to_album_then_audio_and_join_the_same_audio():
    tracks = [
        LabelledTrack("/a.flac", "x", "Artist", "One"),
        LabelledTrack("/b.flac", "x", "ARTIST ", "Two"),  # case and blanks do not matter
        LabelledTrack("/c.flac", "x", None, "Two"),  # no artist: its album
        LabelledTrack("/d.flac", "x", None, None),  # nothing: its audio
        LabelledTrack("/e.flac", "x", "Other", None),  # same audio as /d
    ]
    ids = ["id-a", "id-b", "id-c", "id-d", "id-d"]
    groups = groups_for(tracks, "artist", ids)
    assert groups[0] == groups[1] == "artist:artist"
    assert groups[2] == "album:two"
    assert groups[3] == groups[4]  # one recording, whatever its tags
    album = groups_for(tracks, "album", ids)
    assert album[1] == album[2] == "album:two" != album[0]
    assert len(set(groups_for(tracks, "track", ids))) == 4
    assert default_grouping(tracks) == "artist"
    assert default_grouping([LabelledTrack("/x", "g")]) == "track"
    with pytest.raises(ValueError):
        groups_for(tracks, "label")


# ---------------------------------------------------------------- calibration


def test_expected_calibration_error_on_a_known_case():
    conf = [0.95, 0.95, 0.15, 0.15, 0.55]
    right = [1, 0, 0, 0, 1]
    # bin 9: accuracy 0.5 vs 0.95 (2 tracks); bin 1: 0 vs 0.15 (2); bin 5: 1 vs 0.55 (1)
    assert expected_calibration_error(conf, right) == pytest.approx(
        (2 * 0.45 + 2 * 0.15 + 1 * 0.45) / 5)
    # 1.0 falls in the last bin; a perfectly calibrated bin adds nothing
    assert expected_calibration_error([1.0, 1.0, 0.5, 0.5], [1, 1, 1, 0]) == pytest.approx(0)


def test_calibrators_fix_an_overconfident_model_on_held_out_folds():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.2, 1.0, 3000)
    right = rng.uniform(size=conf.size) < conf ** 3  # right far less often than it says
    folds = np.arange(conf.size) % 5
    before = expected_calibration_error(conf, right)
    assert before > 0.15
    for method in ("isotonic", "temperature"):
        after = expected_calibration_error(cross_calibrated(conf, right, folds, method), right)
        assert after < 0.04, method
        calibrator = fit_calibrator(conf, right, method)
        again = Calibrator.from_dict(json.loads(json.dumps(calibrator.as_dict())))
        values = again.apply([0.3, 0.6, 0.9])
        assert np.all(np.diff(values) >= 0)  # monotone
        assert values == pytest.approx([0.3 ** 3, 0.6 ** 3, 0.9 ** 3], abs=0.08)


def test_auto_threshold_reaches_the_target_precision_on_held_out_tracks():
    rng = np.random.default_rng(1)
    conf = rng.uniform(size=8000)
    right = rng.uniform(size=conf.size) < conf  # calibrated: P(right | c) = c
    fit, held = slice(0, 4000), slice(4000, None)
    threshold, precision, coverage = choose_threshold(conf[fit], right[fit], 0.9)
    # tracks above t are right (1 + t) / 2 of the time: t = 0.8 keeps a fifth of them
    assert 0.75 < threshold < 0.85 and precision >= 0.9
    assert coverage == pytest.approx(0.2, abs=0.04)
    kept = conf[held] >= threshold
    assert right[held][kept].mean() >= 0.9 - 0.02  # holds on tracks it never saw
    assert kept.mean() == pytest.approx(coverage, abs=0.03)
    # the lowest such threshold: one step lower misses the target
    lower = np.sort(np.unique(conf[fit]))
    below = lower[np.searchsorted(lower, threshold) - 1]
    assert right[fit][conf[fit] >= below].mean() < 0.9
    assert choose_threshold([0.9, 0.8], [False, False], 0.9) == (None, None, 0.0)


def test_min_confidence_is_a_number_or_auto():
    assert config_from_dict({"tags": {"min_confidence": "auto"}}).tags.min_confidence == "auto"
    assert config_from_dict({"tags": {"min_confidence": 0.5}}).tags.min_confidence == 0.5
    assert config_from_dict({}).tags.target_precision == 0.9
    for bad in ({"min_confidence": "sometimes"}, {"min_confidence": 1.5},
                {"target_precision": 0}, {"target_precision": 2}):
        with pytest.raises(ConfigError, match="tags"):
            config_from_dict({"tags": bad})


# ---------------------------------------------------------------- a tiny real library


def cut(clip: str, start: float | None, out: Path) -> Path:
    exe = encoding_ffmpeg("flac")
    if exe is None:
        pytest.skip("no ffmpeg with a FLAC encoder")
    window = [] if start is None else ["-ss", str(start), "-t", "10"]
    ffmpeg_run(exe, *window, "-i", str(real_clip(clip)), "-map_metadata", "-1",
               "-c:a", "flac", str(out))
    return out


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """(music root, config file, state dir): the tiny library, scanned once."""
    base = tmp_path_factory.mktemp("learn")
    root, state = base / "Music", base / "state"
    for i, (clip, start, artist, album, genre) in enumerate(LIBRARY):
        folder = root / artist
        folder.mkdir(parents=True, exist_ok=True)
        path = cut(clip, start, folder / f"{i:02d}-{Path(clip).stem[:16]}.flac")
        audio = mutagen.File(path, easy=True)
        audio["artist"], audio["album"] = [artist], [album]
        if genre:
            audio["genre"] = [genre]
        audio.save()
    config = base / "tagger.toml"
    config.write_text(f'state_dir = "{state}"\n[library]\nroots = ["{root}"]\n'
                      '[tags]\nmin_confidence = "auto"\n', encoding="utf-8")
    at_rest(root)
    assert main(["--config", str(config), "-q", "scan", "--workers", "1"]) == 0
    return root, config, state


def test_learn_adopts_a_head_from_the_library_labels(library, tmp_path, capsys):
    root, config, state = library
    report, plot = tmp_path / "learn.json", tmp_path / "reliability.png"
    capsys.readouterr()
    code = main(["--config", str(config), "learn", "--min-tracks", "3", "--folds", "2",
                 "--map", "electronica=electronic", "--adopt", "--report", str(report),
                 "--plot", str(plot)])
    out = capsys.readouterr()
    assert code == 0, out.err
    printed = out.out
    assert "cannot learn (fewer than 3 tracks): Polka (1)" in printed
    assert "by artist" in printed and "by track" in printed
    # scan cached what a penultimate head reads: nothing to decode
    assert "embeddings: 12 cached, 0 decoded" in printed
    figures = json.loads(report.read_text())
    # the user's own spellings, case unified; tagger's own writes (the bare files) are no label
    assert figures["tracks_per_genre"] == {"Classical": 5, "Jazz": 3, "electronic": 4}
    assert set(figures["folds"]) == {"artist", "track"}
    # the head on each feature set (the content gate cached its AudioSet rows: auto tries all)
    assert figures["features"]["evaluated"] == ["musicnn", "audioset", "both"]
    for grouping in figures["folds"].values():
        assert set(grouping["models"]) == {"head", "default", "head:musicnn", "head:audioset",
                                           "head:both"}
        head = grouping["models"]["head"]
        assert sum(r["tracks"] for r in head["per_genre"].values()) == 12
    assert figures["embedding"] == "penultimate"
    with open_catalogue(f"sqlite:///{state / 'catalogue.sqlite'}") as catalogue:
        adopted = catalogue.adopted_model()
        assert adopted is not None and adopted.name == "library"
        bundle = Path(adopted.bundle_path)
        assert bundle.parent == state / "models"
        assert bundle.name == f"library-{adopted.sha256[:12]}" and (bundle / "head.pt").is_file()
        assert sorted(adopted.labels) == ["Classical", "Jazz", "electronic"]
        assert adopted.figures["folds"]["artist"]["models"]["head"]["track_accuracy"] >= 0
    # 12 labelled tracks are too few to calibrate (MIN_TRACKS): said, and no plot
    assert "none fitted" in printed
    assert not plot.exists()
    # with the baseline on the same folds: its features need one decode, then are cached
    again = tmp_path / "again.json"
    for decoded in (12, 0):
        assert main(["--config", str(config), "learn", "--min-tracks", "3", "--folds", "2",
                     "--baseline", "--report", str(again)]) == 0
        printed = capsys.readouterr().out
        assert "embeddings: 12 cached, 0 decoded" in printed
        assert f"baseline features: {12 - decoded} cached, {decoded} decoded" in printed
    assert (state / "baseline.sqlite").stat().st_mode & 0o077 == 0  # private, as the state dir
    baseline = json.loads(again.read_text())["folds"]["artist"]["models"]["baseline"]
    assert sum(r["tracks"] for r in baseline["per_genre"].values()) == 12
    assert 0 <= baseline["track_accuracy"] <= 1


def test_learn_records_both_calibrations_and_the_bundle_carries_its_own(library):
    """The calibration path of learn --adopt (the tiny library is below MIN_TRACKS, so the
    floor is lowered here): the default map's under the identity a classifier of the default
    map records (the shipped pair's and, with its AudioSet genres, EfficientAT's), the head's
    under the adopted bundle's, and in the bundle's card."""
    from tagger.config import load_config
    from tagger.learn.datasets import GenreMap
    from tagger.learn.from_library import learn

    _, config_path, state = library
    config = load_config(str(config_path))
    with open_catalogue(config.database_url) as catalogue:
        outcome = learn(catalogue, config, genre_map=GenreMap.parse(["electronica=electronic"]),
                        min_tracks=3, folds=2, adopt=True, name="calibrated",
                        min_calibration_tracks=6)
        default = catalogue.calibration_for(outcome.default_sha256)
        head = catalogue.calibration_for(outcome.bundle.sha256)
        adopted = catalogue.adopted_model()
    assert default is not None and head is not None
    from tagger.model.classify import head_sha256

    assert outcome.default_sha256 == head_sha256(config)  # what scan and review look up
    assert adopted.sha256 == outcome.bundle.sha256 and adopted.name == "calibrated"
    for record, report in ((default, outcome.calibrations["default"]),
                           (head, outcome.calibrations["head"])):
        assert record.tracks == 12
        assert record.ece_before == pytest.approx(report.ece_before)
        assert Calibrator(record.method.value, record.parameters).apply([0.2, 0.8]) == \
            pytest.approx(report.calibrator.apply([0.2, 0.8]))
        if report.threshold is not None:
            assert record.precision >= record.target_precision == 0.9
    assert outcome.bundle.calibrator == outcome.calibrations["head"].calibrator
    assert outcome.bundle.path.parent == state / "models"


def test_scan_applies_the_recorded_calibration_and_its_threshold(library, caplog):
    root, config, state = library
    db = f"sqlite:///{state / 'catalogue.sqlite'}"
    path = str(sorted(root.rglob("*.flac"))[0])
    with open_catalogue(db) as catalogue:
        before = catalogue.track(path).prediction
        raw, sha = before.confidence, before.model.sha256
        calibrator = Calibrator("temperature", {"temperature": 3.0, "bias": 1.0})
        catalogue.record_calibration(sha, "temperature", calibrator.parameters,
                                     threshold=0.99, precision=0.9, coverage=0.0, tracks=40)
    assert main(["--config", str(config), "-q", "scan", "--force", "--workers", "1",
                 "--model", "musicnn", path]) == 0
    with open_catalogue(db) as catalogue:
        record = catalogue.track(path)
        after = record.prediction
    assert after.model.sha256 == sha
    assert after.confidence == pytest.approx(calibrator(raw), abs=1e-4)
    assert after.confidence != pytest.approx(raw, abs=1e-3)
    assert record.not_written is not None and record.not_written.value in (
        "below_threshold", "kept_user_genre")


def test_auto_without_calibration_falls_back_and_says_so(tmp_path, caplog):
    clip = tmp_path / "Music" / "trumpet.flac"
    clip.parent.mkdir()
    cut(TRUMPET, None, clip)
    config = tmp_path / "tagger.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n[tags]\nmin_confidence = "auto"\n',
                      encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert main(["--config", str(config), "scan", "--workers", "1", "--dry-run",
                     str(clip.parent)]) == 0
    said = [r.getMessage() for r in caplog.records if "min_confidence" in r.getMessage()]
    assert len(said) == 1 and "using 0.35" in said[0]


# ---------------------------------------------------------------- AudioSet features


def test_auto_keeps_musicnn_unless_another_feature_set_is_better_by_artist():
    """The rule of --features auto, on given held-out figures: a set must beat musicnn's
    balanced accuracy on the grouped folds; ties go to musicnn, then to fewer inputs."""
    from tagger.learn.from_library import Comparison, choose_features

    def grouped(musicnn, audioset, both):
        reports = {f"head:{name}": {"balanced_track_accuracy": value}
                   for name, value in (("musicnn", musicnn), ("audioset", audioset),
                                       ("both", both))}
        return Comparison("artist", np.zeros(4, dtype=np.int64), {}, reports)

    sets = ("musicnn", "audioset", "both")
    assert choose_features(grouped(0.7, 0.7, 0.7), sets).chosen == "musicnn"
    assert choose_features(grouped(0.7, 0.6, 0.69), sets).chosen == "musicnn"
    assert choose_features(grouped(0.7, 0.71, 0.7), sets).chosen == "audioset"
    assert choose_features(grouped(0.7, 0.75, 0.8), sets).chosen == "both"
    assert choose_features(grouped(0.7, 0.8, 0.8), sets).chosen == "audioset"
    forced = choose_features(grouped(0.9, 0.5, 0.5), sets, "both")
    assert (forced.chosen, forced.requested) == ("both", "both")
    assert "beats musicnn" in choose_features(grouped(0.5, 0.6, 0.5), sets).reason


def test_learn_compares_every_feature_set_on_the_same_folds_from_the_gate_cache(library):
    from tagger.config import load_config
    from tagger.learn.datasets import GenreMap
    from tagger.learn.from_library import learn
    from tagger.learn.train import load_gate
    from tagger.model.cache import EmbeddingCache
    from tagger.model.content import gate_settings

    _, config_path, _ = library
    config = load_config(str(config_path))
    with open_catalogue(config.database_url) as catalogue:
        outcome = learn(catalogue, config, genre_map=GenreMap.parse(["electronica=electronic"]),
                        min_tracks=3, folds=2)
    embedded = outcome.embedded
    assert outcome.features.evaluated == ("musicnn", "audioset", "both")
    # nothing decoded: musicnn's rows and the content gate's, both from the scan's cache
    stats = embedded.stats
    assert (stats.cached, stats.decoded, stats.gate_cached, stats.gate_computed) == (12, 0, 12, 0)
    with EmbeddingCache.for_config(config) as cache:
        rows = cache.get_many(embedded.keys, load_gate(config).sha256,
                              gate_settings(config.model.window_seconds))
    assert len(rows) == 12
    for emb, gate in zip(embedded.embeddings, embedded.gate):
        assert gate.penultimate.shape[1] == 512
        np.testing.assert_array_equal(gate.penultimate, rows[emb.key].penultimate)
    # every model on the very same folds, every track held out once
    for comparison in outcome.comparisons:
        for key in ("default", "head:musicnn", "head:audioset", "head:both"):
            assert np.array_equal(comparison.held[key].folds, comparison.folds)
            per_genre = comparison.reports[key]["per_genre"]
            assert sum(r["tracks"] for r in per_genre.values() if r["tracks"]) == 12
    segments = sum(e.segments for e in embedded.embeddings)
    for features, width in (("musicnn", 400), ("audioset", 512), ("both", 912)):
        options = HeadOptions(embedding="penultimate", features=features)
        assert embedded.head_input(options, load_backbones(config)).shape == (segments, width)
    # the choice follows the rule on the grouped folds (by artist)
    grouped = outcome.grouped
    assert grouped.grouping == "artist"
    best = {k: grouped.reports[f"head:{k}"]["balanced_track_accuracy"]
            for k in outcome.features.evaluated}
    chosen = outcome.features.chosen
    assert outcome.options.features == chosen
    assert grouped.held["head"] is grouped.held[f"head:{chosen}"]
    if chosen == "musicnn":
        assert all(best[k] <= best["musicnn"] for k in best)
    else:
        assert best[chosen] > best["musicnn"]


def test_learn_features_musicnn_alone_and_the_gate_off(library, tmp_path, capsys):
    root, config_path, state = library
    report = tmp_path / "learn.json"
    args = ["learn", "--min-tracks", "3", "--folds", "2", "--report", str(report)]
    assert main(["--config", str(config_path), *args, "--features", "musicnn"]) == 0
    printed = capsys.readouterr().out
    assert "embeddings: 12 cached, 0 decoded" in printed
    # the default map compared with it hears its AudioSet genres from the gate's cached rows
    assert "AudioSet (content gate): 12 cached, 0 computed" in printed
    figures = json.loads(report.read_text())
    assert figures["features"]["evaluated"] == ["musicnn"]
    assert figures["features"]["chosen"] == "musicnn"
    # with [content] gate = false there are no AudioSet embeddings to learn from
    off = tmp_path / "gate-off.toml"
    off.write_text(config_path.read_text(encoding="utf-8") + "[content]\ngate = false\n",
                   encoding="utf-8")
    assert main(["--config", str(off), *args, "--features", "audioset"]) == 2
    assert "[content] gate = true" in capsys.readouterr().err
    assert main(["--config", str(off), *args]) == 0  # auto: musicnn alone, and says why
    printed = capsys.readouterr().out
    assert "[content] gate = false" in printed
    assert json.loads(report.read_text())["features"]["evaluated"] == ["musicnn"]


def test_the_classifier_pairs_each_segment_with_the_gate_segment_covering_it():
    """A whole real track: ten 3 s segments over the middle 30 s, the gate's two 10 s
    segments at its start and end; the first five take the first, the last five the second."""
    from tagger.audio.features import prepare_track
    from tagger.model.classify import Classifier

    config = config_from_dict({})
    track = prepare_track(str(real_clip(VIBE_ACE)), config)
    classifier = Classifier(config)
    _, heard = classifier.hear(track)
    assert len(track.starts_s) == 10 and track.starts_s[0] > 10  # the middle of the track
    assert heard.starts_s == (0.0, 20.0)
    aligned = classifier.aligned_gate([(track.starts_s, heard)])
    np.testing.assert_array_equal(aligned.penultimate, heard.penultimate[[0] * 5 + [1] * 5])


def test_an_adopted_head_on_both_feature_sets_scans_and_retags_from_both_caches(
        library, tmp_path, capsys):
    import dataclasses

    from tagger.config import load_config
    from tagger.learn.datasets import GenreMap
    from tagger.learn.from_library import learn
    from tagger.library import tags
    from tagger.model.cache import EmbeddingCache
    from tagger.model.classify import Classifier

    root, config_path, state = library
    # every prediction written, whatever its confidence: the genre in the file is the head's
    written = tmp_path / "tagger.toml"
    written.write_text(config_path.read_text(encoding="utf-8").replace(
        'min_confidence = "auto"', "min_confidence = 0.0"), encoding="utf-8")
    config = load_config(str(written))
    with open_catalogue(config.database_url) as catalogue:
        outcome = learn(catalogue, config, genre_map=GenreMap.parse(["electronica=electronic"]),
                        min_tracks=3, folds=2, features="both", adopt=True, name="both")
    bundle = outcome.bundle
    assert bundle.features == "both" and bundle.card["head"]["input_dim"] == 912
    assert {b["name"] for b in bundle.card["backbones"]} == {
        "MSD_musicnn", "MTT_musicnn", "EfficientAT_mn04_as"}
    # a new file, scanned under the adopted head (the gate on: its default)
    new = root / "New Arrivals" / "vibe.flac"
    new.parent.mkdir()
    cut(VIBE_ACE, 50, new)
    at_rest(new.parent)
    assert main(["--config", str(written), "-q", "scan", "--workers", "1", str(new)]) == 0
    with open_catalogue(config.database_url) as catalogue:
        record = catalogue.track(str(new))
    prediction = record.prediction
    assert prediction.model.sha256 == bundle.sha256
    assert prediction.genre in bundle.labels
    assert [g.casefold() for g in tags.read_genres(str(new))] == [prediction.genre.casefold()]
    # the same vote again from the two caches (musicnn's rows and the gate's): what retag does
    classifier = Classifier(dataclasses.replace(
        config, model=dataclasses.replace(config.model, bundle=str(bundle.path))))
    with EmbeddingCache.for_config(config) as cache:
        key = record.content_id
        musicnn = cache.get_scan(key, classifier.backbones.sha256, segment_settings(config))
        gate = classifier.gate_cached(cache, [key])
    again = classifier.classify_cached([(str(new), musicnn)], gate)[0]
    assert again.vote.genre == prediction.genre
    assert again.vote.confidence == pytest.approx(prediction.confidence, abs=2e-3)
    # retag: every catalogued track re-predicted under it from the caches, none decoded
    capsys.readouterr()
    assert main(["--config", str(written), "retag", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["model"]["sha256"] == bundle.sha256
    assert summary["need_scan"] == [] and summary["decoded"] == 0
    assert summary["repredicted"] == summary["considered"] >= 13
    # such a head cannot run without the gate: said at load, before anything is classified
    off = tmp_path / "gate-off.toml"
    off.write_text(written.read_text(encoding="utf-8") + "[content]\ngate = false\n",
                   encoding="utf-8")
    assert main(["--config", str(off), "scan", "--force", str(new)]) == 2
    assert "[content] gate = true" in capsys.readouterr().err


def test_tracks_without_the_gate_rows_are_decoded_once_for_them(library):
    """A track scanned before the gate (or with it off) has musicnn's rows only: learning on
    the AudioSet features decodes it once more, and caches the gate's rows for next time."""
    import sqlite3

    from tagger.config import load_config
    from tagger.learn.datasets import GenreMap
    from tagger.learn.from_library import library_labels
    from tagger.learn.train import embed, load_gate
    from tagger.model.cache import CACHE_FILE, TABLE, EmbeddingCache
    from tagger.model.content import gate_settings

    _, config_path, _ = library
    config = load_config(str(config_path))
    with open_catalogue(config.database_url) as catalogue:
        dataset = library_labels(catalogue, genre_map=GenreMap.parse(["electronica=electronic"]),
                                 min_tracks=3).dataset
    backbones, gate = load_backbones(config), load_gate(config)
    settings = gate_settings(config.model.window_seconds)
    first = embed(dataset, config, backbones, pooled=False, gate=gate)
    forgotten = first.keys[:3]
    with sqlite3.connect(config.state_path / CACHE_FILE) as db:
        db.executemany(f"DELETE FROM {TABLE} WHERE content_id = ? AND backbone = ?",
                       [(key, gate.sha256) for key in forgotten])
    again = embed(dataset, config, backbones, pooled=False, gate=gate)
    stats = again.stats
    assert (stats.cached, stats.decoded, stats.gate_cached, stats.gate_computed) == (9, 3, 9, 3)
    for before, after in zip(first.gate, again.gate):  # the same audio heard again
        assert after.starts_s == before.starts_s
        assert np.corrcoef(np.ravel(after.penultimate), np.ravel(before.penultimate))[0, 1] > 0.99
    with EmbeddingCache.for_config(config) as cache:
        assert set(cache.get_many(forgotten, gate.sha256, settings)) == set(forgotten)
    third = embed(dataset, config, backbones, pooled=False, gate=gate).stats
    assert (third.decoded, third.gate_computed) == (0, 0)


def test_train_eval_and_classify_with_a_bundle_on_the_audioset_features(library, tmp_path,
                                                                        capsys):
    """``tagger train --features audioset``: a bundle whose head reads the content gate's
    embeddings (from the scan's cache), which ``classify --model`` and ``eval --model`` use."""
    root, config_path, _ = library
    bundle = tmp_path / "audioset-head"
    labels = ["--from-tags", "--min-tracks", "3", "--map", "electronica=electronic"]
    capsys.readouterr()
    assert main(["--config", str(config_path), "train", *labels, "--features", "audioset",
                 "--folds", "2", "--out", str(bundle)]) == 0
    out = capsys.readouterr()
    assert "head mlp on AudioSet" in out.out
    assert "embeddings: 12 cached, 0 decoded" in out.err
    assert "AudioSet (content gate): 12 cached, 0 computed" in out.err
    card = json.loads((bundle / "bundle.json").read_text())
    assert card["features"] == "audioset" and card["head"]["input_dim"] == 512
    assert card["training"]["options"]["features"] == "audioset"
    track = str(sorted(root.rglob("*.flac"))[0])
    assert main(["--config", str(config_path), "classify", "--json", "--model", str(bundle),
                 track]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["model"]["sha256"] == card["sha256"]
    assert result["genre"] in card["labels"]
    assert main(["--config", str(config_path), "eval", *labels, "--model", str(bundle),
                 "--no-baseline", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["model"]["sha256"] == card["sha256"] and report["tracks"] == 12
    # an edited feature set is another bundle: refused at load
    card["features"] = "both"
    (bundle / "bundle.json").write_text(json.dumps(card), encoding="utf-8")
    assert main(["--config", str(config_path), "classify", "--model", str(bundle),
                 track]) == 3
    assert "sha256 does not match" in capsys.readouterr().err
