# The start every salkit Triton Python-backend model shares; `export-trt --triton-repo` copies this
# file next to each model.py as _salkit_prelude.py (standard library only: it runs before numpy).
#
# EXTRA_SYS_PATH (config.pbtxt parameter, os.pathsep-separated) names directories put on sys.path
# before numpy is imported: the Python stub ignores PYTHONPATH.
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

_EXTRA_PATH = re.compile(r'key:\s*"EXTRA_SYS_PATH"\s*value:\s*\{\s*string_value:\s*"([^"]*)"')


def extend_sys_path(model_file: str) -> None:
    """Prepend the EXTRA_SYS_PATH entries of the config.pbtxt above ``model_file``'s version folder."""
    config = Path(model_file).resolve().parents[1] / "config.pbtxt"
    match = _EXTRA_PATH.search(config.read_text()) if config.exists() else None
    for entry in reversed(match.group(1).split(os.pathsep) if match else []):
        if entry and entry not in sys.path:
            sys.path.insert(0, entry)


def model_config(args: dict) -> tuple[dict, dict[str, str]]:
    """The model config Triton hands ``initialize`` and its ``parameters`` as plain strings."""
    config = json.loads(args["model_config"])
    return config, {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
