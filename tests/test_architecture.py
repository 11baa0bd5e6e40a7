"""The package tree is the architecture: imports run one way, and errors share one root.

The import graph is read from the source (``ast``), so imports inside functions count as
much as those at the top of a module.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import tagger
from tagger.errors import TaggerError

PACKAGE_DIR = Path(tagger.__file__).resolve().parent

#: The base: plain data and the errors, importable from anywhere.
BASE = {"tagger", "tagger.errors", "tagger.config", "tagger.results", "tagger.formats",
        "tagger.genre_tree", "tagger.private"}

#: room -> the rooms it may import (itself always allowed).
ALLOWED = {
    "base": {"base"},
    "audio": {"base"},
    "model": {"audio", "base"},
    "library": {"audio", "base"},
    "service": {"library", "model", "audio", "base"},
    "learn": {"library", "model", "audio", "base"},
    # the web app (tagger review) sits beside service and learn
    "review": {"library", "model", "audio", "base"},
    "cli": {"service", "learn", "review", "library", "model", "audio", "base"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room(module: str) -> str:
    """The room a tagger module lives in (``tagger.__main__`` is the CLI's entry point)."""
    if module in BASE:
        return "base"
    if module == "tagger.__main__":
        return "cli"
    return module.split(".")[1]


def tagger_imports(path: Path) -> set[str]:
    """Every tagger module ``path`` imports, at any depth of the code (``from tagger.x import
    y`` counts as ``tagger.x.y`` when that is a module, else ``tagger.x``)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "tagger")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "tagger":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if _is_module(sub) else target)
    return found


def _is_module(name: str) -> bool:
    where = PACKAGE_DIR.joinpath(*name.split(".")[1:])
    return where.is_dir() or where.with_suffix(".py").is_file()


def all_sources() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def test_every_module_is_in_a_known_room():
    rooms = {room(module_name(p)) for p in all_sources()}
    assert rooms <= set(ALLOWED), rooms - set(ALLOWED)


def test_imports_run_one_way():
    wrong = []
    for path in all_sources():
        source = room(module_name(path))
        for target in sorted(tagger_imports(path)):
            if room(target) not in ALLOWED[source] | {source}:
                wrong.append(f"{module_name(path)} ({source}) imports {target} ({room(target)})")
    assert not wrong, "imports against the flow:\n" + "\n".join(wrong)


def test_the_import_reader_sees_function_level_imports(tmp_path):
    # the checker itself: a lazy import inside a function is an import too
    fake = PACKAGE_DIR / "library" / "discover.py"
    found = tagger_imports(fake)
    assert "tagger.config" in found
    lazy = PACKAGE_DIR / "service" / "engine.py"
    source = lazy.read_text(encoding="utf-8")
    assert "    from tagger.model.classify import" in source  # imported inside a function
    assert "tagger.model.classify" in tagger_imports(lazy)


def _all_modules():
    for info in pkgutil.walk_packages(tagger.__path__, "tagger."):
        if info.name == "tagger.__main__":
            continue
        yield importlib.import_module(info.name)


def test_every_exception_derives_from_tagger_error():
    strays = []
    for module in _all_modules():
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__ and not issubclass(obj, TaggerError)):
                strays.append(f"{module.__name__}.{name}")
    assert not strays, f"exceptions outside the TaggerError root: {strays}"


#: underscore names outside tagger that tests may use: (the object's name or "", attribute)
FOREIGN_PRIVATES = {
    ("os", "_exit"),  # a forked child leaves without running the parent's cleanup
    ("", "_failed_atoms"),  # mutagen's MP4 tags: how a broken genre atom is built
}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(path: Path, base: Path = PACKAGE_DIR.parent) -> list[str]:
    """Underscore names of tagger that ``path`` reaches for: imported, read as attributes
    (on anything but ``self``/``cls``), passed as keywords or named to getattr/setattr."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        where = f"{path.relative_to(base)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tagger"):
            found += [f"{where} imports {node.module}.{a.name}" for a in node.names
                      if _is_private(a.name) or any(map(_is_private, node.module.split(".")))]
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            owner = node.value.id if isinstance(node.value, ast.Name) else ""
            if owner in ("self", "cls") or (owner, node.attr) in FOREIGN_PRIVATES \
                    or ("", node.attr) in FOREIGN_PRIVATES:
                continue
            found.append(f"{where} reads {owner or '...'}.{node.attr}")
        elif isinstance(node, ast.Call):
            found += [f"{where} passes {k.arg}=" for k in node.keywords
                      if k.arg and _is_private(k.arg)]
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if (name in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) > 1
                    and isinstance(node.args[1], ast.Constant)
                    and isinstance(node.args[1].value, str) and _is_private(node.args[1].value)):
                found.append(f"{where} {name}(..., {node.args[1].value!r})")
    return found


def test_tests_benches_and_tools_use_only_public_names():
    """Outside the package, tagger is used through its public names: a test that needs
    to reach inside gets a public seam instead. The beets plugin (beetsplug/, beside the
    package: beets' namespace) is held to it too."""
    root = PACKAGE_DIR.parent
    sources = sorted(p for folder in ("tests", "bench", "tools", "beetsplug")
                     if (root / folder).is_dir() for p in (root / folder).rglob("*.py"))
    assert root / "beetsplug" / "tagger.py" in sources
    assert len(sources) > 10
    found = [use for path in sources for use in private_uses(path)]
    assert not found, "underscore names used from outside tagger:\n" + "\n".join(found)


def test_the_private_use_reader_sees_each_kind_of_reach(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from tagger.audio.identity import _Layout\n"
                     "import tagger.audio.identity as identity\n"
                     "identity._read_logical(None, [], 0, 0)\n"
                     "watcher._on_event = None\n"
                     "f(x, _hook=None)\n"
                     "monkeypatch.setattr(engine, '_pool', None)\n"
                     "self._mine = os._exit\n", encoding="utf-8")
    uses = sorted(private_uses(probe, tmp_path))
    assert uses == ["probe.py:1 imports tagger.audio.identity._Layout",
                    "probe.py:3 reads identity._read_logical",
                    "probe.py:4 reads watcher._on_event", "probe.py:5 passes _hook=",
                    "probe.py:6 setattr(..., '_pool')"], uses


def path_tricks(path: Path, base: Path = PACKAGE_DIR.parent) -> list[str]:
    """Imports of conftest and edits of sys.path in ``path``: tests import their helpers
    from tests/helpers/, bench and tools the installed package and their own folder."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        where = f"{path.relative_to(base)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and node.module == "conftest":
            found.append(f"{where} imports from conftest")
        elif isinstance(node, ast.Import) and any(a.name == "conftest" for a in node.names):
            found.append(f"{where} imports conftest")
        elif (isinstance(node, ast.Attribute) and node.attr == "path"
              and isinstance(node.value, ast.Name) and node.value.id == "sys"):
            found.append(f"{where} touches sys.path")
    return found


def test_tests_benches_and_tools_import_without_path_tricks(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from conftest import real_clip\nimport conftest\n"
                     "import sys\nsys.path.insert(0, '.')\n", encoding="utf-8")
    assert sorted(path_tricks(probe, tmp_path)) == [
        "probe.py:1 imports from conftest", "probe.py:2 imports conftest",
        "probe.py:4 touches sys.path"]
    root = PACKAGE_DIR.parent
    sources = sorted(p for folder in ("tests", "bench", "tools") if (root / folder).is_dir()
                     for p in (root / folder).rglob("*.py"))
    found = [trick for path in sources for trick in path_tricks(path)]
    assert not found, "\n".join(found)
