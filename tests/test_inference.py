"""How the model runs: bf16 or fp32, CPU or CUDA, single-threaded streams; the daemon's priority."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers.audio import DATA_DIR, real_clip

from tagger.config import Config, config_from_dict
from tagger.errors import ConfigError
from tagger.model.classify import (
    SHIPPED_MODELS,
    Classifier,
    configure_threads,
    cpu_has_native_bf16,
    resolve_device,
    resolve_precision,
)
from tagger.model.embeddings import Backbones, audio_key
from tagger.model.musicnn import load_musicnn

PARITY = np.load(DATA_DIR / "parity.npz")


def _config(**model) -> Config:
    config = Config()
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **model))


# --- bf16 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name,prefix", [("MSD_musicnn", "msd"), ("MTT_musicnn", "mtt")])
def test_bf16_fast_path_stays_close_to_tensorflow(name, prefix):
    """The same restructured pass in bf16: every score within 0.02 of the original graph's,
    and each patch's top tags the same."""
    network = load_musicnn(name).network
    network.inference_dtype = torch.bfloat16
    with torch.inference_mode():
        scores = torch.sigmoid(network(torch.from_numpy(PARITY["patches"]))).numpy()
    assert network.prepare_inference().dtype == torch.bfloat16
    expected = PARITY[f"{prefix}_scores"]
    assert scores.dtype == np.float32 and scores.shape == expected.shape
    assert np.abs(scores - expected).max() < 0.02
    assert np.abs(scores - expected).mean() < 2e-3
    assert (scores.argmax(axis=1) == expected.argmax(axis=1)).all()
    network.inference_dtype = torch.float32  # and back: the derived weights are rebuilt
    with torch.inference_mode():
        again = torch.sigmoid(network(torch.from_numpy(PARITY["patches"]))).numpy()
    assert np.abs(again - expected).max() < 1e-4


def test_bf16_maxima_by_bit_pattern_are_amax_bit_for_bit():
    """The temporal banks take bf16 maxima over the bands on int16 bit patterns: equal to
    torch's amax bit for bit, also where every value is negative, at +0 and -0, at inf."""
    from tagger.model.fastconv import bf16_bit_extremes, bf16_maxima

    rng = torch.Generator().manual_seed(3)
    values = torch.randn(6, 96, 8, 51, generator=rng)
    values[0] -= 10.0  # every value negative
    values[1] = torch.where(values[1] < 0, values[1], -0.0)  # negatives and -0 only
    values[2].zero_()  # +0 only
    values[3, :, :4] = -0.0  # -0 only
    values[3, :, 4:] = torch.where(values[3, :, 4:] > 0, -values[3, :, 4:], 0.0)  # <= +0
    values[4, 7] = float("inf")
    values[5, 9] = float("-inf")
    values[5, 10, :2] = 1e-40  # subnormal, as bf16 keeps it
    values = values.to(torch.bfloat16)
    high = torch.empty(6, 8, 51, dtype=torch.int16)
    low = torch.empty_like(high)
    bf16_bit_extremes(values, 1, high, low)
    bf16_maxima(high, low)
    expected = torch.amax(values, dim=1)
    assert torch.equal(high, expected.view(torch.int16))  # the bits, so -0 is not +0
    assert torch.equal(high.view(torch.bfloat16), expected)


def test_bf16_embeddings_are_float32_and_close():
    network = load_musicnn("MTT_musicnn").network
    x = torch.from_numpy(PARITY["patches"])
    with torch.inference_mode():
        pooled32, pen32 = network.embed(x)
        network.inference_dtype = torch.bfloat16
        pooled16, pen16 = network.embed(x)
    assert pooled16.dtype == pen16.dtype == torch.float32
    assert torch.allclose(pen16, pen32, atol=0.15, rtol=0.05)
    assert torch.nn.functional.cosine_similarity(pooled16, pooled32).min() > 0.999


def test_precision_setting_is_resolved_once_for_the_cpu():
    native = cpu_has_native_bf16()
    assert resolve_precision("auto", "cpu") == (torch.bfloat16 if native else torch.float32)
    assert resolve_precision("fp32", "cpu") == torch.float32
    assert resolve_precision("bf16", "cpu") == torch.bfloat16
    assert resolve_precision("auto", "cuda") == torch.float32
    with pytest.raises(ConfigError, match="model.precision"):
        resolve_precision("fp16", "cpu")


@pytest.mark.slow
def test_classifier_runs_in_the_precision_asked_for():
    path = str(real_clip("Kevin_MacLeod_-_Vibe_Ace.ogg"))
    results = {}
    for precision in ("fp32", "bf16"):
        classifier = Classifier(_config(precision=precision))
        assert classifier.precision == precision
        assert all(m.network.inference_dtype == classifier.dtype for m in classifier.models)
        [results[precision]] = classifier.classify([path])
    auto = Classifier(Config())
    assert auto.precision == ("bf16" if cpu_has_native_bf16() else "fp32")
    fp32, bf16 = results["fp32"], results["bf16"]
    assert fp32.vote.genre == bf16.vote.genre == "jazz"
    assert bf16.vote.confidence == pytest.approx(fp32.vote.confidence, abs=0.02)


# --- device -------------------------------------------------------------------------------


