"""tagger.toml: lookup order, defaults, and validation that names the key."""

import pytest

from tagger.config import Config, config_from_dict, load_config
from tagger.errors import ConfigError


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No config anywhere: empty cwd and home, no $TAGGER_CONFIG, no $XDG_*_HOME."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("TAGGER_CONFIG", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.chdir(work)
    return home, work


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_builtin_defaults_without_any_file(isolated):
    config = load_config()
    assert config == Config()
    assert config.source is None
    assert config.tags.write == "if_empty" and config.model.segments == 10
    assert config.database_url.startswith("sqlite:///") and "tagger" in config.database_url


def test_lookup_order(isolated, monkeypatch, tmp_path):
    home, work = isolated
    write(home / ".config/tagger/tagger.toml", "log_level = 'error'\n")
    assert load_config().log_level == "error"
    write(work / "tagger.toml", "log_level = 'warning'\n")
    assert load_config().log_level == "warning"
    env_file = write(tmp_path / "env.toml", "log_level = 'debug'\n")
    monkeypatch.setenv("TAGGER_CONFIG", str(env_file))
    assert load_config().log_level == "debug"
    explicit = write(tmp_path / "explicit.toml", "log_level = 'info'\n")
    config = load_config(str(explicit))
    assert config.log_level == "info" and config.source == str(explicit)


