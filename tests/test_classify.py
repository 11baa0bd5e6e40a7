"""The classifier end to end on real music: decode -> features -> both models -> vote."""

import json
import shutil

import numpy as np
import pytest
from helpers.audio import real_clip

from tagger.cli import main
from tagger.config import Config
from tagger.model.classify import Classifier

pytestmark = pytest.mark.slow  # runs the model on real audio

GENRE_OF = {
    "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg": "classical",
    "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg": "classical",
    "Kevin_MacLeod_-_Vibe_Ace.ogg": "jazz",
    "sorohanro_-_solo-trumpet-06.ogg": "jazz",
    "nexuiz_brainsukker_excerpt.ogg": "electronic",
}


@pytest.fixture(scope="module")
def classifier():
    return Classifier(Config())


def test_real_music_gets_its_genre(classifier):
    paths = [str(real_clip(name)) for name in GENRE_OF]
    results = list(classifier.classify(paths))
    assert [r.path for r in results] == paths  # in order, one each
    for result, expected in zip(results, GENRE_OF.values()):
        assert result.error is None, result.error
        assert result.vote.genre == expected, (result.path, result.vote.candidates)
        assert 0.3 < result.vote.confidence <= 1.0


def test_result_structure_follows_the_vote(classifier):
    [result] = classifier.classify([str(real_clip("Kevin_MacLeod_-_Vibe_Ace.ogg"))])
    assert len(result.segments) == 10
    starts = [s.start_s for s in result.segments]
    assert starts == sorted(starts) and starts[0] == pytest.approx((61.0 - 30.0) / 2, abs=0.5)
    winners = [s.genre for s in result.segments]
    for candidate in result.vote.candidates:
        assert candidate.votes == winners.count(candidate.genre)
    assert sum(c.votes for c in result.vote.candidates) == 10
    # every raw output of both models is there to audit, keyed by model
    scores = result.segments[0].scores
    assert len(scores) == 100 and "msd:jazz" in scores and "mtt:classical" in scores
    # the confidence is the winner's mean genre score over all segments, recomputed here
    members = classifier.vocabulary.members[classifier.vocabulary.genres.index(result.vote.genre)]
    keys = [classifier.output_keys[i] for i in members]
    per_segment = [max(s.scores[k] for k in keys) for s in result.segments]
    assert result.vote.confidence == pytest.approx(np.mean(per_segment), abs=1e-5)
    assert result.descriptors and all(k not in keys for k in result.descriptors)


def test_short_track_uses_one_whole_segment(classifier):
    [result] = classifier.classify([str(real_clip("sorohanro_-_solo-trumpet-06.ogg"))])
    assert len(result.segments) == 1 and result.segments[0].start_s == pytest.approx(0, abs=1.5)


def test_every_format_classifies_alike(classifier, format_files):
    assert len(format_files) >= 9, sorted(format_files)
    results = {name: r for name, r in zip(format_files, classifier.classify(
        [str(p) for p in format_files.values()]))}
    for name, result in results.items():
        assert result.error is None, (name, result.error)
        assert len(result.segments) == 10
    genres = {r.vote.genre for r in results.values()}
    assert len(genres) == 1, {n: r.vote.genre for n, r in results.items()}
    # lossless formats decode to the same samples: the same numbers
    wav = results["wav"]
    for name in ("flac", "alac", "aiff"):
        assert results[name].vote.confidence == pytest.approx(wav.vote.confidence, abs=1e-4)


EXPECTED_ERRORS = {
    "truncated_mp3": "",
    "truncated_flac": "truncated or undecodable",
    "empty_flac": "empty",
    "text_as_mp3": "not an audio file",
    "short_2s": "too short",
    "silent_wav": "silent",
    "png_as_ogg": "",
    "random_as_ogg": "",
    "random_as_flac": "not an audio file",
    "video_only_m4a": "no audio",
}


def test_hostile_files_give_clean_errors_and_the_rest_goes_on(classifier, hostile_files):
    names = [n for n in EXPECTED_ERRORS if n in hostile_files] + ["mp3_as_flac"]
    paths = [str(hostile_files[n]) for n in names]
    results = dict(zip(names, classifier.classify(paths)))
    for name, fragment in EXPECTED_ERRORS.items():
        if name not in results:
            continue
        error = results[name].error
        assert error is not None, name
        assert "\n" not in error and str(hostile_files[name]) in error
        assert fragment in error, (name, error)
        assert results[name].vote is None
    assert results["mp3_as_flac"].error is None  # found by content, not by extension