def test_device_auto_is_the_cpu_without_a_gpu():
    if torch.cuda.is_available():  # pragma: no cover - no GPU where this suite runs
        assert resolve_device("auto") == "cuda"
        return
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="model.device"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="model.device"):
        resolve_device("tpu")
    classifier_config = _config(device="auto")
    backbones = Backbones([load_musicnn(n) for n in SHIPPED_MODELS], 80, streams=2,
                          device=resolve_device(classifier_config.model.device))
    assert backbones.device.type == "cpu" and backbones.streams == 2
    assert all(p.device.type == "cpu" for m in backbones.models for p in m.network.parameters())


def test_new_model_keys_are_validated():
    config = config_from_dict({"model": {"precision": "bf16", "device": "cpu"},
                               "service": {"priority": "normal"}})
    assert (config.model.precision, config.model.device) == ("bf16", "cpu")
    assert config.service.priority == "normal"
    assert Config().model.precision == "auto" and Config().service.priority == "low"
    for bad in ({"model": {"precision": "half"}}, {"model": {"device": "gpu"}},
                {"service": {"priority": "idle"}}):
        with pytest.raises(ConfigError):
            config_from_dict(bad)


# --- threads ------------------------------------------------------------------------------


def test_the_model_process_keeps_numpy_blas_on_one_thread():
    """Decode threads beside the model streams must not wake BLAS teams that spin-wait on the
    model's cores (the log-mel product is numpy's): configure_threads sets one thread."""
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(2, user_api="blas"):
        configure_threads(0)
        blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
        assert blas and set(blas) == {1}


def test_streams_split_the_batch_and_give_the_same_scores():
    """Two single-threaded streams over chunks of the batch: the same numbers as one pass."""
    assert configure_threads(0) == (os.cpu_count() or 1)
    assert torch.get_num_threads() == 1  # no OpenMP team: the streams are the parallelism
    models = [load_musicnn(n) for n in SHIPPED_MODELS]
    rng = np.random.default_rng(7)
    patches = np.concatenate([PARITY["patches"]] * 4)  # 32 real patches
    patches = patches + rng.normal(0, 0.01, patches.shape).astype(np.float32)
    one = Backbones(models, 80, streams=1).run(patches)
    two = Backbones(models, 80, streams=2)
    assert two.chunk < len(patches)  # several chunks, both threads busy
    both = two.run(patches)
    for got, want in ((both.tag_scores, one.tag_scores), (both.penultimate, one.penultimate),
                      (both.pooled, one.pooled)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


CACHE_PROBE = """
import os, sys
from tagger.model.classify import SHIPPED_MODELS
from tagger.model.embeddings import Backbones
from tagger.model.musicnn import load_musicnn
Backbones([load_musicnn(n) for n in SHIPPED_MODELS])
print(os.environ.get("LRU_CACHE_CAPACITY"))
"""


@pytest.mark.parametrize("user_value,expected", [(None, "32"), ("500", "500")])
def test_the_primitive_cache_is_bounded_unless_the_user_set_it(user_value, expected):
    """ideep keeps a oneDNN primitive per operand shape and thread (1024 by default), which
    grew a long scan's resident memory by ~60 MB; the model caps it before its first product,
    and a value the user exported wins."""
    env = {k: v for k, v in os.environ.items() if k != "LRU_CACHE_CAPACITY"}
    if user_value is not None:
        env["LRU_CACHE_CAPACITY"] = user_value
    run = subprocess.run([sys.executable, "-c", CACHE_PROBE], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [expected]


# --- priority -----------------------------------------------------------------------------

PRIORITY_PROBE = """
import os, sys, tempfile, threading
from tagger.config import config_from_dict
from tagger.model.classify import Classifier
from tagger.service.engine import make_engine
from tagger.service.workers import io_priority_class
from tagger.service.watch import Watcher

def state():
    io = io_priority_class()
    return os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0), -1 if io is None else io

level, root = sys.argv[1], tempfile.mkdtemp()
config = config_from_dict({"state_dir": root, "service": {"priority": level}})
classifier = Classifier(config)
make_engine(config, None, classifier=classifier).close()  # scan: as started
print(*state())
watcher = Watcher([root], config, classifier=classifier)
watcher.start()  # what Watcher.run does before its loop
print(*state())
seen = []
worker = threading.Thread(target=lambda: seen.append(state()))  # a thread started later
worker.start(); worker.join()
print(*seen[0])
watcher.close()
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux priorities")
@pytest.mark.parametrize("level", ["low", "normal"])
def test_the_daemon_runs_at_low_priority(level):
    # in a child: the test process keeps its own priority
    out = subprocess.run([sys.executable, "-c", PRIORITY_PROBE, level], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    scan, watch, later = ([int(v) for v in line.split()]
                          for line in out.stdout.splitlines()[-3:])
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    assert scan[0] == nice and scan[1] == os.sched_getscheduler(0)
    if level == "normal":
        assert watch == scan == later
        return
    assert watch[0] >= 10 and watch[1] == os.SCHED_BATCH and watch[2] == 3  # idle I/O class
    assert later == watch  # threads started afterwards inherit all three


def test_a_file_of_unknown_layout_is_keyed_by_the_hash_of_its_bytes(tmp_path):
    """The cache key falls back to the whole file's sha256 where no audio payload can be
    found (and says why, as a ReadError, when the file cannot be read at all)."""
    import hashlib

    from tagger.errors import ReadError

    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"not a container we know" * 1000)
    assert audio_key(str(odd)) == "file:" + hashlib.sha256(odd.read_bytes()).hexdigest()
    with pytest.raises(ReadError):
        audio_key(str(tmp_path / "missing.mp3"))
