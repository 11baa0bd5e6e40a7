"""Configuration: ``tagger.toml`` loaded once, validated at load, passed down as one object.

Lookup order: ``--config FILE``, then ``$TAGGER_CONFIG``, then ``./tagger.toml``, then
``$XDG_CONFIG_HOME/tagger/tagger.toml`` (default ``~/.config/tagger/tagger.toml``), else the
built-in defaults below. Unknown keys and values of
the wrong type are errors that name the key.

Paths (``state_dir``, the file of an SQLite ``database``): ``~`` and environment variables
(``$HOME``, ``${XDG_DATA_HOME}``) are expanded, an unset variable being an error, and a
relative path is taken relative to the folder of the config file that says it (as beets
resolves its ``library`` file and ``model.bundle`` is resolved here), never to whatever folder
a command is started in: the same file then means the same catalogue from anywhere (a
systemd unit, a cron job, a shell in another folder). The state directory must not lie inside
a library root: scans would walk the catalogue's backups, caches and review uploads.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import math
import os
import re
import tomllib
import types
import typing
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from tagger import formats
from tagger.errors import ConfigError

AUDIO_EXTENSIONS = formats.EXTENSIONS  # the one registry, tagger/formats.py


def default_state_dir() -> Path:
    """The per-user state directory (``$XDG_STATE_HOME/tagger``, else ``~/.local/state/tagger``
    on Linux; the platform's own place elsewhere)."""
    return platformdirs.user_state_path("tagger", appauthor=False)


def default_config_file() -> Path:
    """The per-user config file (``$XDG_CONFIG_HOME/tagger/tagger.toml``, else
    ``~/.config/tagger/tagger.toml`` on Linux; the platform's own place elsewhere)."""
    return platformdirs.user_config_path("tagger", appauthor=False) / "tagger.toml"


@dataclass(frozen=True)
class LibraryConfig:
    roots: tuple[str, ...] = ()
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS
    ignore: tuple[str, ...] = (
        ".*", "*.part", "*.tmp", "*~", "._*", "@eaDir", ".stfolder", ".tagger-*",
    )
    # a symlink leading outside the roots is skipped; true: read (classified, catalogued),
    # never written
    follow_symlinks: bool = False
    # a file modified less than this long ago, or open for writing by any program, is in
    # motion (a copy or download still running): not read for classification, never written
    settle_seconds: float = 5.0


@dataclass(frozen=True)
class ModelConfig:
    # "musicnn" is the shipped MSD+MTT pair; anything else is a path to a trained bundle.
    bundle: str = "musicnn"
    segments: int = 10
    segment_seconds: float = 3.0
    window_seconds: float = 30.0
    threads: int = 0  # 0: all cores (single-threaded streams over chunks of each batch)
    batch_segments: int = 80  # segments per forward pass; tracks are batched together
    precision: str = "auto"  # auto (bf16 where the CPU multiplies it natively) | fp32 | bf16
    device: str = "auto"  # auto (cuda when torch sees a GPU) | cpu | cuda
    # shorter tracks are not classified; between this and one segment they are repeat-padded
    min_track_seconds: float = 2.5
    descriptor_threshold: float = 0.2
    max_descriptors: int = 8


@dataclass(frozen=True)
class GenreConfig:
    # rename: {"hip-hop" = "Hip Hop"}; merge: {"dance" = "electronic"} folds a genre into another;
    # drop: genres never voted for.
    rename: dict[str, str] = field(default_factory=dict)
    merge: dict[str, str] = field(default_factory=dict)
    drop: tuple[str, ...] = ()


#: tags.min_confidence's default, and what "auto" means while the model has no calibration
DEFAULT_MIN_CONFIDENCE = 0.35
AUTO = "auto"


@dataclass(frozen=True)
class TagsConfig:
    write: str = "if_empty"  # if_empty | always | never
    # a number, or "auto": the threshold `tagger learn` measured for the model in use (the
    # lowest reaching target_precision on the library's labelled held-out tracks);
    # "auto" without a calibration falls back to DEFAULT_MIN_CONFIDENCE
    min_confidence: float | str = 0.35  # docs/genres.md: non-music scores below it
    target_precision: float = 0.9  # docs/training.md "Calibration"
    on_tie: str = "best"  # best | all | skip
    write_confidence: bool = True
    # how a genre is written into files: title ("Hip-Hop", as beets' lastgenre) | lower;
    # the catalogue keeps the vocabulary's own form ("hip-hop") either way
    genre_case: str = "title"
    # the unit a genre is decided for: album (one genre per album, pooled over all its
    # tracks' segments; compilations keep per-track genres) | track (each file on its own)
    scope: str = "album"
    # the genre tree (tagger/genre_tree.toml, docs/genres.md): write the genre's parents
    # after it ("Metal; Rock"); when the children split the vote (a tie, or a winner below
    # min_confidence) but their parent's family is clear, decide the parent
    with_parents: bool = False
    backoff_to_parent: bool = False
    # the only genres that may be written (empty: any); another genre is written as its
    # nearest allowed ancestor in the tree, else not at all (not_written: not_allowed)
    allowed_genres: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContentConfig:
    # the content gate (docs/genres.md "Is it music?"): EfficientAT (AudioSet) hears each
    # track first; speech, animal and other sounds get no genre (status not_music)
    gate: bool = True
    # AudioSet genres the musicnn map cannot name (reggae, ska, disco, funk, ...) enter the
    # genre map's vote where EfficientAT hears them clearly (docs/genres.md "AudioSet
    # genres"); needs the gate (it is the gate's own pass: no extra cost)
    audioset_genres: bool = True


@dataclass(frozen=True)
class DecodeConfig:
    ffmpeg: str = ""  # empty: ffmpeg on PATH, else the one bundled by imageio-ffmpeg
    timeout_seconds: float = 120.0


@dataclass(frozen=True)
class ScanConfig:
    workers: int = 0  # 0: one per core


@dataclass(frozen=True)
class ServiceConfig:
    # The daemon's CPU and I/O priority: "low" is nice 10, SCHED_BATCH and the idle I/O
    # class, so a user's own work goes first; "normal" leaves them as started.
    priority: str = "low"


@dataclass(frozen=True)
class WatchConfig:
    settle_seconds: float = 5.0
    observer: str = "auto"  # auto | native | polling
    poll_interval_seconds: float = 30.0  # how often the polling observer looks (NAS roots)
    rescan_interval_minutes: float = 360.0
    rescan_cron: str = ""  # crontab expression; overrides the interval when set
    retry_base_seconds: float = 60.0
    retry_max_attempts: int = 5
    # with nothing to do for this long, the daemon gives back the model and the decode
    # processes (started again with the next file); 0 keeps them
    idle_release_seconds: float = 300.0


@dataclass(frozen=True)
class ClusterConfig:
    engine: str = "local"  # local (worker processes here) | ray (docs/cluster.md)
    # Ray address: "" starts a private Ray on this machine, "auto" joins the cluster that
    # `ray start` runs here, or "HOST:PORT" of the head node
    address: str = ""
    # where the nodes see the library: {"/srv/music" = "/mnt/nas/music"} (this machine's
    # prefix = the nodes' prefix); empty: the same paths everywhere
    path_map: dict[str, str] = field(default_factory=dict)
    actors: int = 0  # inference actors (a model loaded in each); 0: one per node
    in_flight: int = 0  # files in flight; 0: one per cluster CPU + two batches per actor


@dataclass(frozen=True)
class ReviewConfig:
    """``tagger review`` (docs/review.md)."""

    host: str = "127.0.0.1"  # loopback; anything else also needs --allow-remote
    port: int = 8765  # 0: any free port
    # empty: only the random token of the printed start URL opens a session; set, the
    # password opens one too (typed into the page's login form)
    password: str = ""


@dataclass(frozen=True)
class Config:
    database: str = ""  # SQLAlchemy URL; empty: sqlite file in state_dir
    state_dir: str = ""
    log_level: str = "info"
    library: LibraryConfig = LibraryConfig()
    model: ModelConfig = ModelConfig()
    genres: GenreConfig = GenreConfig()
    tags: TagsConfig = TagsConfig()
    content: ContentConfig = ContentConfig()
    decode: DecodeConfig = DecodeConfig()
    scan: ScanConfig = ScanConfig()
    service: ServiceConfig = ServiceConfig()
    watch: WatchConfig = WatchConfig()
    cluster: ClusterConfig = ClusterConfig()
    review: ReviewConfig = ReviewConfig()
    source: str | None = None  # the file this was loaded from, None for built-in defaults

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).expanduser() if self.state_dir else default_state_dir()

    @property
    def database_url(self) -> str:
        if self.database:
            return self.database
        return f"sqlite:///{self.state_path / 'catalogue.sqlite'}"


