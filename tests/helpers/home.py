"""Where the tests keep a user's files: in a home of their own, never the real one.
tests/conftest.py gives the run one before anything is collected, and every test its own;
tests/test_isolation.py proves that nothing lands in the real home."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

#: a user's folders, by default under HOME (platformdirs reads the XDG variables: tagger's
#: state and config, matplotlib's config and cache, numba's user-wide cache ...)
USER_FOLDERS = {"XDG_CONFIG_HOME": ".config", "XDG_STATE_HOME": ".local/state",
                "XDG_CACHE_HOME": ".cache", "XDG_DATA_HOME": ".local/share"}
#: caches the whole run shares, outside every home: compiled code and a font list, no data
#: of a test's. Per test, librosa's numba kernels would be compiled again (~15 s) in every
#: process a test starts. With ``NUMBA_CACHE_DIR`` set, tagger leaves it alone (else it
#: puts the cache in the state folder), as for a user who sets it.
SHARED_CACHES = {"NUMBA_CACHE_DIR": "numba-cache", "MPLCONFIGDIR": "matplotlib"}
#: the folder of the shared caches (default: pytest's cache folder, kept between runs;
#: without one, the run's temporary folder)
SHARED_CACHES_VARIABLE = "TAGGER_TESTS_SHARED_CACHES"
#: what would bring a developer's own settings into the tests
UNSET = ("TAGGER_CONFIG",)
RUN_FOLDER_PREFIX = "tagger-tests-"


def home_environment(home: Path) -> dict[str, str]:
    """HOME and the XDG folders of a user whose home is ``home``."""
    return {"HOME": str(home), **{name: str(home / sub) for name, sub in USER_FOLDERS.items()}}


def run_folder() -> Path:
    """A temporary folder for this run, ``tagger-tests-<pid>-*``. Those of runs whose process
    is gone are removed now, and this one is not at its exit: multiprocessing may keep its
    own folder in it (tagger's ``<state>/tmp/<pid>``) and removes that last of all."""
    for old in Path(tempfile.gettempdir()).glob(f"{RUN_FOLDER_PREFIX}*-*"):
        pid = old.name.removeprefix(RUN_FOLDER_PREFIX).split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{RUN_FOLDER_PREFIX}{os.getpid()}-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
