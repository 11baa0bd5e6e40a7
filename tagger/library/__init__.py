"""Stage 3, the library: what is on disk and what we know of it. Finding files (discover),
reading and safely writing their tags (tags/), the catalogue database (catalogue), and the
one-writer lock (lock).

May import tagger.audio and the base modules; never tagger.model, service, learn or cli."""