_CHOICES = {
    "log_level": ("debug", "info", "warning", "error"),
    "tags.write": ("if_empty", "always", "never"),
    "tags.on_tie": ("best", "all", "skip"),
    "tags.genre_case": ("title", "lower"),
    "tags.scope": ("album", "track"),
    "watch.observer": ("auto", "native", "polling"),
    "model.precision": ("auto", "fp32", "bf16"),
    "model.device": ("auto", "cpu", "cuda"),
    "service.priority": ("low", "normal"),
    "cluster.engine": ("local", "ray"),
}
_POSITIVE = {
    "model.segments", "model.segment_seconds", "model.min_track_seconds", "model.window_seconds",
    "model.batch_segments",
    "decode.timeout_seconds", "watch.rescan_interval_minutes", "watch.retry_base_seconds",
    "watch.poll_interval_seconds",
}
_NON_NEGATIVE = {
    "model.threads", "scan.workers", "watch.settle_seconds", "watch.retry_max_attempts",
    "library.settle_seconds", "model.max_descriptors", "cluster.actors", "cluster.in_flight",
    "review.port", "watch.idle_release_seconds",
}
_UNIT_INTERVAL = {"tags.min_confidence", "model.descriptor_threshold", "tags.target_precision"}
#: Upper bounds: past them a value is a typo, and taking it literally crashes or starves the
#: machine (100000 torch threads segfault, thousands exhaust the process table, an infinite
#: window fails every file).
MAX_WORKERS = 256
_DAY = 86400.0
_MAXIMUM = {
    "model.threads": 256, "scan.workers": MAX_WORKERS, "model.segments": 1000,
    "model.batch_segments": 100_000, "model.max_descriptors": 1000,
    "watch.retry_max_attempts": 1000,
    "model.segment_seconds": 60.0, "model.window_seconds": 3600.0,
    "model.min_track_seconds": 3600.0, "decode.timeout_seconds": _DAY,
    "watch.settle_seconds": _DAY, "watch.poll_interval_seconds": _DAY,
    "library.settle_seconds": _DAY, "watch.retry_base_seconds": 7 * _DAY,
    "watch.rescan_interval_minutes": 366 * 24 * 60.0,
    "review.port": 65535, "watch.idle_release_seconds": 7 * _DAY,
}


