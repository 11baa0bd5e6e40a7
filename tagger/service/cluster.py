"""The scan on a Ray cluster: decode on the nodes, inference in an actor pool, one writer here.

``RayEngine`` is the second implementation of the engine seam
(:class:`~tagger.service.engine.ScanEngine`): the driver (this process) walks, diffs and plans
as the local engine does, and keeps the one :class:`~tagger.service.recorder.Recorder`, so every
tag write and catalogue row still comes from exactly one process. What moves to the cluster:

- **decode + features** run as Ray tasks (one CPU each) on any node. A task returns two
  objects: the file's small facts (size, content id, error) come to the driver; the log-mel
  patches stay in the object store and go straight to an inference actor.
- **inference** runs in a pool of actors, one per node by default, each with the model
  loaded once (on the node's GPU when it has one). Segments are batched across tracks.
- **backpressure**: at most ``cluster.in_flight`` files decode at once and at most two
  batches wait per actor, so the driver's memory stays flat on any library size.

Failure: Ray re-runs the decode tasks of a dead node elsewhere and restarts its actor on a
live node (retrying the batch it held). The nodes never write: tags are written here, over
the shared mount, after the old values are committed to the journal, as in a local scan, so
a dead node can leave no file half written and no file is written twice.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from tagger.config import Config
from tagger.errors import ConfigError, TaggerError
from tagger.library.discover import FoundFile
from tagger.results import ModelInfo
from tagger.service.policy import resolve_calibration
from tagger.service.recorder import EngineHooks, ProgressSink, Recorder, Summary
from tagger.service.workers import WorkItem, prepare_file

if TYPE_CHECKING:
    from tagger.audio.features import PreparedTrack
    from tagger.model.cache import TrackEmbeddings
    from tagger.results import TrackResult

log = logging.getLogger(__name__)

# Ray reports usage statistics unless told not to; tagger sends nothing anywhere.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

# Ray's switch for a Ray on one machine (its default on macOS and Windows), read when Ray is
# imported: the node's address is then the loopback one, and the GCS, the raylet (object
# manager included), the workers and the agents listen on 127.0.0.1 only. Without it Ray
# takes the address of the machine's network card, even when told 127.0.0.1, and its gRPC
# servers listen on every interface, guarded by nothing but the token.
_ONE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class ClusterError(TaggerError):
    """The Ray cluster could not be reached, or cannot run tagger (versions, resources)."""


# ---------------------------------------------------------------- paths


def map_path(path: str, path_map: Mapping[str, str]) -> str:
    """This machine's path as the nodes see it (longest matching prefix of ``path_map``)."""
    for local in sorted(path_map, key=len, reverse=True):
        prefix = local.rstrip("/")
        if path == prefix or path.startswith(prefix + "/"):
            return path_map[local].rstrip("/") + path[len(prefix):]
    return path


# ---------------------------------------------------------------- what runs on the nodes


@dataclass(frozen=True)
class Prepared:
    """A decode task's small answer: the file's facts, and how many segments it has."""

    item: WorkItem  # track is None: the patches travel separately
    segments: int


def prepare_on_node(found: FoundFile, config: Config,
                    path_map: Mapping[str, str]) -> tuple[Prepared, PreparedTrack | None]:
    """Ray task body: decode and cut one file where the node sees it."""
    item = prepare_file(replace(found, path=map_path(found.path, path_map)), config)
    track = replace(item.track, path=found.path) if item.track is not None else None
    facts = replace(item, path=found.path, track=None)
    return Prepared(facts, len(track.patches) if track is not None else 0), track


class InferenceActor:
    """Ray actor body: the classifier, loaded once per actor."""

    def __init__(self, config: Config):
        from tagger.model.classify import Classifier

        self.classifier = Classifier(config)

    def identity(self) -> dict:
        import tagger

        return {"version": tagger.__version__, "model": self.classifier.info}

    def use_calibrator(self, calibrator) -> None:
        self.classifier.calibrator = calibrator

    def classify(self, *tracks: PreparedTrack) -> list[tuple[TrackResult, TrackEmbeddings]]:
        """Each track's result, with the embeddings the driver's Recorder caches (8 KB)."""
        return self.classifier.classify_embedded(tracks)


# ---------------------------------------------------------------- the driver


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("cluster.engine = \"ray\" needs Ray: pip install 'tagger[ray]'") \
            from None
    return ray


