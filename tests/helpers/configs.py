"""tagger.toml files for tests."""

from __future__ import annotations

import json
from pathlib import Path


def write_config(path: Path, state: Path, **sections) -> Path:
    """A tagger.toml at ``path``: the state directory and catalogue under ``state``, and each
    ``section={key: value}`` given."""
    lines = [f'state_dir = "{state}"', f'database = "sqlite:///{state / "catalogue.sqlite"}"']
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
