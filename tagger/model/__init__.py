"""Stage 2, the model: the musicnn networks (musicnn, fastconv), their embeddings, the genre
map, the segment vote, trained heads and their bundles, and the Classifier that runs a
file through all of them.

May import tagger.audio and the base modules; never tagger.library, service, learn or cli."""
