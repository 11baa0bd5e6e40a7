"""tagger's canonical genre tree (``genre_tree.toml``, shipped as data): which genre is a
kind of which (metal and punk under rock, house under dance under electronic, ...), and the
one spelling of each genre however it is typed.

Plain data for every room (config validation included), like the config and the results:
the policy writes parents (``tags.with_parents``), backs off to them
(``tags.backoff_to_parent``) and keeps to ``tags.allowed_genres`` with it;
:func:`tagger.library.genres.genre_key` folds spellings with :func:`fold`.
"""

from __future__ import annotations

import functools
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from tagger.errors import ConfigError

TREE_FILE = Path(__file__).with_name("genre_tree.toml")
#: what does not tell two genres apart: "Hip Hop", "hip-hop", "HipHop", "hip_hop"
_IGNORED = str.maketrans("", "", " \t-_")


def fold(genre: str) -> str:
    """What every spelling of one genre shares: Unicode NFC, case, blanks, hyphens and
    underscores ignored."""
    return unicodedata.normalize("NFC", genre).casefold().translate(_IGNORED)


@dataclass(frozen=True)
class GenreTree:
    """Genres by folded name: ``names`` (key -> the spelling to show), ``parents`` (key ->
    its parent's key) and ``aliases`` (another name's key -> the genre's key)."""

    names: Mapping[str, str]
    parents: Mapping[str, str]
    aliases: Mapping[str, str]

    def key(self, genre: str) -> str | None:
        """The genre's key in the tree, through its aliases; None: not in the tree."""
        key = fold(genre)
        key = self.aliases.get(key, key)
        return key if key in self.names else None

    def knows(self, genre: str) -> bool:
        return self.key(genre) is not None

    def parent(self, genre: str) -> str | None:
        """The genre's parent as it is spelled (renamed by ``[genres]``); None: a root or
        not in the tree."""
        key = self.key(genre)
        parent = self.parents.get(key) if key else None
        return self.names[parent] if parent else None

    def ancestors(self, genre: str) -> list[str]:
        """Parent, grandparent, ... up to the root."""
        found = []
        while (genre := self.parent(genre)) is not None:
            found.append(genre)
        return found

    def renamed(self, rename: Mapping[str, str]) -> GenreTree:
        """The tree with ``[genres] rename`` folded onto it: a genre renamed to a name of the
        tree is that genre ("electronic" = "techno": techno, under electronic); renamed to
        another name it keeps its place, shown as renamed ("metal" = "Heavy Stuff": under
        rock; "rock" = "Rock Music": metal's parent is "Rock Music")."""
        names, aliases = dict(self.names), dict(self.aliases)
        for source, target in rename.items():
            key, known = self.key(source), self.key(target)
            if key is None or (known is not None and known != key):
                continue
            names[key] = target
            if fold(target) != key:
                aliases[fold(target)] = key
        return GenreTree(names, self.parents, aliases)


def _load(path: Path) -> GenreTree:
    """Read and check a genre tree file: one parent per genre, no cycle, aliases of known
    genres."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    names: dict[str, str] = {}
    parents: dict[str, str] = {}
    for parent, children in data.get("children", {}).items():
        names.setdefault(fold(parent), parent)
        for child in children:
            key = fold(child)
            if key in parents:
                raise ConfigError(f"genre tree: {child!r} has two parents", str(path))
            names.setdefault(key, child)
            parents[key] = fold(parent)
    for key in parents:
        seen = {key}
        while (key := parents.get(key)) is not None:
            if key in seen:
                raise ConfigError(f"genre tree: a cycle through {names[key]!r}", str(path))
            seen.add(key)
    aliases = {}
    for alias, genre in data.get("aliases", {}).items():
        if fold(genre) not in names:
            raise ConfigError(f"genre tree: alias {alias!r} of unknown genre {genre!r}",
                              str(path))
        aliases[fold(alias)] = fold(genre)
    return GenreTree(names, parents, aliases)


@functools.cache
def shipped_tree() -> GenreTree:
    """The genre tree tagger ships."""
    return _load(TREE_FILE)


@functools.cache
def _renamed(rename: tuple[tuple[str, str], ...]) -> GenreTree:
    return shipped_tree().renamed(dict(rename))


def genre_tree(rename: Mapping[str, str] | None = None) -> GenreTree:
    """The shipped tree with the user's ``[genres] rename`` folded onto it."""
    return _renamed(tuple(sorted((rename or {}).items())))
