"""The embedding cache a scan fills, re-prediction from it, and `tagger retag` on real files.

One small real library (the clips of tests/data and FLAC excerpts of them: distinct audio) is
scanned once per module with the default genre map; a head is then trained on the same audio
(`tagger train`, penultimate embedding: read from the scan's cache), adopted, and the
library retagged under it with no decode.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.audio import encoding_ffmpeg, ffmpeg_run, real_clip
from helpers.configs import write_config
from helpers.library import at_rest
from helpers.votes import assert_same_vote

from tagger.audio.features import prepare_track
from tagger.cli import main
from tagger.config import Config, load_config
from tagger.library import tags
from tagger.library.catalogue import open_catalogue
from tagger.model.bundle import read_card
from tagger.model.cache import CACHE_FILE, TABLE, EmbeddingCache, segment_settings
from tagger.model.classify import Classifier
from tagger.model.content import gate_settings

pytestmark = pytest.mark.slow

HUNGARIAN = "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg"
TCHAIKOVSKY = "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg"
NEXUIZ = "nexuiz_brainsukker_excerpt.ogg"
VIBE_ACE = "Kevin_MacLeod_-_Vibe_Ace.ogg"


def cut(clip: str, start: float, out: Path, seconds: float = 12.0) -> Path:
    exe = encoding_ffmpeg("flac")
    if exe is None:
        pytest.skip("no ffmpeg with a FLAC encoder")
    ffmpeg_run(exe, "-ss", str(start), "-t", str(seconds), "-i", str(real_clip(clip)),
               "-map_metadata", "-1", "-c:a", "flac", str(out))
    at_rest(out)
    return out


def copy_bare(clip: str, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(real_clip(clip), out)
    out.chmod(0o644)
    tags.write_genres(out, [], None)  # no genre: a file the user never tagged
    at_rest(out)
    return out



def cache_rows(state: Path, settings: str | None = None) -> dict[str, tuple]:
    """The cache's rows of musicnn's embeddings (``settings``: another backbone's segments,
    e.g. the content gate's)."""
    with sqlite3.connect(state / CACHE_FILE) as db:
        return {key: (segments, pen, pooled) for key, segments, pen, pooled in db.execute(
            f"SELECT content_id, segments, penultimate, pooled FROM {TABLE} "
            "WHERE settings = ?", (settings or segment_settings(Config()),))}


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """The library, scanned: (root, state, config file, {role: path})."""
    base = tmp_path_factory.mktemp("retag")
    root, state = base / "Music", base / "state"
    files = {
        "user": copy_bare(HUNGARIAN, root / "user" / "hungarian.ogg"),
        "replaced": copy_bare(NEXUIZ, root / "a" / "nexuiz.ogg"),
        "moved": copy_bare(VIBE_ACE, root / "a" / "vibe_ace.ogg"),
        "edited": cut(TCHAIKOVSKY, 35, root / "a" / "tchaikovsky_35.flac"),
        "corrected": cut(HUNGARIAN, 24, root / "a" / "hungarian_24.flac"),
        "uncached": cut(VIBE_ACE, 24, root / "a" / "vibe_ace_24.flac"),
        "filled": copy_bare(TCHAIKOVSKY, root / "b" / "tchaikovsky.ogg"),
    }
    tags.write_genres(files["user"], ["Folk"], None)  # the user's own genre
    at_rest(root)
    config = write_config(base / "tagger.toml", state, tags={"min_confidence": 0.0})
    never = write_config(base / "never.toml", state, tags={"write": "never"})
    assert main(["--config", str(config), "scan", str(root / "user"), str(root / "a")]) == 0
    assert main(["--config", str(never), "scan", str(root / "b")]) == 0  # left untagged
    return root, state, config, files


def test_scan_caches_every_classified_track_compactly_under_its_audio_identity(scanned):
    root, state, _, files = scanned
    rows = cache_rows(state)
    with open_catalogue(load_config(str(scanned[2])).database_url) as catalogue:
        ids = {catalogue.track(str(p)).content_id for p in files.values()}
    assert set(rows) == ids and len(ids) == len(files)
    for segments, pen, pooled in rows.values():
        assert pooled is None  # the scan keeps the penultimate only
        assert 1 <= segments <= 10 and len(pen) == segments * 400 * 2  # float16
        assert len(pen) <= 8000
    gate = cache_rows(state, gate_settings(Config().model.window_seconds))
    assert set(gate) == ids  # the content gate's: up to 2 segments of 512 (float16)
    assert all(p is None and 1 <= n <= 2 and len(e) == n * 512 * 2 for n, e, p in gate.values())
    # what a track of ten segments costs in the file is measured by bench/embedding_cache.py


def test_a_dry_run_scan_stores_nothing(tmp_path):
    lib = tmp_path / "lib"
    copy_bare(NEXUIZ, lib / "x.ogg")
    config = write_config(tmp_path / "tagger.toml", tmp_path / "state")
    assert main(["--config", str(config), "scan", "--dry-run", str(lib)]) == 0
    assert not (tmp_path / "state").exists()


@pytest.fixture(scope="module")
def classifier():
    return Classifier(Config())


def test_the_vote_from_the_cache_is_the_vote_of_a_full_classify(classifier, tmp_path):
    config = Config(state_dir=str(tmp_path))
    for clip in (HUNGARIAN, NEXUIZ, VIBE_ACE):
        path = str(real_clip(clip))
        full = next(classifier.classify([path]))
        [(again, (embeddings, *_))] = classifier.classify_embedded(
            [prepare_track(path, config)])
        assert again == full
        with EmbeddingCache.for_config(config) as cache:  # through the file, as retag reads it
            cache.put_many([("id-" + clip, embeddings)], embeddings.backbone,
                           segment_settings(config))
            stored = cache.get_scan("id-" + clip, classifier.backbones.sha256,
                                    segment_settings(config))
        assert stored.pooled is None and stored.penultimate.dtype == np.float16
        assert_same_vote(full, classifier.vote_cached(path, stored))


@pytest.fixture(scope="module")
def bundle(scanned):
    """A head trained on the scanned audio (penultimate: the scan's rows are enough)."""
    root, state, config, _ = scanned
    data = root.parent / "labelled"
    for genre, clips in {"orchestral": (HUNGARIAN, TCHAIKOVSKY),
                         "synth": (NEXUIZ, VIBE_ACE)}.items():
        (data / genre).mkdir(parents=True)
        for clip in clips:
            shutil.copy(real_clip(clip), data / genre / clip)
    out = root.parent / "models" / "mine"
    code = main(["--config", str(config), "train", str(data), "--embedding", "penultimate",
                 "--head", "linear", "--folds", "0", "--out", str(out)])
    assert code == 0
    return out


def test_train_on_scanned_audio_decodes_nothing_for_a_penultimate_head(bundle, capsys,
                                                                        scanned):
    _, _, config, _ = scanned
    capsys.readouterr()
    assert main(["--config", str(config), "eval", str(bundle.parent.parent / "labelled"),
                 "--model", str(bundle)]) == 0
    assert "embeddings: 4 cached, 0 decoded" in capsys.readouterr().err


def test_a_trained_head_votes_the_same_from_the_cache(bundle, scanned):
    root, state, config_file, files = scanned
    config = load_config(str(config_file))
    config = dataclasses.replace(config, model=dataclasses.replace(config.model,
                                                                   bundle=str(bundle)))
    head = Classifier(config)
    path = str(files["replaced"])
    full = next(head.classify([path]))
    with EmbeddingCache.for_config(config) as cache, open_catalogue(config.database_url) as cat:
        stored = cache.get_scan(cat.track(path).content_id, head.backbones.sha256,
                                segment_settings(config))
    assert_same_vote(full, head.vote_cached(path, stored), tolerance=1e-5)


def test_retag_under_an_adopted_model_without_decoding(scanned, bundle, capsys):
    root, state, config_file, files = scanned
    config = load_config(str(config_file))
    catalogue = open_catalogue(config.database_url)
    with catalogue:
        # the user edits a genre tagger wrote; corrects another; one file moves
        tags.write_genres(files["edited"], ["Ballet"], None)
        at_rest(files["edited"])  # edited a while ago
        catalogue.record_correction(str(files["corrected"]), "set_genre", "Dance",
                                    source="cli")
        moved = files["moved"].with_name("renamed vibe ace.ogg")
        os.replace(files["moved"], moved)
        uncached = catalogue.track(str(files["uncached"])).content_id
        before_scan = {role: catalogue.track(str(p)).prediction.genre
                       for role, p in files.items() if role != "moved"}
    assert main(["--config", str(config_file), "scan", str(root / "a")]) == 0  # the move
    with sqlite3.connect(state / CACHE_FILE) as db:  # as if scanned before the cache existed
        db.execute(f"DELETE FROM {TABLE} WHERE content_id = ?", (uncached,))
    card = read_card(bundle)
    with catalogue:
        catalogue.record_adoption(card["name"], card["sha256"], str(bundle), card["labels"],
                                  {"track_accuracy": None})

    capsys.readouterr()
    assert main(["--config", str(config_file), "status", "--json"]) == 1  # no daemon runs
    status = json.loads(capsys.readouterr().out)
    assert status["model"]["source"] == "adopted" and status["model"]["bundle"] == str(bundle)

    files = {**files, "moved": moved}
    untouched = {role: files[role].read_bytes()
                 for role in ("user", "edited", "corrected", "uncached")}
    everything = {role: p.read_bytes() for role, p in files.items()}
    assert main(["--config", str(config_file), "retag", "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert {role: p.read_bytes() for role, p in files.items()} == everything
    with catalogue:
        assert {role: catalogue.track(str(p)).prediction.genre for role, p in files.items()
                if role != "moved"} == before_scan  # nothing recorded
    proposed = {p["path"]: p for p in dry["proposals"]}
    assert proposed[str(files["replaced"])]["proposed"] in (["Orchestral"], ["Synth"])
    assert proposed[str(files["user"])]["proposed"] == []  # kept
    assert proposed[str(files["corrected"])]["proposed"] == []  # the correction wins
    assert dry["need_scan"] == [str(files["uncached"])] and dry["decoded"] == 0

    assert main(["--config", str(config_file), "retag"]) == 0
    out = capsys.readouterr().out
    assert "0 decoded" in out and "tracks/s" in out and "need a scan (1" in out
    assert str(files["uncached"]) in out
    for role, content in untouched.items():
        assert files[role].read_bytes() == content, role
    labels = {"Orchestral", "Synth"}
    for role in ("replaced", "moved", "filled"):  # tagger's own genre replaced, empty filled
        assert set(tags.read_genres(files[role])) <= labels and tags.read_genres(files[role])
    assert tags.read_genres(files["user"]) == ["Folk"]
    assert tags.read_genres(files["edited"]) == ["Ballet"]
    with catalogue:
        for role in ("replaced", "moved", "filled", "user", "edited", "corrected"):
            record = catalogue.track(str(files[role]))
            assert record.prediction.model.name == card["name"], role
            assert record.prediction.genre in ("orchestral", "synth"), role
        assert catalogue.track(str(files["uncached"])).prediction.model.name == "musicnn"


def wait_for(predicate, timeout: float = 180.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)
    return value


def test_a_running_watcher_retags_when_a_model_is_adopted(tmp_path, bundle, classifier):
    from tagger.config import ScanConfig, TagsConfig, WatchConfig
    from tagger.service.watch import Watcher

    root = tmp_path / "Music"
    files = [copy_bare(NEXUIZ, root / "nexuiz.ogg"), copy_bare(HUNGARIAN, root / "dance.ogg")]
    config = Config(database=f"sqlite:///{tmp_path / 'catalogue.sqlite'}",
                    state_dir=str(tmp_path / "state"), scan=ScanConfig(workers=1),
                    tags=TagsConfig(min_confidence=0.0),
                    watch=WatchConfig(settle_seconds=0.3, observer="native"))
    watcher = Watcher([str(root)], config, classifier=classifier, follow_adoption=True,
                      adoption_check_s=0.5)
    errors: list[BaseException] = []

    def run():
        try:
            watcher.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
            watcher.started.set()

    thread = threading.Thread(target=run, name="watcher", daemon=True)
    thread.start()
    try:
        wait_for(watcher.started.is_set, what="the daemon to start")
        assert not errors
        catalogue = open_catalogue(config.database_url)
        with catalogue:
            wait_for(lambda: all((t := catalogue.track(str(f))) and t.status == "done"
                                 for f in files), what="the first scan")
            first = {f: tags.read_genres(f) for f in files}
            assert all(first.values())  # tagged by the genre map
            assert watcher.status()["model"]["name"] == "musicnn"
            card = read_card(bundle)  # as `tagger learn --adopt` would, from another process
            catalogue.record_adoption(card["name"], card["sha256"], str(bundle),
                                      card["labels"], {})
            wait_for(lambda: watcher.retags, what="the retag after the adoption")
            assert watcher.retags[0]["repredicted"] == 2 and watcher.retags[0]["decoded"] == 0
            for f in files:
                assert tags.read_genres(f) in (["Orchestral"], ["Synth"])
                assert catalogue.track(str(f)).prediction.model.name == card["name"]
            assert watcher.status()["model"]["sha256"] == card["sha256"]
    finally:
        watcher.stop()
        thread.join(timeout=120)
    assert not thread.is_alive() and not errors


def test_the_model_is_resolved_in_one_place(bundle, tmp_path, capsys):
    from tagger.errors import ModelError
    from tagger.service.models import ModelSource, resolve_model

    config_file = write_config(tmp_path / "tagger.toml", tmp_path / "state")
    config = load_config(str(config_file))
    clip = str(real_clip(NEXUIZ))
    card = read_card(bundle)

    def classified_by(*options: str) -> str:
        capsys.readouterr()
        assert main(["--config", str(config_file), "classify", "--json", *options, clip]) == 0
        return json.loads(capsys.readouterr().out)["model"]["name"]

    with open_catalogue(config.database_url) as catalogue:
        assert resolve_model(config, catalogue=catalogue).source is ModelSource.DEFAULT
        assert classified_by() == "musicnn"
        catalogue.record_adoption(card["name"], card["sha256"], str(bundle), card["labels"], {})
        choice = resolve_model(config, catalogue=catalogue)
        assert choice.source is ModelSource.ADOPTED and choice.bundle == str(bundle)
        assert card["name"] in choice.describe()
        assert classified_by() == card["name"]  # the CLI builds the config with it
        assert classified_by("--model", "musicnn") == "musicnn"  # --model always wins
        named = write_config(tmp_path / "named.toml", tmp_path / "state",
                             model={"bundle": "elsewhere"})
        assert resolve_model(load_config(str(named)), catalogue=catalogue).source \
            is ModelSource.CONFIG
        # a bundle that is no longer the one adopted is refused, not silently used
        catalogue.record_adoption(card["name"], "0" * 64, str(bundle), card["labels"], {})
        with pytest.raises(ModelError, match="not the bundle there"):
            resolve_model(config, catalogue=catalogue)
        capsys.readouterr()
        assert main(["--config", str(config_file), "classify", clip]) == 3
        assert "adopt it again" in capsys.readouterr().err
        catalogue.retire_adoption()
        assert resolve_model(config, catalogue=catalogue).source is ModelSource.DEFAULT


def test_retag_takes_back_a_genre_of_its_own_the_model_no_longer_backs(tmp_path, capsys):
    # tagger wrote a genre under one model; under the current one the vote is below the
    # threshold: the file must not keep saying what no model stands behind any more
    root, state = tmp_path / "Music", tmp_path / "state"
    written = copy_bare(NEXUIZ, root / "nexuiz.ogg")
    user = copy_bare(HUNGARIAN, root / "hungarian.ogg")
    tags.write_genres(user, ["Folk"], None)
    eager = write_config(tmp_path / "eager.toml", state, tags={"min_confidence": 0.0})
    assert main(["--config", str(eager), "scan", str(root)]) == 0
    assert tags.read_genres(written)  # tagger's own genre
    users_bytes = user.read_bytes()
    strict = write_config(tmp_path / "strict.toml", state, tags={"min_confidence": 0.999})
    capsys.readouterr()
    assert main(["--config", str(strict), "retag", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["withdrawn"] == 1 and summary["decoded"] == 0
    assert tags.read_genres(written) == []  # the original (no genre) is back
    assert user.read_bytes() == users_bytes  # the user's genre is never taken back
    with open_catalogue(load_config(str(strict)).database_url) as catalogue:
        assert catalogue.tag_changes([str(written)]) == []  # nothing of tagger's in force
        assert catalogue.track(str(written)).prediction.genre  # the vote is still recorded