def workers_option(text: str) -> int:
    """``--workers N``: the same range as ``scan.workers`` (0: one per core)."""
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"--workers: not an integer: {text!r}") from None
    if not 0 <= value <= MAX_WORKERS:
        raise ConfigError(f"--workers: must be between 0 and {MAX_WORKERS}, not {value}")
    return value


def find_config_file(explicit: str | None = None) -> Path | None:
    """The config file to use, by the documented lookup order; None means built-in defaults."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError("config file not found", path)
        return path
    env = os.environ.get("TAGGER_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError("config file named by $TAGGER_CONFIG not found", path)
        return path
    for candidate in (Path("tagger.toml"), default_config_file()):
        if candidate.is_file():
            return candidate
    return None


def load_config(explicit: str | None = None) -> Config:
    """Find, parse and validate the configuration."""
    path = find_config_file(explicit)
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config: {exc}", path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path) from exc
    return config_from_dict(data, source=str(path))


def config_from_dict(data: dict, source: str | None = None) -> Config:
    """Build a validated Config from parsed TOML; errors name the offending key."""
    unknown = _unknown_keys(Config, data, "")
    if unknown:  # every one at once: a user fixing a file should not learn them one by one
        names = ", ".join(unknown)
        raise ConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} {names}", source)
    try:
        config = _build(Config, data, prefix="")
    except ConfigError as exc:
        raise ConfigError(exc.message, source) from None
    # levels as people write them ("INFO", "Warning") are the same levels
    config = dataclasses.replace(config, source=source, log_level=config.log_level.lower())
    try:
        config = _resolve_paths(config, source)
    except ConfigError as exc:
        raise ConfigError(exc.message, source) from None
    _validate_values(config, source)
    return config


_VARIABLE = re.compile(r"\$(?:(\w+)|\{([^}]*)\})")  # $NAME, ${NAME}
#: an SQLite URL with a file: the prefix, the path, the query (``sqlite:///rel.db``,
#: ``sqlite:////abs.db?timeout=5``); ``:memory:`` and ``file:`` URIs are left alone
_SQLITE_FILE = re.compile(r"(sqlite(?:\+\w+)?:///)([^?]*)(\?.*)?", re.DOTALL)


def expand_path(text: str, key: str, base: str | None) -> str:
    """A path as the config file says it: ``$VARIABLES`` and ``~`` expanded (an unset variable
    is an error naming ``key``), a relative path taken relative to the folder ``base`` (the
    config file's; None: the current folder). Absolute, normalised."""

    def variable(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        value = os.environ.get(name) if name else None
        if value is None:
            raise ConfigError(f"'{key}': the environment variable ${name} is not set")
        return value

    expanded = os.path.expanduser(_VARIABLE.sub(variable, text))
    if not expanded.strip():
        raise ConfigError(f"'{key}' is empty once expanded ({text!r})")
    return os.path.normpath(os.path.join(base or os.getcwd(), expanded))


def _resolve_paths(config: Config, source: str | None) -> Config:
    """``state_dir`` and the file of an SQLite ``database`` as absolute paths (see the module
    docstring: relative to the config file's folder)."""
    base = os.path.dirname(os.path.abspath(source)) if source else None
    changes = {}
    if config.state_dir:
        changes["state_dir"] = expand_path(config.state_dir, "state_dir", base)
    match = _SQLITE_FILE.fullmatch(config.database)
    if match and match.group(2) and match.group(2) != ":memory:" and not match.group(
            2).startswith("file:"):
        path = expand_path(match.group(2), "database", base)
        changes["database"] = f"{match.group(1)}{path}{match.group(3) or ''}"
    return dataclasses.replace(config, **changes) if changes else config


def _inside_library(state: str, library: LibraryConfig) -> str | None:
    """The library root that scans would find ``state`` under (None: none): a root above it
    with no folder on the way that ``library.ignore`` skips (a hidden one, by default)."""
    state = os.path.realpath(state)
    for root in library.roots:
        real = os.path.realpath(os.path.abspath(os.path.expanduser(root)))
        if os.path.commonpath([state, real]) != real:
            continue
        parts = os.path.relpath(state, real).split(os.sep)
        if not any(fnmatch.fnmatchcase(part, pattern) for part in parts if part != "."
                   for pattern in library.ignore):
            return root
    return None


def _unknown_keys(cls, data, prefix: str) -> list[str]:
    """Every key of ``data`` (nested tables included) that ``cls`` does not have, quoted, with
    the known key it is a typo of, if one is close (``'tags.writ' (did you mean
    'tags.write'?)``)."""
    if not isinstance(data, dict):
        return []
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    out = []
    for key, value in data.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            out.append(f"'{prefix}{key}'" + (f" (did you mean '{prefix}{close[0]}'?)"
                                             if close else ""))
        elif dataclasses.is_dataclass(hints[key]):
            out += _unknown_keys(hints[key], value, f"{prefix}{key}.")
    return out


def _build(cls, data: dict, prefix: str):
    if not isinstance(data, dict):
        raise ConfigError(f"'{prefix.rstrip('.')}' must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(data) - known)
    if unknown:  # every one at once: a user fixing a file should not learn them one by one
        names = ", ".join(f"'{prefix}{key}'" for key in unknown)
        raise ConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} {names}")
    values = {}
    for name, value in data.items():
        values[name] = _coerce(hints[name], value, f"{prefix}{name}")
    return cls(**values)


def _coerce(hint, value, key: str):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, prefix=f"{key}.")
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"'{key}' must be a list of strings")
        return tuple(value)
    if origin is dict:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigError(f"'{key}' must be a table of strings")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if float in args and str in args:  # a number or "auto" (tags.min_confidence)
            if isinstance(value, str):
                if value != AUTO:
                    raise ConfigError(f"'{key}' must be a number or \"{AUTO}\"")
                return value
            return _coerce(float, value, key)
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{key}' must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{key}' must be an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{key}' must be a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{key}' must be a string")
        return value
    raise ConfigError(f"'{key}' has an unsupported type")  # pragma: no cover


