"""The daemon follows the library's adopted model: when ``tagger learn --adopt`` records a
new one (or the adoption is retired), the main loop, between two batches, reloads the
engine's model and retags the library from the cached embeddings (:mod:`tagger.service.retag`:
no decode). Only when neither ``--model`` nor ``model.bundle`` fixed the model."""

from __future__ import annotations

import dataclasses
import logging
import time

from tagger.config import Config
from tagger.errors import ModelError
from tagger.model.bundle import DEFAULT_BUNDLE
from tagger.service.models import ModelChoice, ModelSource, resolve_model

log = logging.getLogger(__name__)

#: how often the main loop looks at the catalogue's current adoption (one small query)
ADOPTION_CHECK_S = 10.0


class AdoptionWatch:
    """Tells the daemon when the library's model changed since it loaded its own."""

    def __init__(self, config: Config, interval_s: float = ADOPTION_CHECK_S):
        # the config as it would be without an adoption: resolve_model picks the current one
        self.base = dataclasses.replace(
            config, model=dataclasses.replace(config.model, bundle=DEFAULT_BUNDLE))
        self.interval_s = interval_s
        self._checked = time.monotonic()
        self._refused: tuple | None = None  # a choice that did not load: not tried again
        self._error: str | None = None

    @staticmethod
    def _key(choice: ModelChoice) -> tuple:
        return (choice.bundle, getattr(choice.adoption, "sha256", None))

    def refuse(self, choice: ModelChoice) -> None:
        """``choice`` did not load: keep the running model until the adoption changes."""
        self._refused = self._key(choice)

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._checked < self.interval_s:
            return False
        self._checked = now
        return True

    def changed(self, catalogue, running: Config) -> ModelChoice | None:
        """The new choice when the adopted model is not the one ``running`` names, else None."""
        try:
            choice = resolve_model(self.base, catalogue=catalogue)
        except ModelError as exc:  # the adopted bundle is gone or changed: said once
            if str(exc) != self._error:
                log.error("%s; keeping the model running now", exc)
                self._error = str(exc)
            return None
        self._error = None
        if choice.bundle == running.model.bundle or self._key(choice) == self._refused:
            return None
        if choice.source is ModelSource.ADOPTED:
            log.info("a new model was adopted: %s", choice.describe())
        else:
            log.info("the adoption was retired: back to the shipped genre map")
        return choice
