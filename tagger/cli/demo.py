"""``tagger demo``: a small library of free clips the project ships, to try tagger on."""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

from tagger.errors import ConfigError, WriteError

#: The shipped clips (tests/data; licences in its ATTRIBUTION.md): classical, jazz,
#: electronic game music, a festive orchestral piece and a 5 s solo trumpet.
DEMO_CLIPS = (
    "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg",
    "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg",
    "Kevin_MacLeod_-_Vibe_Ace.ogg",
    "nexuiz_brainsukker_excerpt.ogg",
    "sorohanro_-_solo-trumpet-06.ogg",
)


def demo_source() -> Path:
    """Where the clips are: tests/data beside the package (a clone or editable install), else
    ``<data>/share/tagger/demo`` (a wheel)."""
    import tagger

    candidates = [Path(tagger.__file__).resolve().parent.parent / "tests" / "data",
                  Path(sysconfig.get_path("data")) / "share" / "tagger" / "demo"]
    for folder in candidates:
        if all((folder / name).is_file() for name in DEMO_CLIPS):
            return folder
    raise ConfigError("the demo clips are not installed (looked in "
                      + ", ".join(map(str, candidates)) + ")")


def copy_demo(folder: str) -> Path:
    """Copy the clips (and their attribution) into ``folder``, writable; returns it."""
    source, target = demo_source(), Path(folder).expanduser().resolve()
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in (*DEMO_CLIPS, "ATTRIBUTION.md"):
            if (source / name).is_file() and not (target / name).exists():
                shutil.copyfile(source / name, target / name)  # not copy2: no read-only bits
                # the clips' own times: a finished copy is at rest, scanned at once
                held = (source / name).stat()
                os.utime(target / name, ns=(held.st_atime_ns, held.st_mtime_ns))
    except OSError as exc:
        raise WriteError(f"cannot copy the demo clips: {exc.strerror or exc}", target) from None
    return target
