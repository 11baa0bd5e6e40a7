"""tagger run the ways the tests run it, for tests/test_isolation.py: a pytest run of its
own collects this file (the suite does not: no ``test_`` prefix), with HOME at a folder that
stands for the real home and nothing else set, as on a new machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.audio import SHORT_CLIP, real_clip
from helpers.library import at_rest
from tagger.cli import main


def library(folder: Path) -> Path:
    """A library of one real clip, dated an hour back: a file at rest, not one in motion."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(real_clip(SHORT_CLIP), folder / SHORT_CLIP)
    at_rest(folder)  # a copy finished long ago: scanned, not left for later
    return folder


@pytest.fixture(scope="session")
def scanned_by_a_session_fixture(tmp_path_factory) -> Path:
    """A scan with the default catalogue and caches (the state folder), from a session
    fixture: these run before any test's own fixtures."""
    lib = library(tmp_path_factory.mktemp("session-library"))
    assert main(["scan", "--workers", "1", str(lib)]) == 0
    return lib


def test_tagger_as_the_tests_run_it(scanned_by_a_session_fixture, tmp_path):
    import matplotlib.font_manager  # noqa: F401 - makes matplotlib's font list, in its cache

    lib = library(tmp_path / "library")
    assert main(["scan", "--workers", "1", str(lib)]) == 0
    state = Path(os.environ["XDG_STATE_HOME"]) / "tagger"
    assert (state / "catalogue.sqlite").is_file() and (state / "embeddings.sqlite").is_file()
    proc = subprocess.run([sys.executable, "-m", "tagger", "classify", str(lib / SHORT_CLIP)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
