"""Measure how the two models' tag scores should combine into genre scores, on labelled real clips.

    python tools/genre_rules.py [MUSIC_DIR]     (default: ../shared/music)

For each clip with a known genre (from shared/music/LICENSES.md), runs the shipped models once
over the middle-30-s segments and votes with several candidate rules; prints a Markdown table
of the winning genre per rule and a count of correct ones (docs/genres.md holds the result).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tagger.audio.features import prepare_track
from tagger.config import Config
from tagger.model.classify import Classifier
from tagger.model.vote import vote

REPO = Path(__file__).resolve().parent.parent

LABELLED = {
    "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg": "classical",
    "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg": "classical",
    "wesnoth_elvish-theme_excerpt.ogg": "classical",  # orchestral score
    "Kevin_MacLeod_-_Vibe_Ace.ogg": "jazz",
    "sorohanro_-_solo-trumpet-06.ogg": "jazz",
    "nexuiz_brainsukker_excerpt.ogg": "electronic",
    "warzone2100_track17_excerpt.ogg": "electronic",
    "Karissa_Hobbs_-_Lets_Go_Fishin.ogg": "country",  # country/folk song
    "wesnoth_traveling-minstrels_excerpt.ogg": "folk",  # folk/medieval ensemble
}
UNLABELLED = ["198-209-0000.ogg", "glacier-bay-humpback.ogg"]  # speech, whale song


def rules(classifier: Classifier) -> dict:
    vocab = classifier.vocabulary
    keys = classifier.output_keys

    def restricted(prefix: str, reduce):
        def rule(scores):
            cols = []
            for members in vocab.members:
                mine = [i for i in members if keys[i].startswith(prefix)]
                cols.append(reduce(scores[:, mine], axis=1) if mine else np.zeros(len(scores)))
            return np.stack(cols, axis=1)
        return rule

    return {
        "max, both models (chosen)": vocab.genre_scores,
        "mean of member tags": restricted("", np.mean),
        "MSD only": restricted("msd:", np.max),
        "MTT only": restricted("mtt:", np.max),
    }


def main(argv=None) -> int:
    music = Path((argv or sys.argv[1:] or [REPO.parent / "shared" / "music"])[0])
    config = Config()
    classifier = Classifier(config)
    candidates = rules(classifier)
    rows, correct = [], {name: 0 for name in candidates}
    for name in [*LABELLED, *UNLABELLED]:
        track = prepare_track(str(music / name), config)
        scores = classifier.tag_scores(track.patches)
        cells = []
        for rule_name, rule in candidates.items():
            outcome = vote(classifier.vocabulary.genres, rule(scores))
            won = f"{outcome.genre} {outcome.confidence:.2f} ({outcome.candidates[0].votes}/" \
                  f"{len(track.patches)})"
            if LABELLED.get(name) == outcome.genre:
                correct[rule_name] += 1
                won = f"**{won}**"
            cells.append(won)
        expected = LABELLED.get(name, "(not music)")
        rows.append(f"| {name[:40]} | {expected} | " + " | ".join(cells) + " |")
    print("| clip | expected | " + " | ".join(candidates) + " |")
    print("|---|---|" + "---|" * len(candidates))
    print("\n".join(rows))
    totals = " | ".join(f"**{c}/{len(LABELLED)}**" for c in correct.values())
    print(f"| **correct** | | {totals} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
