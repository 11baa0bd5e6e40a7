"""tagger as a beets plugin: genres decided from the audio, inside ``beet import`` and queries.

``plugins: tagger`` in beets' config.yaml (docs/beets.md). A thin adapter over tagger's own
engine: the decode workers (:mod:`tagger.service.pool`), the classifier and its vote
(:mod:`tagger.model.classify`, :mod:`tagger.model.vote`), the tag policy
(:mod:`tagger.service.policy`) and ``tagger learn`` (:mod:`tagger.learn.from_library`). beets
owns the library and the files: genres go into its ``genres`` field (``genre`` before beets
2.7) and are written by ``item.try_write()``; what tagger decided is kept in flexible
attributes (``tagger_genre``, ``tagger_confidence``, ``tagger_tie``, ``tagger_model``, and
``tagger_written``: the genres tagger itself put in the field, which are never taken for the
user's own), and the file's TAGGER_GENRE_CONFIDENCE is the media field
``tagger_genre_confidence``. tagger's state (numba and embedding caches; with ``--learn``, the
adopted heads and calibrations in a catalogue of their own) lives in ``tagger.state_dir``, by
default ``<beets config dir>/tagger``; no tagger catalogue of the files is kept.

tagger is imported only when the plugin has work to do: ``beet ls`` does not load torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

import mediafile
from beets import config as beets_config
from beets import plugins, ui
from beets.dbcore import types
from beets.library import Album, Item

if TYPE_CHECKING:
    from tagger.config import Config, TagsConfig
    from tagger.results import TrackResult, Vote
    from tagger.service.policy import TagDecision

#: the file tag tagger writes its confidence into (tagger.library.tags: the same keys)
CONFIDENCE_TAG = "TAGGER_GENRE_CONFIDENCE"
SOURCES = ("album", "track")
#: the flexible attributes the plugin sets on items and albums
FIELDS = {
    "tagger_genre": types.STRING,  # the vote's genre, as it would be written
    "tagger_confidence": types.NullFloat(3),  # calibrated where a calibration exists
    "tagger_tie": types.BOOLEAN,
    "tagger_model": types.STRING,  # name@sha256[:12] of the model that decided
    "tagger_written": types.STRING,  # the genres tagger wrote ("; " between them)
}
#: the media field mirroring the file's TAGGER_GENRE_CONFIDENCE (``write_confidence``): the
#: confidence of the genre tagger wrote, set only with it (a genre the user set gets none)
FILE_CONFIDENCE = "tagger_genre_confidence"
WRITTEN_SEPARATOR = "; "


class TaggerPlugin(plugins.BeetsPlugin):
    item_types = {**FIELDS, FILE_CONFIDENCE: types.NullFloat(3)}
    album_types = FIELDS

    def __init__(self):
        super().__init__()
        self.config.add({
            "auto": True,  # classify on import
            "source": "album",  # album: one genre per album from all its tracks | track
            "force": False,  # replace a genre the user set
            "min_confidence": 0.35,  # a number, or "auto" (after `beet tagger --learn`)
            "write_confidence": True,  # also write TAGGER_GENRE_CONFIDENCE into the files
            "whitelist": [],  # genres tagger may choose (a list or a file); empty: all
            "bundle": "",  # a trained bundle; empty: the adopted one, else the genre map
            "workers": 0,  # decode worker processes; 0: one per core
            "state_dir": "",  # empty: <beets config dir>/tagger
        })
        self.file_confidence = self.config["write_confidence"].get(bool)
        if self.file_confidence:
            self.add_media_field(FILE_CONFIDENCE, confidence_field())
        if self.config["auto"].get(bool):
            self.import_stages = [self.imported]
            self.register_listener("import_task_files", self.import_task_files)
        self.register_listener("cli_exit", self.cli_exit)
        self.engine: Engine | None = None
        self.unwritten: set[int] = set()  # import tasks whose files beets will not write
        self.broken = ""  # why the engine could not start during an import

    # -------------------------------------------------------------- settings

    def source(self, given: str | None = None) -> str:
        source = given or self.config["source"].as_str()
        if source not in SOURCES:
            raise ui.UserError(f"tagger: source must be album or track, not {source!r}")
        return source

    def state_dir(self) -> str:
        if self.config["state_dir"].get():
            return self.config["state_dir"].as_filename()
        return os.path.join(beets_config.config_dir(), "tagger")

    def whitelist(self) -> list[str]:
        """The whitelist as genre names: the list given, or the lines of the file named
        (``#`` comments), as lastgenre reads its own; empty: no restriction."""
        value = self.config["whitelist"].get()
        if not value or value is True:
            return []
        if isinstance(value, str):
            path = self.config["whitelist"].as_filename()
            try:
                with open(path, encoding="utf-8") as handle:
                    lines = handle.read().splitlines()
            except OSError as exc:
                raise ui.UserError(f"tagger: cannot read the whitelist {path}: {exc}") from None
            return [line.strip() for line in lines
                    if line.strip() and not line.lstrip().startswith("#")]
        if isinstance(value, list):
            return [str(v) for v in value]
        raise ui.UserError("tagger: whitelist must be a list of genres or a file name")

    def tagger_config(self) -> Config:
        """tagger's config for this plugin's settings, validated by tagger; an error names
        the option in beets' config and the tagger setting it maps to."""
        from tagger.config import config_from_dict
        from tagger.errors import ConfigError

        bundle = self.config["bundle"].as_filename() if self.config["bundle"].get() else ""
        given = {  # option: (tagger's section, key, value)
            "state_dir": (None, "state_dir", self.state_dir()),
            "bundle": ("model", "bundle", bundle or "musicnn"),
            "workers": ("scan", "workers", self.config["workers"].get()),
            "min_confidence": ("tags", "min_confidence", self.config["min_confidence"].get()),
            "write_confidence": ("tags", "write_confidence",
                                 self.config["write_confidence"].get()),
            "whitelist": ("genres", "drop", dropped_genres(self.whitelist())),
        }
        data: dict = {}
        for option, (section, key, value) in given.items():
            piece = {section: {key: value}} if section else {key: value}
            try:
                config_from_dict(piece)
            except ConfigError as exc:
                raise ui.UserError(f"tagger.{option} ({value!r}): {exc.message}") from None
            if section:
                data.setdefault(section, {})[key] = value
            else:
                data[key] = value
        return config_from_dict(data, source="beets config, tagger section")

    def policy(self, force: bool) -> TagsConfig:
        """The tag policy: the user's genre kept unless ``force``; the threshold as the
        engine resolved it (a number, "auto" made one)."""
        tags = self.start_engine().config.tags
        return dataclasses.replace(tags, write="always" if force else "if_empty")

    def start_engine(self, files: int = 0) -> Engine:
        """The engine, started at the first call (``files``: how many there are to classify,
        when known: no more decode workers than that)."""
        if self.engine is None:
            from tagger.errors import TaggerError

            try:
                self.engine = Engine.start(self.tagger_config(), files)
            except TaggerError as exc:
                raise ui.UserError(f"tagger: {exc}") from None
        return self.engine

    # -------------------------------------------------------------- the command

    def commands(self) -> list[ui.Subcommand]:
        command = ui.Subcommand("tagger", help="set genres from the audio (tagger's CNN)")
        parser = command.parser
        parser.usage += " [QUERY]"
        parser.add_option("-p", "--pretend", action="store_true", default=False,
                          help="show what would be set, change nothing")
        parser.add_option("-f", "--force", dest="force", action="store_true", default=None,
                          help="replace genres the user set")
        parser.add_option("-F", "--no-force", dest="force", action="store_false",
                          help="keep genres the user set (the default)")
        parser.add_option("-s", "--source", dest="source", choices=SOURCES,
                          help="album (one genre per album) or track")
        parser.add_option("--learn", action="store_true", default=False,
                          help="train a genre head on the library's own genres and report it")
        parser.add_option("--adopt", action="store_true", default=False,
                          help="with --learn: use the head from now on")
        parser.add_option("--min-tracks", type="int", default=5,
                          help="with --learn: fewest tracks a genre needs (default 5)")
        parser.add_option("--folds", type="int", default=5,
                          help="with --learn: cross-validation folds (default 5)")
        command.func = self.run_command
        return [command]

    def run_command(self, lib, opts, args) -> None:
        if opts.learn:
            self.learn(lib, opts, args)
            return
        force = self.config["force"].get(bool) if opts.force is None else opts.force
        source = self.source(opts.source)
        if self.engine is None:
            self.tagger_config()  # a wrong setting is said before any work
        if source == "album":
            targets = [Target(album, list(album.items())) for album in lib.albums(args)]
            targets += [Target(item, [item]) for item in lib.items(args)
                        if item.album_id is None]
        else:
            targets = [Target(item, [item]) for item in lib.items(args)]
        if not targets:
            ui.print_("tagger: nothing matched")
            return
        albums = sum(isinstance(t.obj, Album) for t in targets)
        tracks = sum(len(t.items) for t in targets)
        self.say(f"classifying {tracks} tracks"
                 + (f" of {albums} album{'s' if albums > 1 else ''}" if albums else ""))
        engine = self.start_engine(tracks)
        policy = self.policy(force)
        write = ui.should_write()
        done = 0
        for target, results in engine.classify_targets(targets):
            done += 1
            line = self.settle(target, results, policy, pretend=opts.pretend, write=write)
            ui.print_(f"[{done}/{len(targets)}] {line}")

    # -------------------------------------------------------------- import

    def imported(self, session, task) -> None:
        """Import stage: classify the task's album (or singleton) and store the genres, before
        beets moves and writes the files (a failure costs the genres, never the import)."""
        from tagger.errors import TaggerError

        if task.is_album:
            items = list(task.imported_items())
            album = task.album
            source = self.source()
            targets = ([Target(album, items)] if source == "album"
                       else [Target(item, [item]) for item in items])
        else:
            targets = [Target(task.item, [task.item])]
        if self.broken:
            return
        if self.engine is None:
            self.say("loading the model and starting the decode workers")
        try:
            policy = self.policy(self.config["force"].get(bool))
            for target, results in self.start_engine().classify_targets(targets):
                line = self.settle(target, results, policy, pretend=False, write=False)
                ui.print_(f"tagger: {line}")
        except (TaggerError, ui.UserError) as exc:
            self._log.error("not classified: {}", exc)
            if self.engine is None:  # no model: say it once, import the rest as it is
                self.broken = str(exc)
            return
        if session.config["write"].get(bool) and not task.apply:
            self.unwritten.add(id(task))  # an as-is import: beets writes no tags

    def import_task_files(self, session, task) -> None:
        """Files in place: write the genres where beets itself did not (as-is imports)."""
        if id(task) not in self.unwritten:
            return
        self.unwritten.discard(id(task))
        for item in task.imported_items():
            item.try_write()

    def cli_exit(self, lib) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    # -------------------------------------------------------------- deciding

    def settle(self, target: Target, results: Sequence[TrackResult], policy: TagsConfig, *,
               pretend: bool, write: bool) -> str:
        """Decide ``target``'s genre from its tracks' results, set it (unless ``pretend``),
        and say what happened in one line."""
        for result in results:
            if result.error:
                self._log.warning("{}: {}", result.path, result.error)
        engine = self.start_engine()
        outcome = (album_vote(results, engine.genres, engine.calibrator)
                   if isinstance(target.obj, Album) else results[0].vote)
        if outcome is None:
            return f"{target.obj}: not classified (no readable track)"
        model = engine.model_label
        album = target.obj if isinstance(target.obj, Album) else None
        before = snapshot(target.obj)
        decision = apply_vote(target.obj, outcome, policy, model, pretend=pretend,
                              file_confidence=self.file_confidence)
        notes, set_on = [], 0
        for item in target.items if album is not None else []:
            was = snapshot(item)
            own = apply_vote(item, outcome, policy, model, pretend=pretend,
                             file_confidence=self.file_confidence)
            set_on += bool(own.genres)
            if own.not_written is not None and own.reason != decision.reason:
                notes.append(f"{item.title or os.fsdecode(item.path)}: {own.reason}")
            if snapshot(item) != was:
                self.store(item, write)
        if set_on and (not decision.genres or set_on < len(target.items)):
            notes.insert(0, f"{'would set' if pretend else 'set'} on {set_on} of "
                            f"{len(target.items)} tracks")
        if snapshot(target.obj) != before:
            if album is not None:
                album.store(inherit=False)  # each track was decided for itself above
            else:
                self.store(target.obj, write)
        return "; ".join([f"{target.obj}: {describe(outcome, decision, policy, pretend)}",
                          *notes])

    def store(self, item: Item, write: bool) -> None:
        if write:
            item.try_write()
        item.store()

    # -------------------------------------------------------------- learn

    def learn(self, lib, opts, args) -> None:
        """``beet tagger --learn``: ``tagger learn`` on the genres of the beets library."""
        from tagger.errors import TaggerError
        from tagger.learn.from_library import labels_from_rows

        if opts.folds < 2:
            raise ui.UserError("tagger: --folds must be at least 2")
        rows = [row for row in map(label_row, lib.items(args)) if row is not None]
        labels = labels_from_rows(rows, location=os.fsdecode(lib.path),
                                  min_tracks=opts.min_tracks)
        if len({t.genre for t in labels.dataset.tracks}) < 2:
            raise ui.UserError(
                f"tagger: --learn needs at least 2 genres with {opts.min_tracks} or more "
                f"tracks each, from genres the user set (not tagger); tracks with one: "
                f"{len(rows)}"
                + (" (too few: " + ", ".join(f"{g} {n}" for g, n in labels.too_few.items())
                   + ")" if labels.too_few else "") + "; lower --min-tracks?")
        config = self.tagger_config()
        try:
            outcome = run_learn(config, labels, opts)
        except TaggerError as exc:
            raise ui.UserError(f"tagger: {exc}") from None
        from tagger.cli.learning import print_learn

        print_learn(outcome, opts, config)
        if outcome.bundle is not None:
            ui.print_("tagger: `beet tagger` classifies with it from now on (the genres tagger "
                      "set before are re-decided; the user's are kept)")

    def say(self, text: str) -> None:
        print(f"tagger: {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the engine


@dataclass
class Target:
    """What one decision is for: an album (its tracks pooled) or a single item."""

    obj: Album | Item
    items: list[Item]


class Engine:
    """tagger's model, calibration and decode workers, loaded once per beets command (or
    import session) and closed at its end."""

    def __init__(self, config: Config, classifier, decoders):
        self.config = config  # tags.min_confidence resolved to a number
        self.classifier = classifier
        self.decoders = decoders

    @classmethod
    def start(cls, config: Config, files: int = 0) -> Engine:
        from tagger.cli.progress import use_state_caches

        use_state_caches(config.state_path)  # numba's cache, before librosa loads
        from tagger.model.classify import Classifier
        from tagger.service.lifetime import use_private_temp
        from tagger.service.models import resolve_model
        from tagger.service.policy import use_calibration
        from tagger.service.pool import DecodePool, start_fork_server, worker_count

        use_private_temp(config.state_path)  # before the fork server picks its socket dir
        with existing_catalogue(config) as catalogue:
            config = resolve_model(config, catalogue=catalogue).config
            start_fork_server()  # warms the decode stack while the model loads
            classifier = Classifier(config)
            config = use_calibration(config, catalogue, classifier)
        workers = worker_count(config)
        return cls(config, classifier, DecodePool(config, min(workers, files or workers)))

    @property
    def genres(self) -> tuple[str, ...]:
        return self.classifier.head.genres

    @property
    def calibrator(self):
        return self.classifier.calibrator

    @property
    def model_label(self) -> str:
        info = self.classifier.info
        return f"{info.name}@{info.sha256[:12]}"

    def classify_targets(self, targets: Sequence[Target]
                         ) -> Iterator[tuple[Target, list[TrackResult]]]:
        """Each target with its tracks' results, as soon as they are in (the decode workers
        keep going across targets)."""
        from tagger.service.classify import classify_files

        paths = [os.fsdecode(item.path) for target in targets for item in target.items]
        results = classify_files(self.config, paths, classifier=self.classifier,
                                 decoders=self.decoders)
        for target in targets:
            yield target, [next(results) for _ in target.items]

    def close(self) -> None:
        self.decoders.close()


@contextlib.contextmanager
def existing_catalogue(config: Config) -> Iterator:
    """The plugin's tagger catalogue (adoptions, calibrations) when ``--learn`` made one;
    None otherwise: nothing is created to classify."""
    from tagger.library.catalogue import current, open_catalogue

    if current(config.database_url) is None:
        yield None
        return
    with open_catalogue(config.database_url) as catalogue:
        yield catalogue


def run_learn(config: Config, labels, opts):
    """``tagger learn`` on labels from beets, its calibrations and adoption recorded in the
    plugin's catalogue; the embedding shown as ``tagger learn`` shows it."""
    from tagger.cli.progress import ScanDisplay, use_state_caches

    use_state_caches(config.state_path)
    from tagger.learn.from_library import learn
    from tagger.library.catalogue import open_catalogue

    bars: list[ScanDisplay] = []
    done = [0]

    def on_labels(found) -> None:
        bars.append(ScanDisplay(label="embedding")(len(found.dataset.tracks)))

    def progress(count: int, _total: int) -> None:
        bars[-1].advance(count - done[0])
        done[0] = count

    try:
        with open_catalogue(config.database_url) as catalogue:
            return learn(catalogue, config, labels=labels, min_tracks=opts.min_tracks,
                         folds=opts.folds, group_by="artist", adopt=opts.adopt, name="beets",
                         threads=config.scan.workers or 2, progress=progress,
                         on_labels=on_labels)
    finally:
        for bar in bars:
            bar.close()


# ------------------------------------------------------------------ decisions


def album_vote(results: Sequence[TrackResult], genres: Sequence[str], calibrator=None
               ) -> Vote | None:
    """One decision for an album, by tagger's own album rule
    (:func:`tagger.model.vote.album_vote`): the segments of all its readable tracks pooled
    and voted over as one track, with the confidence of its typical track (the median of the
    tracks' own, calibrated). None when no track could be read."""
    import numpy as np

    from tagger.model.vote import album_vote as vote_album

    tracks = [np.array([[segment.genre_scores[g] for g in genres]
                        for segment in result.segments])
              for result in results
              if result.error is None and result.vote is not None and result.segments]
    if not tracks:
        return None
    return vote_album(genres, tracks, calibrator)


def snapshot(obj: Album | Item) -> dict:
    """The values the plugin may change on ``obj`` (to store and write only what changed)."""
    return {key: own(obj, key) for key in (genre_field(obj), *FIELDS, FILE_CONFIDENCE)}


def own(obj: Album | Item, key: str):
    """``obj``'s own value: beets lends a track its album's fields where it has none, but
    what tagger wrote on the album is not what it wrote on the track."""
    return obj.get(key, with_album=False) if isinstance(obj, Item) else obj.get(key)


def genre_field(obj: Album | Item) -> str:
    """beets' genre field: the list ``genres`` (beets 2.7 and later), else ``genre``."""
    return "genres" if "genres" in type(obj).all_keys() else "genre"


def current_genres(obj: Album | Item) -> list[str]:
    value = own(obj, genre_field(obj))
    if isinstance(value, str):
        return [value] if value.strip() else []
    return [g for g in (value or []) if g.strip()]


def user_genres(obj: Album | Item) -> list[str]:
    """The genres in the field unless they are the ones tagger wrote there."""
    from tagger.library.journal import same_genres

    genres = current_genres(obj)
    written = own(obj, "tagger_written")
    if written and same_genres(genres, written.split(WRITTEN_SEPARATOR)):
        return []
    return genres


def apply_vote(obj: Album | Item, outcome: Vote, policy: TagsConfig, model: str, *,
               pretend: bool, file_confidence: bool = False) -> TagDecision:
    """Set the vote's attributes on ``obj`` and the genre the policy allows (in memory; the
    caller stores and writes), with the confidence for the file when ``file_confidence``.
    With ``pretend`` ``obj`` is left as it was."""
    from tagger.config import Config
    from tagger.library.journal import same_genres
    from tagger.service.policy import TagDecision, decide_tags, display_genre

    # beets' own whitelist and genre map stand in for [genres] and the tree's options
    decision = decide_tags(outcome, user_genres(obj), Config(tags=policy))
    already = bool(decision.genres) and same_genres(current_genres(obj), decision.genres)
    if already:
        decision = TagDecision(())  # the field says it already
    if pretend:
        return decision
    obj["tagger_genre"] = display_genre(outcome.genre, policy)
    obj["tagger_confidence"] = round(float(outcome.confidence), 3)
    obj["tagger_tie"] = bool(outcome.tie)
    obj["tagger_model"] = model
    if decision.genres:
        field = genre_field(obj)
        obj[field] = (list(decision.genres) if field == "genres"
                      else ", ".join(decision.genres))
        obj["tagger_written"] = WRITTEN_SEPARATOR.join(decision.genres)
    if user_genres(obj):  # the field holds the user's genre: nothing of tagger's goes with it
        if own(obj, "tagger_written") is not None:
            del obj["tagger_written"]
        if file_confidence and own(obj, FILE_CONFIDENCE) is not None:
            obj[FILE_CONFIDENCE] = None
    elif file_confidence and isinstance(obj, Item) and (decision.genres or already):
        obj[FILE_CONFIDENCE] = obj["tagger_confidence"]
    return decision


def describe(outcome: Vote, decision: TagDecision, policy: TagsConfig, pretend: bool) -> str:
    """What was decided, for people: "set Jazz (0.71)", "Jazz 0.71, already set", ..."""
    from tagger.service.policy import display_genre

    shown = f"{display_genre(outcome.genre, policy)} {outcome.confidence:.2f}"
    if outcome.tie:
        shown += " (tie: " + ", ".join(display_genre(g, policy) for g in outcome.tied) + ")"
    if decision.genres:
        return f"{'would set' if pretend else 'set'} {', '.join(decision.genres)} ({shown})"
    return f"{shown}, " + (f"not set: {decision.reason}" if decision.reason else "already set")


def dropped_genres(whitelist: Sequence[str]) -> list[str]:
    """The genres of tagger's default map to drop so that only the whitelisted ones are
    voted over (a trained head votes over its own genres: the whitelist does not apply)."""
    if not whitelist:
        return []
    from tagger.model.genres import DEFAULT_GENRES

    wanted = {w.strip().casefold() for w in whitelist}
    if not wanted & {g.casefold() for g in DEFAULT_GENRES}:
        raise ui.UserError("tagger: the whitelist names none of tagger's genres ("
                           + ", ".join(DEFAULT_GENRES) + ")")
    return [g for g in DEFAULT_GENRES if g.casefold() not in wanted]


def label_row(item: Item):
    """A training label from a beets item: its first genre, when the user set it (not
    tagger), with its album artist to keep each artist on one side of the folds."""
    from tagger.library.catalogue.records import LabelRow
    from tagger.results import LabelSource

    genres = user_genres(item)
    if not genres:
        return None
    return LabelRow(os.fsdecode(item.path), None, genres[0], tuple(genres),
                    item.albumartist or item.artist or None, item.album or None,
                    LabelSource.TAG)


def confidence_field() -> mediafile.MediaField:
    """TAGGER_GENRE_CONFIDENCE in every format tagger writes, as tagger writes it ("0.873")."""
    return mediafile.MediaField(
        mediafile.MP3DescStorageStyle(CONFIDENCE_TAG, float_places=3),
        mediafile.MP4StorageStyle(f"----:com.apple.iTunes:{CONFIDENCE_TAG}", float_places=3),
        mediafile.StorageStyle(CONFIDENCE_TAG, float_places=3),
        mediafile.ASFStorageStyle(CONFIDENCE_TAG, float_places=3),
        out_type=float,
    )
