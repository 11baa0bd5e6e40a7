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
BASE = {"tagger", "tagger.errors", "tagger.config", "tagger.results", "tagger.formats"}

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
    lazy = PACKAGE_DIR / "service" / "scan.py"
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
