"""``tagger demo``: a small library of free clips the project ships, to try tagger on."""

from __future__ import annotations

import os
import shlex
import shutil
import sysconfig
from pathlib import Path
from typing import Sequence

from tagger.errors import ConfigError, WriteError
from tagger.library.genres import display_genre
from tagger.library.journal import last_written, same_genres
from tagger.results import NotWritten

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


def copy_demo(folder: str) -> tuple[Path, int]:
    """Copy the clips (and their attribution) into ``folder``, writable, but those already
    there; returns the folder and how many clips were copied."""
    source, target = demo_source(), Path(folder).expanduser().resolve()
    copied = 0
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in (*DEMO_CLIPS, "ATTRIBUTION.md"):
            if (source / name).is_file() and not (target / name).exists():
                shutil.copyfile(source / name, target / name)  # not copy2: no read-only bits
                # the clips' own times: a finished copy is at rest, scanned at once
                held = (source / name).stat()
                os.utime(target / name, ns=(held.st_atime_ns, held.st_mtime_ns))
                copied += name in DEMO_CLIPS
    except OSError as exc:
        raise WriteError(f"cannot copy the demo clips: {exc.strerror or exc}", target) from None
    return target, copied


def copied_line(folder: Path, copied: int) -> str:
    if copied == len(DEMO_CLIPS):
        return f"copied the demo clips to {folder}"
    if copied:
        return f"copied {copied} missing demo clips to {folder}"
    return f"the demo clips are already in {folder}: nothing copied"


#: why a clip's genre was not written (tracks.not_written), for people
NOT_WRITTEN_WORDS = {
    NotWritten.BELOW_THRESHOLD: "not written: the model is unsure (under tags.min_confidence)",
    NotWritten.KEPT_USER_GENRE: "left as it was: it holds a genre of yours ({genres}), kept "
                                "(tags.write = \"if_empty\")",
    NotWritten.TIE_SKIPPED: "not written: a tie (tags.on_tie = \"skip\")",
    NotWritten.POLICY_NEVER: "not written: tags.write = \"never\"",
    NotWritten.OUTSIDE_LIBRARY: "not written: a link to outside the library",
    NotWritten.NOT_MUSIC: "not written: not music",
    NotWritten.NOT_ALLOWED: "not written: not in tags.allowed_genres",
}


def what_happened(record, genre_case: str) -> tuple[str, str]:
    """(the genre with its confidence, what tagger did with the file) of a catalogued clip."""
    prediction = record.prediction
    if prediction is None:
        return "-", f"{record.status}: {record.error or 'not classified'}"
    genre = f"{display_genre(prediction.genre, genre_case):<12} {prediction.confidence:.2f}"
    if record.status == "failed":
        return genre, f"failed: {record.error}"
    written = last_written([w for w in record.tag_writes if w.reverted_at is None])
    holds = "; ".join(record.file_genres) or "no genre"
    if written is not None and same_genres(written, record.file_genres):
        return genre, "written into the file"
    if record.not_written is not None:
        return genre, NOT_WRITTEN_WORDS[record.not_written].format(genres=holds)
    return genre, f"left as it was: the file already says {holds}"


def demo_report(records, folder: Path, typed: str, genre_case: str,
                options: Sequence[str] = ()) -> list[str]:
    """What the demo did, clip by clip, what "left as it was" means, and the next commands
    (on the folder as the user ``typed`` it, with the ``options`` they need: --db, --config)."""
    out = [f"the demo clips in {folder} (the genre, the model's confidence, what tagger did):"]
    names = [os.path.relpath(r.path, folder) for r in records]
    width = max(map(len, names), default=0)
    for record, name in zip(records, names):
        genre, done = what_happened(record, genre_case)
        out.append(f"  {genre:<17}  {name:<{width}}  {done}")
    extra = "".join(f" {shlex.quote(o)}" for o in options)
    where = shlex.quote(typed)
    steps = [(f"tagger show {where}{extra}", "everything tagger knows of each clip: the votes, "
                                             "the tags it changed"),
             (f"tagger review{extra}", "hear the clips and correct their genres in the browser"),
             (f"tagger revert {where}{extra}", "put the clips' own tags back")]
    command_width = max(len(command) for command, _ in steps)
    out += [
        '"left as it was": tagger did not change that file: it already held that genre, or a '
        "genre of yours",
        '(tags.write = "if_empty" never replaces yours). "not written": the model was unsure.',
        "next:",
        *(f"  {command:<{command_width}}  {what}" for command, what in steps),
    ]
    return out