class RayEngine:
    """Runs decode and inference on a Ray cluster and records results through one Recorder."""

    def __init__(self, config: Config, catalogue, *, dry_run: bool = False,
                 hooks: EngineHooks | None = None, address: str | None = None):
        self.config = config
        self.catalogue = catalogue
        self._recorder_options = dict(dry_run=dry_run, hooks=hooks)
        self._recorder: Recorder | None = None  # built by start(), with the calibration
        self.address = config.cluster.address if address is None else address
        if not self.address:  # before Ray is imported: it reads the switch then
            os.environ[_ONE_MACHINE_ENV] = "0"
        self.ray = _import_ray()
        self._connected_here = False
        self._actors: list = []
        self._prepare = None
        self._model_info: ModelInfo | None = None

    @property
    def recorder(self) -> Recorder:
        """The one writer, built when the cluster starts (the model it runs, and so its
        calibration and threshold, known then)."""
        self.start()
        return self._recorder

    # -- set-up ---------------------------------------------------------------------------

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        try:
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:  # a private single-machine Ray, gone when the scan ends
                self._check_loopback(ray.util.get_node_ip_address())
                ray.init(include_dashboard=False, dashboard_host="127.0.0.1",
                         _node_ip_address="127.0.0.1", log_to_driver=False,
                         _temp_dir=self._private_temp_dir())
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(f"cannot reach the Ray cluster at {self.address or 'local'}: "
                               f"{exc}") from None
        self._connected_here = True
        if not self.address:
            try:  # what Ray really did
                for node in ray.nodes():
                    self._check_loopback(node["NodeManagerAddress"])
            except ClusterError:
                ray.shutdown()
                self._connected_here = False
                raise

    @staticmethod
    def _check_loopback(node_address: str) -> None:
        """A private Ray listens where its node's address is: this machine only, or not at
        all."""
        try:
            loopback = ipaddress.ip_address(node_address).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ClusterError(
                f"a private Ray would listen on {node_address}, beyond this machine (Ray was "
                f"imported before tagger could set {_ONE_MACHINE_ENV}=0): start tagger in a "
                "process of its own, or start Ray yourself and give its address")

    def _private_temp_dir(self) -> str:
        """Ray's session files go under the state directory, its token stays in memory."""
        # A private Ray with token authentication would save a generated token in ~/.ray;
        # one given in the environment is used as it is and written nowhere.
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
        temp = self.config.state_path / "ray"
        # Ray's unix sockets live ~60 characters below it; AF_UNIX paths stop at 107
        if len(str(temp)) > 45:
            raise ClusterError(f"the state directory {self.config.state_path} is too long a "
                               "path for a private Ray's sockets: set state_dir shorter, or "
                               "start Ray yourself (ray start --head) and use address = auto")
        temp.mkdir(parents=True, exist_ok=True, mode=0o700)
        return str(temp)

    def start(self) -> None:
        """Connect, start the inference actors and check each runs the same tagger and model."""
        if self._actors:
            return
        self._connect()
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self._prepare = ray.remote(num_cpus=1, num_returns=2, max_retries=3)(prepare_on_node)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        count = self.config.cluster.actors or len(nodes)
        actor_class = ray.remote(InferenceActor)
        for index in range(count):
            node = nodes[index % len(nodes)]
            # a GPU for the actor where the node has one (model.device "auto" then picks it;
            # Ray hides the GPUs from an actor that asked for none)
            gpus = int(node.get("Resources", {}).get("GPU", 0) >= 1
                       and self.config.model.device != "cpu")
            self._actors.append(actor_class.options(
                num_cpus=0, num_gpus=gpus, max_restarts=-1, max_task_retries=-1,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=True),
            ).remote(self.config))
        version = _version()
        for actor_info in ray.get([a.identity.remote() for a in self._actors]):
            if actor_info["version"] != version:
                raise ClusterError(f"a node runs tagger {actor_info['version']}, this machine "
                                   f"{version}: install the same version everywhere")
            self._model_info = self._model_info or actor_info["model"]
            if actor_info["model"] != self._model_info:
                raise ClusterError("the nodes load different model weights: install the same "
                                   "tagger and models everywhere")
        # the calibrated confidence and the resolved threshold, as the local engine has them
        calibrator, config = resolve_calibration(self.config, self.catalogue,
                                                 self._model_info.sha256)
        self._recorder = Recorder(config, self.catalogue, calibrator=calibrator,
                                  **self._recorder_options)
        ray.get([a.use_calibrator.remote(calibrator) for a in self._actors])
        log.info("ray: %d nodes, %d inference actors, %g CPUs", len(nodes), len(self._actors),
                 ray.cluster_resources().get("CPU", 0))

    @property
    def model_info(self) -> ModelInfo:
        """The model the actors run (the cluster is started on first use)."""
        self.start()
        return self._model_info

    def close(self) -> None:
        for actor in self._actors:
            self.ray.kill(actor)
        self._actors = []
        if self._recorder is not None:
            self._recorder.close()
        if self._connected_here:
            self.ray.shutdown()
            self._connected_here = False

    # -- the loop -------------------------------------------------------------------------

    def process(self, files: Iterable[FoundFile], summary: Summary,
                progress: ProgressSink | None = None,
                should_stop: Callable[[], bool] = lambda: False) -> Summary:
        """Classify, tag and catalogue ``files``; results are recorded as they arrive.

        Once ``should_stop()`` is true, no new file is sent and what is in flight is
        dropped: those files stay pending in the catalogue for the next run.
        """
        self.start()
        ray, cluster = self.ray, self.config.cluster
        files = iter(files)
        batch_size = self.config.model.batch_segments
        # as the local engine: every CPU decoding, plus two batches' worth queued behind the
        # batch being classified, so decoding never waits for inference
        batch_tracks = -(-batch_size // self.config.model.segments)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        limit = cluster.in_flight or cpus + 2 * batch_tracks * len(self._actors)
        decoding: dict = {}  # facts ref -> patches ref
        batches: dict = {}  # results ref -> facts of its files
        load: dict = {id(a): 0 for a in self._actors}  # batches waiting per actor
        ready: list[tuple[WorkItem, object]] = []
        queued_segments = 0
        recorded: set[str] = set()
        actors = self._actors

        def advance(count: int = 1) -> None:
            if progress:
                progress.advance(count)

        def send_batch() -> None:
            nonlocal ready, queued_segments
            if not ready:
                return
            actor = min(actors, key=lambda a: load[id(a)])
            ref = actor.classify.remote(*[patches for _, patches in ready])
            batches[ref] = ([facts for facts, _ in ready], actor)
            load[id(actor)] += 1
            ready, queued_segments = [], 0

        def refill() -> None:
            while len(decoding) < limit and not should_stop():
                found = next(files, None)
                if found is None:
                    return
                facts_ref, patches_ref = self._prepare.remote(found, self.config,
                                                              cluster.path_map)
                decoding[facts_ref] = patches_ref

        refill()
        while decoding or batches or ready:
            if should_stop():
                summary.interrupted = True
                for ref in decoding:
                    ray.cancel(ref)
                return summary
            if ready and (queued_segments >= batch_size or not decoding):
                if sum(load.values()) < 2 * len(actors) or not batches:
                    send_batch()
            done, _ = ray.wait(list(decoding) + list(batches), num_returns=1, timeout=1.0)
            for ref in done:
                if ref in decoding:
                    patches_ref = decoding.pop(ref)
                    queued_segments += self._take_prepared(ref, patches_ref, ready, summary,
                                                           advance)
                else:
                    facts, actor = batches.pop(ref)
                    load[id(actor)] -= 1
                    self._record_batch(ref, facts, summary, recorded)
                    advance(len(facts))
            refill()
        return summary

    def _take_prepared(self, ref, patches_ref, ready: list, summary: Summary,
                       advance: Callable[[int], None]) -> int:
        """One decode task finished: queue it for inference, or record it (moved, failed)."""
        try:
            prepared: Prepared = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            raise ClusterError(f"a decode task failed on the cluster: {exc}") from None
        item = prepared.item
        if item.error is not None:
            self.recorder.record_error(item, summary)
            advance(1)
            return 0
        moved_from = self.recorder.moved_from(item)
        if moved_from:
            self.recorder.record_move(moved_from, item, summary)
            advance(1)
            return 0
        ready.append((item, patches_ref))
        return prepared.segments

    def _record_batch(self, ref, facts: list[WorkItem], summary: Summary,
                      recorded: set[str]) -> None:
        try:
            results = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            reason = f"inference failed on the cluster: {type(exc).__name__}"
            log.error("%s (%d files)", reason, len(facts))
            for item in facts:
                self.recorder.record_error(replace(item, error=reason), summary)
            return
        for item, (result, embeddings) in zip(facts, results):
            if item.path in recorded:  # cannot happen with Ray's retries; never write twice
                log.error("%s: a second result for this file was ignored", item.path)
                continue
            recorded.add(item.path)
            self.recorder.record(item, result, summary, embeddings)


def _version() -> str:
    import tagger

    return tagger.__version__
