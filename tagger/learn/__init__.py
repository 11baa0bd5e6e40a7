"""Learning the user's own genres: labelled datasets, training heads on the frozen
backbones, and evaluating them.

May import tagger.library, tagger.model, tagger.audio and the base modules; never
tagger.service or tagger.cli."""