def test_xdg_config_and_state_homes_are_honoured(isolated, monkeypatch, tmp_path):
    home, _ = isolated
    assert Config().state_path == home / ".local/state/tagger"
    write(home / ".config/tagger/tagger.toml", "log_level = 'warning'\n")
    xdg_config = tmp_path / "xdg-config"
    write(xdg_config / "tagger/tagger.toml", "log_level = 'error'\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg_config))
    config = load_config()
    assert config.log_level == "error" and config.source == str(xdg_config / "tagger/tagger.toml")

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    assert Config().state_path == tmp_path / "xdg-state/tagger"
    assert Config().database_url == f"sqlite:///{tmp_path}/xdg-state/tagger/catalogue.sqlite"


def test_missing_explicit_file_is_an_error(isolated):
    with pytest.raises(ConfigError, match="not found"):
        load_config("nope.toml")


@pytest.mark.parametrize("data,key", [
    ({"bogus": 1}, "'bogus'"),
    ({"tags": {"writ": "always"}}, "'tags.writ'"),
    ({"tags": {"write": "sometimes"}}, "'tags.write'"),
    ({"tags": {"min_confidence": "high"}}, "'tags.min_confidence'"),
    ({"tags": {"min_confidence": 1.5}}, "'tags.min_confidence'"),
    ({"model": {"segments": 0}}, "'model.segments'"),
    ({"model": {"segments": 2.5}}, "'model.segments'"),
    ({"model": {"segments": 20}}, "'model.segments'"),
    ({"library": {"roots": "/music"}}, "'library.roots'"),
    ({"genres": {"rename": {"jazz": 1}}}, "'genres.rename'"),
    ({"tags": "always"}, "'tags'"),
    ({"watch": {"observer": "magic"}}, "'watch.observer'"),
    ({"tags": {"write_confidence": "yes"}}, "'tags.write_confidence'"),
])
def test_invalid_values_name_the_key(data, key):
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict(data, source="x.toml")
    assert key in str(excinfo.value)
    assert str(excinfo.value).startswith("x.toml: ")


def test_invalid_toml_is_a_config_error(isolated):
    _, work = isolated
    write(work / "tagger.toml", "tags = [unclosed\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config()


def test_values_are_read(isolated):
    _, work = isolated
    write(work / "tagger.toml", """
database = "sqlite:////tmp/x.sqlite"
[library]
roots = ["/music", "/more"]
[tags]
write = "always"
min_confidence = 0.4
on_tie = "all"
[genres]
rename = { "hip-hop" = "Hip Hop" }
drop = ["world"]
""")
    config = load_config()
    assert config.database_url == "sqlite:////tmp/x.sqlite"
    assert config.library.roots == ("/music", "/more")
    assert (config.tags.write, config.tags.min_confidence, config.tags.on_tie) == (
        "always", 0.4, "all")
    assert config.genres.rename == {"hip-hop": "Hip Hop"} and config.genres.drop == ("world",)


def test_shipped_tagger_toml_documents_exactly_the_defaults():
    import dataclasses
    from pathlib import Path

    shipped = Path(__file__).resolve().parent.parent / "tagger.toml"
    assert dataclasses.replace(load_config(str(shipped)), source=None) == Config()


@pytest.mark.parametrize("key, value", [
    ("model.threads", "100000"), ("model.threads", "5000"), ("scan.workers", str(2**63 - 1)),
    ("scan.workers", "-3"), ("decode.timeout_seconds", "inf"), ("model.window_seconds", "inf"),
    ("watch.settle_seconds", "nan"), ("model.batch_segments", "10000000"),
])
def test_absurd_numbers_are_refused_at_load_naming_the_key(tmp_path, capsys, key, value):
    from tagger.cli import main

    table, name = key.split(".")
    config = write(tmp_path / "tagger.toml", f"[{table}]\n{name} = {value}\n")
    assert main(["--config", str(config), "stats", "--db", f"sqlite:///{tmp_path}/c.sqlite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"'{key}'" in err[0], err
    assert not (tmp_path / "c.sqlite").exists()


@pytest.mark.parametrize("value", ["-3", str(2**63 - 1), "100000", "many"])
def test_absurd_workers_option_is_a_usage_error(tmp_path, capsys, value):
    from tagger.cli import main

    (tmp_path / "lib").mkdir()
    code = main(["scan", "--workers", value, "--db", f"sqlite:///{tmp_path}/c.sqlite",
                 str(tmp_path / "lib")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workers" in err[0], err


# ---------------------------------------------------------------- genre renames (issue #24)


@pytest.mark.parametrize("table, entry", [
    ("rename", '"jazz" = ""'), ("rename", '"jazz" = "   "'), ("merge", '"dance" = ""'),
    ("rename", '"jazz" = "Ja\\u001bzz"'),
])
def test_a_rename_to_nothing_is_refused_at_load_naming_the_key(tmp_path, capsys, table, entry):
    """An empty target would take the genre out of every file tagger writes (and the genre
    the user set with it): one line naming the key, exit 2, nothing created."""
    from tagger.cli import main

    config = write(tmp_path / "tagger.toml", f"[genres]\n{table} = {{ {entry} }}\n")
    assert main(["--config", str(config), "stats", "--db", f"sqlite:///{tmp_path}/c.sqlite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"'genres.{table}'" in err[0], err
    assert not (tmp_path / "c.sqlite").exists()


# ---------------------------------------------------------------- paths (issue #24)


def test_state_dir_expands_home_and_variables_and_is_relative_to_the_config_file(
        isolated, monkeypatch, tmp_path):
    home, work = isolated
    monkeypatch.setenv("TAGGER_TEST_STATE", str(tmp_path / "from-env"))
    folder = tmp_path / "conf"
    cases = {
        '"$HOME/x"': home / "x",
        '"${HOME}/y"': home / "y",
        '"~/z"': home / "z",
        '"$TAGGER_TEST_STATE/tagger"': tmp_path / "from-env/tagger",
        '"state"': folder / "state",  # beside the config file, wherever the command runs
        '"../elsewhere/state"': tmp_path / "elsewhere/state",
    }
    for text, want in cases.items():
        config = load_config(str(write(folder / "tagger.toml", f"state_dir = {text}\n")))
        assert config.state_path == want, text
        assert config.database_url == f"sqlite:///{want}/catalogue.sqlite"
    assert not any(work.iterdir())


def test_an_sqlite_database_path_is_expanded_the_same_way(isolated, tmp_path):
    home, work = isolated
    folder = tmp_path / "conf"
    cases = {
        "sqlite:///$HOME/c.sqlite": f"sqlite:///{home}/c.sqlite",
        "sqlite:///~/c.sqlite": f"sqlite:///{home}/c.sqlite",
        "sqlite:///c.sqlite": f"sqlite:///{folder}/c.sqlite",
        "sqlite:////abs/c.sqlite?timeout=5": "sqlite:////abs/c.sqlite?timeout=5",
        "sqlite:///:memory:": "sqlite:///:memory:",
        "postgresql+psycopg://u:$ecret@host/tagger": "postgresql+psycopg://u:$ecret@host/tagger",
    }
    for text, want in cases.items():
        config = load_config(str(write(folder / "tagger.toml", f'database = "{text}"\n')))
        assert config.database_url == want, text


def test_an_unset_variable_in_state_dir_is_one_line_and_exit_2(isolated, capsys, tmp_path):
    from tagger.cli import main

    home, work = isolated
    config = write(tmp_path / "tagger.toml", 'state_dir = "$TAGGER_NO_SUCH_VARIABLE/x"\n')
    assert main(["--config", str(config), "classify", str(tmp_path / "nothing.ogg")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'state_dir'" in err[0] and "TAGGER_NO_SUCH_VARIABLE" in err[0]
    assert not any(work.iterdir()) and not (tmp_path / "$TAGGER_NO_SUCH_VARIABLE").exists()


def test_a_command_in_another_folder_writes_nothing_there(isolated, tmp_path):
    """The red team's case: ``state_dir = "$HOME/x"`` made ``./$HOME/x`` wherever a command ran
    (the catalogue; classify's numba cache)."""
    from tagger.cli import main

    home, work = isolated
    config = write(tmp_path / "conf/tagger.toml", 'state_dir = "$HOME/x"\n')
    assert main(["--config", str(config), "stats"]) == 0
    assert not any(work.iterdir())
    assert (home / "x/catalogue.sqlite").is_file()


@pytest.mark.parametrize("state, ok", [
    ("{lib}/state", False), ("{lib}", False), ("{lib}/Rock/state", False),
    ("{lib}/.tagger", True),  # a hidden folder: library.ignore skips it
    ("{tmp}/state", True),
])
def test_a_state_dir_inside_a_library_root_is_refused(tmp_path, capsys, state, ok):
    from tagger.cli import main

    lib = tmp_path / "Music"
    (lib / "Rock").mkdir(parents=True)
    text = f'state_dir = "{state.format(lib=lib, tmp=tmp_path)}"\n[library]\nroots = ["{lib}"]\n'
    config = write(tmp_path / "tagger.toml", text)
    code = main(["--config", str(config), "stats", "--db", f"sqlite:///{tmp_path}/c.sqlite"])
    err = capsys.readouterr().err.strip().splitlines()
    if ok:
        assert code == 0, err
        return
    assert code == 2 and len(err) == 1 and "'state_dir'" in err[0] and str(lib) in err[0], err
    assert not (tmp_path / "c.sqlite").exists()
