"""Folders of shape models with a manifest (the bundled default, or a user's `bonerecon ssm build` output).

Loading checks every file against the manifest's sha256, so a damaged or swapped file is refused
rather than silently used. Core module, no MRML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

from .errors import InputError
from .shape_model import ShapeModel, load_shape_model

BUNDLED_DIR = Path(__file__).resolve().parent / "Resources" / "ShapeModels"
LEG_MODELS = BUNDLED_DIR / "Leg"  # femur, tibia, fibula (right bones; a left one is their mirror image)
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "bonerecon-ssm-manifest/1"


def read_manifest(folder=None) -> dict:
    folder = Path(folder) if folder is not None else BUNDLED_DIR
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(f"{folder} holds no shape models ({MANIFEST} is missing).")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["models"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"Could not read the shape model manifest {path}: {exc}.") from exc
    return manifest


def load_models(folder=None, levels: Optional[list] = None) -> Dict[str, ShapeModel]:
    """{level: model} of a model folder (default: the bundled models), hashes checked."""
    folder = Path(folder) if folder is not None else BUNDLED_DIR
    entries = read_manifest(folder)["models"]
    wanted = list(entries) if levels is None else list(levels)
    missing = [level for level in wanted if level not in entries]
    if missing:
        raise InputError(f"No shape model for {', '.join(missing)} in {folder} (it has {', '.join(entries)}).")
    return {level: load_shape_model(folder / entries[level]["file"], sha256=entries[level]["sha256"])
            for level in wanted}


def load_leg_models(folder=None, bones=("femur", "tibia")) -> Dict[str, ShapeModel]:
    """{bone: model} of a leg model folder (default: the bundled one) for ``bones``, plus its
    "fibula" model when it has one and the tibia is wanted (fitted beside the tibia, :mod:`.leg_fibula`)."""
    folder = Path(folder) if folder is not None else LEG_MODELS
    levels = list(bones)
    if "tibia" in levels and "fibula" in read_manifest(folder)["models"]:
        levels.append("fibula")
    return load_models(folder, levels=levels)
