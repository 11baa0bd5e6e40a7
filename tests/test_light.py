"""A light daemon and a quick start (issue #28): what a command does not use, it does not
load or start; an idle daemon gives its model and its decode processes back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from helpers.apart import DECODE_STACK, descendants, run_cli_apart
from helpers.audio import real_clip
from helpers.catalogue import CLEAR_ROCK, result_for
from helpers.configs import write_config

from tagger.library import tags
from tagger.library.catalogue import open_catalogue

#: what the model and the decoders load: a command that answers from the catalogue needs none
HEAVY = ("torch", *DECODE_STACK)


def test_quick_commands_load_neither_torch_nor_the_decode_stack(tmp_path):
    """--help, list, show, stats and status answer from the catalogue (and the status
    file): torch (~150 MB, seconds of CPU) and the decode stack stay unloaded, on a catalogue
    that holds a classified track."""
    track = tmp_path / "vibe.ogg"
    shutil.copy(real_clip("Kevin_MacLeod_-_Vibe_Ace.ogg"), track)
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    with open_catalogue(db) as catalogue:
        catalogue.record_result(result_for(str(track), CLEAR_ROCK), size=track.stat().st_size,
                                mtime_ns=track.stat().st_mtime_ns)
    commands = {"--help": ["--help"], "list": ["list", "--db", db, "--low", "1"],
                "show": ["show", "--db", db, str(track)], "stats": ["stats", "--db", db],
                "status": ["status", "--db", db]}
    for name, argv in commands.items():
        code, loaded, lines, stderr = run_cli_apart(argv, tmp_path / "state", modules=HEAVY)
        assert code in (0, 1), (name, stderr)  # status: 1, no daemon runs
        assert lines, name  # it answered
        assert loaded == [], (name, loaded)


def _run_apart(script: str, state: Path) -> list[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(state)}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip().splitlines()


def test_classify_of_one_file_starts_no_worker_process(tmp_path):
    """One file is decoded in the command's own process: no fork server, no worker (a
    process started for one file costs more than the file), and the answer is the same."""
    clip = str(real_clip("Kevin_MacLeod_-_Vibe_Ace.ogg"))
    script = (
        "import json, os, sys\nfrom tagger.cli import main\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from helpers.apart import descendants\n"
        f"code = main(['classify', '--json', {clip!r}])\n"
        "print(json.dumps([code, len(descendants(os.getpid())), 'av' in sys.modules]))\n")
    *results, last = _run_apart(script, tmp_path / "state")
    code, children, decoded_here = json.loads(last)
    assert code == 0
    assert [json.loads(line)["genre"] for line in results] == ["jazz"]
    assert children == 0
    assert decoded_here


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""  # gone meanwhile


def _wait_for(predicate, what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_an_idle_daemon_stops_its_model_and_workers_and_starts_them_for_the_next_file(
        tmp_path):
    """With nothing to do for ``watch.idle_release_seconds``, ``tagger watch`` keeps one
    process of its own (and multiprocessing's resource tracker): no fork server, no decode
    worker, no model process, and torch mapped in none. A real clip dropped in then is still
    classified and tagged, the model and the workers started for it (and the log says so)."""
    root = tmp_path / "Music"
    root.mkdir()
    clip = tmp_path / "clip.ogg"
    shutil.copy(real_clip("sorohanro_-_solo-trumpet-06.ogg"), clip)
    tags.write_genres(clip, [], None)  # no genre: the default policy writes one
    config = write_config(tmp_path / "tagger.toml", tmp_path / "state",
                          service={"priority": "normal"}, library={"settle_seconds": 0.5},
                          watch={"settle_seconds": 0.5, "idle_release_seconds": 2})
    log_path = tmp_path / "watch.log"
    with open(log_path, "w") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "tagger", "--config", str(config),
                                   "watch", str(root)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: "the decode workers are stopped" in log_path.read_text()
                  or daemon.poll() is not None, "the idle release")
        assert daemon.poll() is None, log_path.read_text()
        left = {p: _read(f"/proc/{p}/cmdline") for p in descendants(daemon.pid)}
        assert all("resource_tracker" in cmd for cmd in left.values()), left
        assert not any("libtorch" in _read(f"/proc/{p}/maps")
                       for p in [daemon.pid, *left]), "torch is still loaded"

        shutil.copy(clip, root / "dropped.ogg")
        _wait_for(lambda: tags.read_genres(root / "dropped.ogg") or daemon.poll() is not None,
                  "the dropped clip's tag")
        assert tags.read_genres(root / "dropped.ogg") == ["Jazz"], log_path.read_text()
        assert "1 file to classify: starting the model and the decode workers" in (
            log_path.read_text())
    finally:
        daemon.terminate()
        daemon.wait(timeout=120)
