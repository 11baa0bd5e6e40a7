"""tagger: genre tagging for music libraries with the musicnn CNNs."""

__version__ = "0.1.0"
