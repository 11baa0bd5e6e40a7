"""The genre vocabulary built from both models' tags."""

import numpy as np
import pytest

from tagger.config import GenreConfig
from tagger.errors import ConfigError
from tagger.model.genres import DEFAULT_GENRES, build_vocabulary
from tagger.model.musicnn import read_model_card

CARD = read_model_card()
KEYS = tuple(
    f"{entry['prefix']}:{label}"
    for entry in CARD["models"].values() for label in entry["labels"]
)

REQUIRED = ("rock", "pop", "electronic", "dance", "hip-hop", "r&b/soul", "jazz", "blues",
            "country", "folk", "metal", "punk", "classical", "ambient")


def test_default_vocabulary_covers_the_required_genres():
    vocabulary = build_vocabulary(KEYS)
    assert set(REQUIRED) <= set(vocabulary.genres)


def test_every_member_tag_exists_and_descriptors_are_not_genres():
    vocabulary = build_vocabulary(KEYS)
    genre_tags = {t for tags in DEFAULT_GENRES.values() for t in tags}
    assert genre_tags <= set(KEYS)
    assert not genre_tags & set(vocabulary.descriptor_keys)
    for descriptor in ("msd:80s", "msd:female vocalists", "mtt:piano", "msd:happy", "mtt:violin"):
        assert descriptor in vocabulary.descriptor_keys


def test_genre_score_is_the_max_of_its_member_tags():
    vocabulary = build_vocabulary(KEYS)
    scores = np.zeros((2, len(KEYS)), dtype=np.float32)
    scores[0, KEYS.index("mtt:techno")] = 0.7
    scores[0, KEYS.index("msd:electronic")] = 0.4
    scores[1, KEYS.index("mtt:classical")] = 0.9
    genre_scores = vocabulary.genre_scores(scores)
    electronic = vocabulary.genres.index("electronic")
    classical = vocabulary.genres.index("classical")
    assert genre_scores[0, electronic] == pytest.approx(0.7)
    assert genre_scores[1, classical] == pytest.approx(0.9)
    assert genre_scores[0, classical] == 0


def test_rename_merge_drop():
    vocabulary = build_vocabulary(KEYS, GenreConfig(
        rename={"hip-hop": "Hip Hop"}, merge={"dance": "electronic"}, drop=("world",)))
    assert "Hip Hop" in vocabulary.genres and "hip-hop" not in vocabulary.genres
    assert "dance" not in vocabulary.genres and "world" not in vocabulary.genres
    electronic = vocabulary.members[vocabulary.genres.index("electronic")]
    assert KEYS.index("msd:House") in electronic  # dance's tags now count for electronic
    assert "mtt:indian" not in vocabulary.descriptor_keys  # a dropped genre's tag is no descriptor


def test_rename_onto_existing_genre_merges():
    vocabulary = build_vocabulary(KEYS, GenreConfig(rename={"punk": "rock"}))
    assert vocabulary.genres.count("rock") == 1
    assert KEYS.index("msd:punk") in vocabulary.members[vocabulary.genres.index("rock")]


@pytest.mark.parametrize("config", [
    GenreConfig(drop=("polka",)),
    GenreConfig(merge={"polka": "rock"}),
    GenreConfig(rename={"polka": "rock"}),
    GenreConfig(drop=tuple(DEFAULT_GENRES)),
])
def test_bad_genre_config_is_an_error(config):
    with pytest.raises(ConfigError):
        build_vocabulary(KEYS, config)


def test_descriptors_threshold_and_limit():
    vocabulary = build_vocabulary(KEYS)
    scores = np.zeros((3, len(KEYS)), dtype=np.float32)
    scores[:, KEYS.index("mtt:piano")] = 0.8
    scores[:, KEYS.index("msd:80s")] = 0.3
    scores[:, KEYS.index("mtt:classical")] = 0.99  # a genre tag: never a descriptor
    assert vocabulary.descriptors(scores, 0.2, 8) == {"mtt:piano": 0.8, "msd:80s": 0.3}
    assert list(vocabulary.descriptors(scores, 0.2, 1)) == ["mtt:piano"]
