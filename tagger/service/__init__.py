"""Stage 4, the service: the scan engine (plan, classify in worker processes, decide and
write tags, record) and the watch daemon built on it.

May import tagger.library, tagger.model, tagger.audio and the base modules."""
