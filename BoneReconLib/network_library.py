"""Bundled network weights: a versioned manifest with sha256, training data and metrics per network.

``Resources/Networks/manifest.json`` lists each network by name (e.g. "biplanar") with its file,
version, sha256, size and how it was made (data, training settings, measured metrics), after the
models manifest of SlicerMONAIAuto3DSeg. Loading checks the hash, so a damaged or swapped file is
refused rather than silently used; ``package_weights`` turns a training folder's ``best.pt`` into a
compact bundled file (weights and configuration only) and records it. Core module, no MRML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional

import torch

from .errors import InputError
from .shape_model import file_sha256

BUNDLED_DIR = Path(__file__).resolve().parent / "Resources" / "Networks"
MANIFEST = "manifest.json"
FORMAT = "bonerecon-networks/1"


def read_network_manifest(folder=None) -> dict:
    folder = Path(folder) if folder is not None else BUNDLED_DIR
    path = folder / MANIFEST
    if not path.is_file():
        return dict(format=FORMAT, networks={})
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest["networks"], dict):
            raise TypeError("'networks' is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"Could not read the network manifest {path}: {exc}.") from exc
    return manifest


def bundled_weights(name: str, folder=None) -> Path:
    """The checked path of network ``name``'s weights (default folder: the bundled networks)."""
    folder = Path(folder) if folder is not None else BUNDLED_DIR
    entry = read_network_manifest(folder)["networks"].get(name)
    if entry is None:
        raise InputError(f"No '{name}' network is bundled in {folder}; train one ('bonerecon train ...') and "
                         "give its weights.")
    path = folder / entry["file"]
    if not path.is_file():
        raise InputError(f"The '{name}' network's weights {path} are missing.")
    found = file_sha256(path)
    if found != entry["sha256"]:
        raise InputError(f"The '{name}' network's weights {path} do not match the manifest (sha256 {found[:12]}..., "
                         f"expected {entry['sha256'][:12]}...); the file is damaged or was replaced.")
    return path


def package_weights(checkpoint, name: str, version: str, summary: Mapping, folder=None,
                    licence: Optional[str] = None) -> dict:
    """Write ``checkpoint``'s weights and configuration as ``<name>-<version>.pt`` into ``folder``
    and record it in the manifest (replacing an older entry of that name and deleting its file);
    returns the entry. ``summary`` holds what the manifest should say about data, training, metrics."""
    folder = Path(folder) if folder is not None else BUNDLED_DIR
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    config = state.get("config") or state.get("history", {}).get("settings", {}).get("config")
    if config is None or "model" not in state:
        raise InputError(f"{checkpoint} holds no network weights with their configuration.")
    folder.mkdir(parents=True, exist_ok=True)
    manifest = read_network_manifest(folder)
    file_name = f"{name}-{version}.pt"
    path = folder / file_name
    partial = path.with_name(path.name + ".partial")
    torch.save(dict(model={k: v.float().contiguous() for k, v in state["model"].items()}, config=config,
                    step=state.get("step")), partial)
    partial.replace(path)
    entry = dict(file=file_name, version=version, sha256=file_sha256(path), bytes=path.stat().st_size,
                 config=config, **dict(summary))
    if licence:
        entry["licence"] = licence
    old = manifest["networks"].get(name)
    manifest["networks"][name] = entry
    written = folder / (MANIFEST + ".partial")
    written.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    written.replace(folder / MANIFEST)
    if old and old.get("file") != file_name and (folder / old["file"]).is_file():
        (folder / old["file"]).unlink()
    return entry
