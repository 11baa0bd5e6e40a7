"""A decode worker's job that crashes its process on some files, as a decoder bug would."""

from __future__ import annotations

import os

from tagger.config import Config
from tagger.service.pool import prepare_or_error


def prepare_or_crash(path: str, config: Config):
    """prepare_or_error, except that a file named ``crash*`` kills the worker outright."""
    if os.path.basename(path).startswith("crash"):
        os._exit(70)  # no exception, no cleanup: a segfault looks the same to the pool
    return prepare_or_error(path, config)
