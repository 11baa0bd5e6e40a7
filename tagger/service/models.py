"""Which model classifies: the one place that decides (docs/training.md, "Adopting a model").

In order: ``--model`` on the command line; ``model.bundle`` in tagger.toml when it names a
bundle; the library's adopted model (``tagger learn --adopt``: the catalogue's current
adoption); else the shipped genre map. The CLI builds the config with the choice once, for
``scan``, ``watch``, ``classify`` and ``retag``; ``watch`` asks again as it runs, to notice a
new adoption; ``status`` says which model is in use and why.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from enum import Enum

from tagger.config import Config
from tagger.errors import ModelError, TaggerError
from tagger.model.bundle import DEFAULT_BUNDLE, read_card

log = logging.getLogger(__name__)


class ModelSource(str, Enum):
    """Why this model: the ``--model`` option, tagger.toml, an adoption, or the default."""

    OPTION = "option"
    CONFIG = "config"
    ADOPTED = "adopted"
    DEFAULT = "default"


@dataclass(frozen=True)
class ModelChoice:
    """The config to classify with (``model.bundle`` set to the choice), and why."""

    config: Config
    source: ModelSource
    adoption: object | None = None  # the catalogue's Adoption row, when ADOPTED

    @property
    def bundle(self) -> str:
        return self.config.model.bundle

    def describe(self) -> str:
        """One line for people: which model, and why it is the one."""
        if self.source is ModelSource.ADOPTED:
            a = self.adoption
            return (f"{a.name} ({a.sha256[:12]}), adopted {a.adopted_at:%Y-%m-%d %H:%M} UTC "
                    f"(catalogue); bundle {a.bundle_path}")
        if self.source is ModelSource.OPTION:
            return f"{self.bundle} (--model)"
        if self.source is ModelSource.CONFIG:
            where = self.config.source or "the config"
            return f"{self.bundle} (model.bundle in {where})"
        return "musicnn, the shipped genre map (no model.bundle, nothing adopted)"


def current_adoption(config: Config, catalogue=None):
    """The library's adopted model, or None. Without ``catalogue``, the configured one is
    read only when it exists at the newest schema (nothing is created or upgraded here: a
    catalogue from before adoptions existed has none)."""
    if catalogue is not None:
        return catalogue.adopted_model()
    url = config.database_url
    if url.startswith("sqlite:///") and not os.path.exists(
            url.removeprefix("sqlite:///").split("?", 1)[0]):
        return None  # no catalogue yet, so nothing adopted: no need to load sqlalchemy
    from tagger.library.catalogue import current, head, open_catalogue

    try:
        revision = current(url)
        if revision is None or revision != head():
            return None
        with open_catalogue(config.database_url, upgrade=False) as opened:
            return opened.adopted_model()
    except TaggerError as exc:  # `classify` needs no catalogue: say so, use the default
        log.warning("cannot read the adopted model from the catalogue (%s): using %s",
                    exc, config.model.bundle)
        return None


def resolve_model(config: Config, *, explicit: bool = False, catalogue=None) -> ModelChoice:
    """The model ``config`` classifies with: ``explicit`` says ``model.bundle`` came from
    ``--model`` (which always wins). When model.bundle is the default and the catalogue has
    a current adoption, the config returned names the adopted bundle (checked: it must still
    be there, with the sha256 it was adopted with)."""
    if explicit:
        return ModelChoice(config, ModelSource.OPTION)
    if config.model.bundle != DEFAULT_BUNDLE:
        return ModelChoice(config, ModelSource.CONFIG)
    adoption = current_adoption(config, catalogue)
    if adoption is None:
        return ModelChoice(config, ModelSource.DEFAULT)
    path = os.path.abspath(os.path.expanduser(adoption.bundle_path))
    card = read_card(path)  # ModelError when it is gone
    if card.get("sha256") != adoption.sha256:
        raise ModelError(f"the adopted model {adoption.name} ({adoption.sha256[:12]}) is not "
                         "the bundle there any more; adopt it again, or retire the adoption",
                         path)
    model = dataclasses.replace(config.model, bundle=path)
    return ModelChoice(dataclasses.replace(config, model=model), ModelSource.ADOPTED, adoption)
