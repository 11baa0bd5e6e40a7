"""AudioSet genres in the default genre map (issue #26): the genres musicnn cannot name
(reggae, ska, disco, funk, bluegrass, ...) vote where the content gate's network hears them
clearly, in the musicnn segments its own segment covers; the map that hears them is another
model (its identity covers EfficientAT); a re-prediction from the cache hears them again.

The real case: Karissa Hobbs' "Let's Go Fishin'", a country song musicnn calls pop, in which
EfficientAT hears Bluegrass (0.34) in the first half of the window."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.audio import real_clip
from helpers.votes import assert_same_vote

from tagger.audio.features import prepare_track
from tagger.config import Config, ContentConfig
from tagger.genre_tree import shipped_tree
from tagger.model.cache import EmbeddingCache, segment_settings
from tagger.model.classify import Classifier, head_sha256
from tagger.model.embeddings import combined_sha256
from tagger.model.genres import AUDIOSET_GENRE_FLOOR, AUDIOSET_GENRES, build_vocabulary

pytestmark = pytest.mark.slow  # both networks on real audio

COUNTRY = "Karissa_Hobbs_-_Lets_Go_Fishin.ogg"


@pytest.fixture(scope="module")
def classified():
    """{audioset_genres: (config, classifier, result)} for the country song."""
    path = str(real_clip(COUNTRY))
    out = {}
    for audioset in (True, False):
        config = Config(content=ContentConfig(audioset_genres=audioset))
        classifier = Classifier(config)
        out[audioset] = (config, classifier, next(classifier.classify([path])))
    return out


def test_a_genre_musicnn_cannot_name_votes_where_the_gate_hears_it(classified):
    _, classifier, result = classified[True]
    assert set(AUDIOSET_GENRES) <= set(classifier.head.genres)
    bluegrass = [s.genre_scores["bluegrass"] for s in result.segments]
    # the gate's first 10 s segment hears Bluegrass clearly and covers musicnn's first five
    # segments; its second hears it below the floor: no evidence there
    assert all(v >= AUDIOSET_GENRE_FLOOR for v in bluegrass[:5]), bluegrass
    assert bluegrass[5:] == [0.0] * 5
    votes = {c.genre: c.votes for c in result.vote.candidates}
    assert votes.get("bluegrass", 0) >= 3, result.vote.candidates
    assert shipped_tree().parent("bluegrass") == "country"  # the song's own family

    _, plain, without = classified[False]
    assert not set(AUDIOSET_GENRES) & set(plain.head.genres)
    assert "bluegrass" not in {c.genre for c in without.vote.candidates}
    # musicnn's genres score the same either way: the AudioSet genres only add columns
    for a, b in zip(result.segments, without.segments):
        assert {g: v for g, v in a.genre_scores.items() if g in b.genre_scores} == \
            b.genre_scores


def test_the_map_with_audioset_genres_is_another_model(classified):
    config, classifier, result = classified[True]
    plain_config, plain, without = classified[False]
    assert classifier.info.sha256 == combined_sha256(classifier.models
                                                     + tuple(classifier.gate.models))
    assert plain.info.sha256 == combined_sha256(plain.models)
    assert result.model.sha256 == head_sha256(config) != head_sha256(plain_config)
    assert without.model.sha256 == head_sha256(plain_config)
    assert head_sha256(Config(content=ContentConfig(gate=False))) == plain.info.sha256
    assert result.model.vocabulary[-len(AUDIOSET_GENRES):] == tuple(AUDIOSET_GENRES)


def test_the_cache_hears_them_again_without_a_decode(classified, tmp_path):
    config, classifier, full = classified[True]
    config = Config(state_dir=str(tmp_path))
    [(again, (musicnn, gate))] = classifier.classify_embedded(
        [prepare_track(str(real_clip(COUNTRY)), config)])
    assert again == full
    with EmbeddingCache.for_config(config) as cache:
        cache.put_many([("song", musicnn)], musicnn.backbone, segment_settings(config))
        cache.put_many([("song", gate)], gate.backbone, classifier.gate_settings)
        stored = cache.get_scan("song", classifier.backbones.sha256, segment_settings(config))
        heard = classifier.gate_cached(cache, ["song"])
    assert_same_vote(full, classifier.vote_cached(COUNTRY, stored, heard["song"]))
    assert classifier.vote_cached(COUNTRY, stored, heard["song"]).content == full.content
    # without the gate's row the track is not heard now: no AudioSet evidence, no verdict
    unheard = classifier.vote_cached(COUNTRY, stored)
    assert unheard.content is None and "bluegrass" not in {c.genre for c in
                                                          unheard.vote.candidates}


def test_evidence_below_the_floor_counts_as_none():
    keys = ("msd:pop", "audioset:Reggae")
    vocabulary = build_vocabulary(keys, genres={"pop": ("msd:pop",),
                                                "reggae": ("audioset:Reggae",)})
    assert vocabulary.hears_audioset and vocabulary.descriptor_keys == ()
    scores = np.array([[0.4, AUDIOSET_GENRE_FLOOR - 0.01], [0.4, 0.6]])
    assert vocabulary.genre_scores(scores).tolist() == [[0.4, 0.0], [0.4, 0.6]]
    assert not build_vocabulary(keys, genres={"pop": ("msd:pop",)}).hears_audioset

