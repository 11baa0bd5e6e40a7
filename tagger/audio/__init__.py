"""Stage 1, the audio: read the middle window of a file (decode), turn it into log-mel
segments (features), and name its audio payload independently of its tags (identity).

May import only the base modules (tagger.errors, tagger.config, tagger.results, tagger.formats)."""