def test_cli_json_output_and_exit_codes(capsys, hostile_files):
    good = str(real_clip("sorohanro_-_solo-trumpet-06.ogg"))
    assert main(["classify", "--json", good]) == 0
    [line] = capsys.readouterr().out.strip().splitlines()
    record = json.loads(line)
    assert set(record) >= {"path", "genre", "confidence", "tie", "candidates", "segments",
                           "descriptors", "model", "error"}
    assert record["path"] == good and record["genre"] == "jazz" and record["error"] is None
    assert record["model"]["name"] == "musicnn" and len(record["model"]["sha256"]) == 64
    assert set(record["candidates"][0]) == {"genre", "votes", "mean_score"}
    assert set(record["segments"][0]) == {"start_s", "genre", "scores"}

    bad = str(hostile_files["text_as_mp3"])
    assert main(["classify", "--json", good, bad]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[1])["error"] and json.loads(lines[1])["genre"] is None

    assert main(["classify", good]) == 0
    table = capsys.readouterr().out
    assert "jazz" in table and "GENRE" in table

    assert main(["classify"]) == 2
    assert main(["bogus-command"]) == 2
    assert main(["--config", "/nonexistent/tagger.toml", "classify", good]) == 2
    capsys.readouterr()


def test_tagger_classify_decodes_in_worker_processes(tmp_path):
    """``tagger classify`` decodes in worker processes, as a scan does: a decoder crash costs
    a file, not the run, and the decoders do not hold this process's interpreter lock. So
    its own process never loads librosa, numba, scipy or FFmpeg's libraries."""
    from helpers.apart import run_cli_apart

    clips = [str(real_clip(name)) for name in ("Kevin_MacLeod_-_Vibe_Ace.ogg",
                                               "sorohanro_-_solo-trumpet-06.ogg")]
    code, loaded, lines, stderr = run_cli_apart(["classify", "--json", *clips], tmp_path / "state")
    assert code == 0, stderr
    assert [json.loads(line)["genre"] for line in lines] == ["jazz", "jazz"]
    assert loaded == []


def test_a_decode_worker_killed_during_classify_costs_no_file(tmp_path):
    """The decode pool (the one the scan's engine runs on too) retries the files a dead
    worker held, each once, in a fresh pool, and hands them back in their order."""
    from helpers.crashing import kill_a_worker_soon

    from tagger.audio.features import PreparedTrack
    from tagger.service.pool import DecodePool, decode_in_workers

    paths = []
    for i in range(6):
        paths.append(str(tmp_path / f"t{i}.ogg"))
        shutil.copy(real_clip("Kevin_MacLeod_-_Vibe_Ace.ogg"), paths[-1])
    pool = DecodePool(Config(), workers=2)
    killer, killed = kill_a_worker_soon(pool.worker_pids)
    try:
        outcomes = list(decode_in_workers(pool, paths, ahead=4))
    finally:
        killer.join()
        pool.close()
    assert killed
    assert [path for path, _ in outcomes] == paths
    assert all(isinstance(track, PreparedTrack) for _, track in outcomes), outcomes


def test_a_file_that_crashes_its_decoder_twice_fails_alone(tmp_path):
    """A decoder that dies on one file: that file fails (its worker died twice), the files
    in flight beside it are decoded on their retry, and the order holds."""
    from helpers.crashing import prepare_or_crash

    from tagger.audio.features import PreparedTrack
    from tagger.results import FailureKind
    from tagger.service.pool import DecodePool

    names = ["a.ogg", "crash.ogg", "b.ogg", "c.ogg", "d.ogg"]
    paths = [str(tmp_path / name) for name in names]
    for path in paths:
        shutil.copy(real_clip("Kevin_MacLeod_-_Vibe_Ace.ogg"), path)
    pool = DecodePool(Config(), workers=2)
    try:
        run = pool.in_order(paths, prepare_or_crash, name=str,
                            died=lambda path, reason, kind: (reason, kind), window=4)
        outcomes = dict(run)
    finally:
        pool.close()
    assert list(outcomes) == paths
    assert outcomes[paths[1]] == ("the decoding worker process died twice on this file",
                                  FailureKind.WORKER_DIED)
    assert all(isinstance(outcomes[p], PreparedTrack) for p in paths if "crash" not in p)
