"""Reading spec files for the CLI: YAML or JSON, one spec or a list, HF config paths resolved.

Only the CLI reads files named in a spec (``model.hf_config: PATH``, relative to the spec
file); the REST API receives the config.json object itself and never opens server paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from search_spaces.hf_import import load_hf_config_file


class SpecFileError(ValueError):
    """A spec file that cannot be read or parsed."""


def _resolve_hf_path(doc: Any, base: Path) -> Any:
    if not isinstance(doc, dict):
        return doc
    model = doc.get("model")
    if isinstance(model, dict) and isinstance(model.get("hf_config"), str):
        path = Path(model["hf_config"])
        if not path.is_absolute():
            path = base / path
        try:
            cfg = load_hf_config_file(path)
        except (OSError, ValueError) as exc:
            raise SpecFileError(f"model.hf_config: {exc}") from None
        doc = {**doc, "model": {**model, "hf_config": cfg}}
    return doc


def load_spec_documents(path: Path) -> list[Any]:
    """The spec documents in ``path`` (a list stays a list; one spec becomes a list of one)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecFileError(f"cannot read spec file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise SpecFileError(f"{path} is not valid YAML or JSON: {exc}") from None
    if data is None:
        raise SpecFileError(f"{path} is empty; put a job spec in it (see examples/)")
    docs = data if isinstance(data, list) else [data]
    return [_resolve_hf_path(d, path.parent) for d in docs]