def _lookup(config: Config, key: str):
    value = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _validate_allowed_genres(config: Config, source: str | None) -> None:
    """``tags.allowed_genres``: genres of the tree (or named in ``[genres]``), each once."""
    from tagger.genre_tree import fold, genre_tree

    tree = genre_tree(config.genres.rename)
    named = {fold(g) for g in (*config.genres.rename.values(), *config.genres.merge.values())}
    seen: set[str] = set()
    for genre in config.tags.allowed_genres:
        if not genre.strip() or not (tree.knows(genre) or fold(genre) in named):
            raise ConfigError(f"'tags.allowed_genres': unknown genre {genre!r} (not in the "
                              "genre tree, tagger/genre_tree.toml, nor in [genres])", source)
        if fold(genre) in seen:
            raise ConfigError(f"'tags.allowed_genres': {genre!r} is listed twice", source)
        seen.add(fold(genre))


def _validate_values(config: Config, source: str | None) -> None:
    for key, choices in _CHOICES.items():
        if _lookup(config, key) not in choices:
            raise ConfigError(f"'{key}' must be one of {', '.join(choices)}", source)
    for key in _POSITIVE:
        if _lookup(config, key) <= 0:
            raise ConfigError(f"'{key}' must be greater than 0", source)
    for key in _NON_NEGATIVE:
        if _lookup(config, key) < 0:
            raise ConfigError(f"'{key}' must not be negative", source)
    for key in _UNIT_INTERVAL:
        if _lookup(config, key) == AUTO:
            continue
        if not 0.0 <= _lookup(config, key) <= 1.0:
            raise ConfigError(f"'{key}' must be between 0 and 1", source)
    for key, most in _MAXIMUM.items():
        value = _lookup(config, key)
        if not math.isfinite(value):
            raise ConfigError(f"'{key}' must be a finite number", source)
        if value > most:
            raise ConfigError(f"'{key}' must be at most {most:g}", source)
    for table in ("rename", "merge"):
        for name, target in getattr(config.genres, table).items():
            if not target.strip():
                raise ConfigError(f"'genres.{table}': {name!r} = \"\" would erase that genre "
                                  "from your files; 'genres.drop' leaves a genre out", source)
            if any(unicodedata.category(c) == "Cc" for c in target):
                raise ConfigError(f"'genres.{table}': the genre for {name!r} holds a control "
                                  "character", source)
    _validate_allowed_genres(config, source)
    root = _inside_library(str(config.state_path), config.library)
    if root is not None:
        raise ConfigError(f"'state_dir' {config.state_path} lies inside the library root {root}:"
                          " scans would walk the catalogue's backups and caches; put it "
                          "elsewhere", source)
    if config.tags.target_precision <= 0.0:
        raise ConfigError("'tags.target_precision' must be greater than 0", source)
    if not config.review.host.strip():
        raise ConfigError("'review.host' must not be empty", source)
    if config.review.password and len(config.review.password) < 8:
        raise ConfigError("'review.password' must be at least 8 characters (or empty)", source)
    model = config.model
    if model.segments * model.segment_seconds > model.window_seconds + 1e-9:
        raise ConfigError(
            "'model.segments' x 'model.segment_seconds' must fit in 'model.window_seconds'", source
        )
    if model.segment_seconds < 1.0:
        # the timbral filters span 7 frames and the mid-end 3 x 7; shorter input says nothing
        raise ConfigError("'model.segment_seconds' must be at least 1.0", source)
