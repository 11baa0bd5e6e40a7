"""The tests write nothing outside their own temporary folders: tests/conftest.py gives the
run, and then every test, a HOME and XDG folders of their own, which the processes they start
inherit."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.home import SHARED_CACHES, SHARED_CACHES_VARIABLE, UNSET, USER_FOLDERS

REPO = Path(__file__).resolve().parent.parent
PROBE = REPO / "tests" / "helpers" / "home_probe.py"


def test_every_test_has_a_home_of_its_own(own_home, tmp_path_factory):
    real_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    assert Path.home() == own_home and not any(own_home.iterdir())  # a new user's
    assert own_home.is_relative_to(tmp_path_factory.getbasetemp())
    for name, folder in USER_FOLDERS.items():
        assert Path(os.environ[name]) == own_home / folder
    for name in SHARED_CACHES:  # in pytest's cache folder (a checkout may be in the home)
        assert not any(Path(os.environ[name]).is_relative_to(real_home / folder)
                       for folder in USER_FOLDERS.values())
    assert not any(name in os.environ for name in UNSET)


@pytest.mark.slow
def test_tagger_run_as_the_tests_run_it_leaves_the_real_home_untouched(tmp_path):
    """A pytest run of its own, with HOME at an empty folder standing for the real home and
    no XDG or cache variable set (only where this run's shared caches are), scans from a
    session fixture and from a test, starts `tagger classify` in a new process and loads
    matplotlib (tests/helpers/home_probe.py): it passes, and that home is still empty."""
    real_home = tmp_path / "real-home"
    real_home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("HOME", *UNSET, *USER_FOLDERS, *SHARED_CACHES)}
    env["HOME"] = str(real_home)
    # this run's compiled kernels, found by the new run's conftest (it sets the variables)
    env[SHARED_CACHES_VARIABLE] = str(Path(os.environ["NUMBA_CACHE_DIR"]).parent)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--basetemp={tmp_path / 'run'}", str(PROBE)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout + proc.stderr
    assert sorted(real_home.rglob("*")) == []
