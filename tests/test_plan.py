"""The tag decision as one value (:class:`tagger.service.plan.TagPlan`): the real run and
``--dry-run`` execute the same plan, so a dry run says what the real run would do, on real
files tagger has already tagged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.audio import real_clip
from helpers.configs import write_config
from helpers.library import at_rest

from tagger.cli import main
from tagger.config import load_config
from tagger.library import tags
from tagger.library.catalogue import open_catalogue
from tagger.service.scan import scan

HUNGARIAN = "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg"
NEXUIZ = "nexuiz_brainsukker_excerpt.ogg"


@pytest.fixture(scope="module", params=["track", "album"])
def tagged(request, tmp_path_factory):
    """Two real clips tagger has tagged (Classical, Electronic) in one scan with
    ``tags.scope`` each way: (library, config file)."""
    base = tmp_path_factory.mktemp(f"plan-{request.param}")
    root = base / "Music"
    root.mkdir()
    for clip in (HUNGARIAN, NEXUIZ):
        shutil.copy(real_clip(clip), root / clip)
        (root / clip).chmod(0o644)
    at_rest(root)
    config_file = write_config(base / "tagger.toml", base / "state",
                               tags={"scope": request.param})
    config = load_config(str(config_file))
    with open_catalogue(config) as catalogue:
        summary = scan([str(root)], config, catalogue, workers=1)
    assert summary.tagged == 2
    at_rest(root)
    return root, config_file


def test_a_dry_run_says_a_file_tagger_tagged_stays_as_it_is(tagged):
    """Bug: a forced dry run over files tagger had tagged reported "(no genre) ->
    Classical, would be tagged": it took tagger's own genre for no genre at all."""
    root, config_file = tagged
    config = load_config(str(config_file))
    held = {p.name: tags.read_genres(p) for p in root.iterdir()}
    assert sorted(held.values()) == [["Classical"], ["Electronic"]]
    proposals: list[dict] = []
    with open_catalogue(config) as catalogue:
        summary = scan([str(root)], config, catalogue, force=True, dry_run=True,
                       on_proposal=proposals.append, workers=1)
    assert summary.tagged == 0 and summary.classified == 2
    assert {Path(p["path"]).name: (p["existing"], p["proposed"]) for p in proposals} == {
        name: (genres, []) for name, genres in held.items()}
    # the real run does what the dry run said: nothing
    with open_catalogue(config) as catalogue:
        again = scan([str(root)], config, catalogue, force=True, workers=1)
    assert again.tagged == 0
    assert {p.name: tags.read_genres(p) for p in root.iterdir()} == held


def test_the_dry_run_line_shows_the_files_genre(tagged, capsys):
    root, config_file = tagged
    path = root / HUNGARIAN
    assert main(["--config", str(config_file), "scan", "--dry-run", "--force",
                 str(root)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if HUNGARIAN[:20] in line)
    assert "Classical -> unchanged" in line and "(no genre)" not in line, line
    assert "would be tagged" not in out or "0 would be tagged" in out.replace(",", ""), out
    assert tags.read_genres(path) == ["Classical"]
