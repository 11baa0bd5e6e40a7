"""What a new user hits first: running beside a `tagger/` folder, the demo, rescans of failed
files, the command line's options, errors and output, the review lists, prune, the unit."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.audio import real_clip
from helpers.library import at_rest

from tagger.cli import main
from tagger.cli.common import graceful_stop
from tagger.config import TagsConfig, config_from_dict
from tagger.errors import ConfigError
from tagger.library import tags
from tagger.library.catalogue import Catalogue
from tagger.results import FailureKind
from tagger.service.policy import display_genre

REPO = Path(__file__).resolve().parent.parent
TAGGER = Path(sys.executable).with_name("tagger")  # the console script, as a user runs it
SHORT = "sorohanro_-_solo-trumpet-06.ogg"
BRAHMS = "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg"
NEXUIZ = "nexuiz_brainsukker_excerpt.ogg"


def run_tagger(*args: str, cwd: Path, home: Path, timeout: float = 600,
               **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XDG_", "TAGGER_", "PYTHON", "NUMBA_"))}
    env["HOME"] = str(home)
    kwargs.setdefault("capture_output", True)
    return subprocess.run([str(TAGGER), *args], cwd=cwd, env=env, text=True, timeout=timeout,
                          **kwargs)


def rows(db: Path | str, sql: str, *params):
    with sqlite3.connect(str(db).removeprefix("sqlite:///")) as conn:
        return conn.execute(sql, params).fetchall()


# ---------------------------------------------------------------- the first run


def test_demo_from_a_folder_holding_a_tagger_directory(tmp_path):
    """README command 1's tagger part, run where a `tagger/` folder would shadow the install
    (a clone in ~/tagger, run from ~), with an empty HOME."""
    (tmp_path / "tagger").mkdir()
    (tmp_path / "tagger" / "README.md").write_text("a clone of something\n")
    home = tmp_path / "home"
    home.mkdir()
    proc = run_tagger("demo", "demo-library", "--workers", "1", cwd=tmp_path, home=home)
    assert proc.returncode == 0, proc.stderr
    assert "died" not in proc.stderr and "ImportError" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("copied the demo clips to")
    assert lines[1].startswith("tagger: scanning ")  # said at once, before any slow part
    assert "compiling" not in proc.stderr  # the decode stack has no kernels to compile
    state = home / ".local/state/tagger"
    db = state / "catalogue.sqlite"
    statuses = dict(rows(db, "select path, status from tracks"))
    assert len(statuses) == 5 and set(statuses.values()) == {"done"}
    brahms = tmp_path / "demo-library" / BRAHMS
    assert tags.read_genres(brahms) == ["Classical"]  # title case, as beets writes
    assert rows(db, "select genre from track_genres where path = ?", str(brahms)) == [
        ("classical",)]  # the catalogue keeps the vocabulary's form


def test_readme_command_1_uses_the_shipped_demo():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    command = next(line for line in readme.splitlines() if line.startswith("python3 -m venv"))
    assert "../shared" not in command and "tagger demo" in command
    assert "pipx install" in readme and "download.pytorch.org/whl/cpu" in readme


# ---------------------------------------------------------------- rescans of failed files


@pytest.fixture
def small_library(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in (SHORT, NEXUIZ):
        shutil.copy(real_clip(name), lib / name)
        (lib / name).chmod(0o644)
    (lib / "notes.mp3").write_text("a text file named .mp3\n")
    at_rest(lib)
    return lib, f"sqlite:///{tmp_path / 'c.sqlite'}"


def test_failed_files_retry_rules_and_the_summary_shows_them(small_library, capsys):
    lib, db = small_library
    assert main(["scan", "--db", db, "--json", str(lib)]) == 1
    first = json.loads(capsys.readouterr().out)
    assert first["failed"] == 1 and first["failure_kinds"] == {"unreadable": 1}
    assert rows(db, "select failure_kind from tracks where status = 'failed'") == [
        ("unreadable",)]
    # a worker died on one file in an earlier run: a plain rescan must retry it
    trumpet = lib / SHORT
    st = trumpet.stat()
    with Catalogue(db) as catalogue:
        catalogue.record_failure(str(trumpet), "the decoding worker process died twice",
                                 size=st.st_size, mtime_ns=st.st_mtime_ns,
                                 kind=FailureKind.WORKER_DIED)
    assert main(["scan", "--db", db, "--json", str(lib)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["classified"] == 1 and again["failed"] == 0
    assert again["still_failed"] == 1  # the text file: failed for its content, unchanged
    assert rows(db, "select status from tracks where path = ?", str(trumpet)) == [("done",)]
    assert main(["scan", "--db", db, str(lib)]) == 0
    assert "still failed: 1 files" in capsys.readouterr().out
    # --retry-failed tries the content failure again
    assert main(["scan", "--db", db, "--json", "--retry-failed", str(lib)]) == 1
    assert json.loads(capsys.readouterr().out)["failed"] == 1


def test_dry_run_counts_and_json(small_library, tmp_path, capsys):
    lib, db = small_library
    config = tmp_path / "strict.toml"
    config.write_text("[tags]\nmin_confidence = 0.99\n")
    assert main(["scan", str(lib), "--dry-run", "--json", "--config", str(config),
                 "--db", db]) == 1
    out = capsys.readouterr().out
    summary = json.loads(out)  # stdout is one JSON document, nothing else
    proposals = summary["proposals"]
    assert len(proposals) == 3 and summary["dry_run"]
    below = [p for p in proposals if p.get("not_written") == "below_threshold"]
    assert len(below) == 2 and summary["below_threshold"] == 2
    assert summary["not_written"] == {"below_threshold": 2}
    assert [p["path"] for p in proposals if p["error"]] == [str(lib / "notes.mp3")]
    assert not Path(db.removeprefix("sqlite:///")).exists()


# ---------------------------------------------------------------- the command line


def test_options_before_or_after_the_command(small_library, tmp_path, capsys):
    lib, db = small_library
    config = tmp_path / "t.toml"
    config.write_text('log_level = "INFO"\n')
    assert main(["scan", str(lib / SHORT), "--config", str(config), "-v", "--db", db]) == 0
    assert "1 classified" in capsys.readouterr().out
    assert main(["-q", "--config", str(config), "scan", str(lib / SHORT), "--db", db,
                 "--force"]) == 0
    assert capsys.readouterr().out == ""  # -q: nothing when all went well


def test_usage_errors_name_the_problem_once_with_a_usage_line(tmp_path):
    proc = run_tagger("scan", "--bogus", cwd=tmp_path, home=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: tagger scan")
    assert "tagger scan: error: unrecognized arguments: --bogus" in proc.stderr
    assert "tagger: error: tagger" not in proc.stderr
    proc = run_tagger("scan", "/nope", cwd=tmp_path, home=tmp_path)
    assert proc.returncode == 2 and "/nope: does not exist" in proc.stderr


def test_all_unknown_keys_are_reported_and_levels_any_case():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"colour": 1, "tags": {"writ": "always", "on_tie": "all"},
                          "scan": {"wokers": 2}})
    assert "'colour'" in str(err.value) and "'tags.writ'" in str(err.value)
    assert "'scan.wokers'" in str(err.value)
    assert config_from_dict({"log_level": "INFO"}).log_level == "info"


def test_closed_pipe_is_no_traceback(small_library, tmp_path):
    lib, db = small_library
    assert main(["scan", "--db", db, str(lib)]) == 1
    for args in (["stats", "--db", db], ["show", "--db", db, str(lib)],
                 ["status", "--db", db], ["completion", "bash"]):
        reader, writer = os.pipe()
        os.close(reader)  # like `| head -1` having read all it wanted
        proc = run_tagger(*args, cwd=tmp_path, home=tmp_path, stdout=writer,
                          stderr=subprocess.PIPE, capture_output=False)
        os.close(writer)
        assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, args
        assert proc.returncode == 141, (args, proc.stderr)


def test_show_takes_folders_and_scan_takes_files(small_library, capsys):
    lib, db = small_library
    assert main(["scan", "--db", db, str(lib / NEXUIZ)]) == 0  # a file is no usage error
    assert rows(db, "select path from tracks") == [(str(lib / NEXUIZ),)]
    capsys.readouterr()
    assert main(["show", "--db", db, str(lib)]) == 0
    out = capsys.readouterr().out
    assert str(lib / NEXUIZ) in out and "not in the catalogue" not in out


def test_list_queues(small_library, tmp_path, capsys):
    lib, db = small_library
    config = tmp_path / "strict.toml"
    config.write_text("[tags]\nmin_confidence = 0.99\n")
    assert main(["scan", "--config", str(config), "--db", db, str(lib)]) == 1
    capsys.readouterr()
    assert main(["list", "--below-threshold", "--json", "--db", db]) == 0
    below = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {b["path"] for b in below} == {str(lib / SHORT), str(lib / NEXUIZ)}
    assert {b["not_written"] for b in below} == {"below_threshold"}
    assert main(["list", "--failed", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "notes.mp3\tfailed (unreadable)" in out
    assert main(["list", "--low", "0.0", "--db", db]) == 0
    assert capsys.readouterr().out == ""
    assert rows(db, "select count(*) from tracks where not_written = 'below_threshold'") == [
        (2,)]


def test_kept_user_genre_is_compared_case_insensitively(small_library, capsys):
    lib, db = small_library
    tags.write_genres(lib / NEXUIZ, ["ELECTRONIC"], None)  # the user's, in their own case
    tags.write_genres(lib / SHORT, ["Polka"], None)
    at_rest(lib)  # the user's edits are a while ago
    assert main(["scan", "--db", db, str(lib)]) == 1
    assert tags.read_genres(lib / NEXUIZ) == ["ELECTRONIC"]  # if_empty: left alone
    states = dict(rows(db, "select path, not_written from tracks"))
    assert states[str(lib / NEXUIZ)] is None  # it agrees with the model: nothing to review
    capsys.readouterr()
    assert main(["list", "--disagree", "--db", db]) == 0
    assert capsys.readouterr().out.startswith(str(lib / SHORT))


def test_genre_case_setting():
    assert display_genre("hip-hop", TagsConfig()) == "Hip-Hop"
    assert display_genre("r&b/soul", TagsConfig()) == "R&B/Soul"
    assert display_genre("rock'n'roll", TagsConfig()) == "Rock'n'roll"
    assert display_genre("hip-hop", TagsConfig(genre_case="lower")) == "hip-hop"
    assert display_genre("Hip Hop", TagsConfig()) == "Hip Hop"  # a rename is kept as given
    with pytest.raises(ConfigError, match="genre_case"):
        config_from_dict({"tags": {"genre_case": "upper"}})


def test_completion_scripts(tmp_path, capsys):
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert "--retry-failed" in script and " list " in f" {script} "
    path = tmp_path / "c.bash"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    for shell in ("zsh", "fish"):
        assert main(["completion", shell]) == 0
        assert "prune" in capsys.readouterr().out


def test_help_is_a_manual(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for part in ("exit status", "files:", "examples:", "--quiet", "list", "prune"):
        assert part in out


def test_sigterm_says_nothing_about_ctrl_c(capfd):
    with graceful_stop() as should_stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert should_stop()
    assert "Ctrl-C" not in capfd.readouterr().err


def test_the_daemon_logs_each_tag_it_writes(small_library, caplog, tmp_path):
    import threading

    from tagger.config import Config
    from tagger.service.watch import Watcher

    lib, db = small_library
    config = Config(database=db, state_dir=str(tmp_path / "state"))
    caplog.set_level(logging.INFO, logger="tagger")
    recorded = threading.Event()
    watcher = Watcher([str(lib)], config, workers=1,
                      recorded=lambda path: path.endswith(NEXUIZ) and recorded.set())
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        assert recorded.wait(300), "the daemon never recorded the file"
    finally:
        watcher.stop()
        thread.join(120)
    assert any("tagged Electronic" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- prune


def test_prune_forgets_long_missing_tracks_and_old_backups(small_library, tmp_path, capsys):
    lib, db = small_library
    config = tmp_path / "c.toml"
    config.write_text(f'database = "{db}"\n')
    assert main(["scan", "--config", str(config), str(lib)]) == 1
    (lib / NEXUIZ).unlink()
    assert main(["scan", "--config", str(config), str(lib)]) == 0  # nothing failed this time
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=40)).strftime(
        "%Y-%m-%d %H:%M:%S.000000")
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:  # missing for 40 days
        conn.execute("update tracks set updated_at = ? where status = 'missing'", (old,))
    backups = tmp_path / "c.sqlite.bak-0001-20200101T000000Z", tmp_path / (
        "c.sqlite.bak-0002-20210101T000000Z")
    for i, path in enumerate(backups):
        path.write_bytes(b"old")
        os.utime(path, (1_600_000_000 + i, 1_600_000_000 + i))
    capsys.readouterr()
    assert main(["prune", "--config", str(config), "--keep-backups", "1"]) == 0
    out = capsys.readouterr().out
    assert "forgot 1 tracks" in out and "deleted 1 old catalogue backups" in out
    assert not backups[0].exists() and backups[1].exists()
    assert rows(db, "select count(*) from tracks where path = ?", str(lib / NEXUIZ)) == [(0,)]
    [export] = (tmp_path / "state/tagger/pruned").glob("tag-writes-*.jsonl")
    history = [json.loads(line) for line in export.read_text().splitlines()]
    assert {h["path"] for h in history} == {str(lib / NEXUIZ)}


@pytest.mark.parametrize("option, value", [
    ("--keep-backups", "-1"), ("--keep-backups", "two"), ("--days", "-1"),
    ("--days", "nan"), ("--days", "inf"), ("--days", "1e400"), ("--days", "soon"),
])
def test_prune_refuses_a_negative_or_endless_option_and_deletes_nothing(tmp_path, capsys,
                                                                        option, value):
    """``--keep-backups -1`` deleted every backup; ``--days nan`` and ``1e400`` gave a
    traceback; ``--days -1`` was taken. Now a usage error (exit 2) naming the option."""
    db = tmp_path / "c.sqlite"
    assert main(["stats", "--db", f"sqlite:///{db}"]) == 0
    backups = [tmp_path / f"c.sqlite.bak-000{i}-2020010{i}T000000Z" for i in (1, 2)]
    for path in backups:
        path.write_bytes(b"old")
    capsys.readouterr()
    assert main(["prune", "--db", f"sqlite:///{db}", option, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("tagger prune: error: argument") and option in err[-1], err
    assert "Traceback" not in "\n".join(err)
    assert all(path.exists() for path in backups)


def test_prune_takes_a_huge_number_of_days_as_forever(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    assert main(["prune", "--db", db, "--days", "1e300", "--keep-backups", "0"]) == 0
    assert "forgot 0 tracks missing for more than 1e+300 days" in capsys.readouterr().out


# ---------------------------------------------------------------- the systemd unit


def test_unit_is_sandboxed_and_notifies():
    unit = (REPO / "contrib/tagger.service").read_text()
    for line in ("Type=notify", "PrivateNetwork=yes", "IPAddressDeny=any",
                 "ProtectSystem=strict", "NoNewPrivileges=yes", "StateDirectory=tagger",
                 "ReadWritePaths=-%h/Music"):
        assert f"\n{line}\n" in unit, line
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # the rating (0.9 SAFE with systemd 252) is in README; the lines above hold
    proc = subprocess.run([analyze, "security", "--offline=true", "tagger.service"],
                          cwd=REPO / "contrib", capture_output=True, text=True)
    rating = float(proc.stdout.rsplit("exposure level for tagger.service:", 1)[1].split()[0])
    assert rating <= 4.0, proc.stdout[-300:]
