"""Files <-> MRML nodes through storage nodes (works in Slicer and with the headless wheel).

``slicer.util.loadVolume/saveNode/loadScene`` need ``slicer.app``; storage nodes do not.
Every reader leaves the scene as it was when it fails, and raises :class:`InputError` with one
sentence for the user.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import InputError

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def check_input_file(path, what: str) -> Path:
    """The path, if it names a readable file; else InputError naming the problem."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"The {what} file {path} does not exist.")
    if not path.is_file():
        raise InputError(f"The {what} path {path} is not a file.")
    if not os.access(path, os.R_OK):
        raise InputError(f"The {what} file {path} is not readable (check its permissions).")
    return path


def load_volume(scene, path, name: str | None = None, labelmap: bool = False, what: str = "image"):
    """Read an image file into a new scalar (or label map) volume node with display nodes."""
    path = check_input_file(path, what)
    import slicer

    node_class = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(node_class, name or _stem(path))
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetSingleFile(True)
    ok = storage.ReadData(node)
    image = node.GetImageData()
    if not ok or image is None or image.GetNumberOfPoints() == 0:
        scene.RemoveNode(node)
        raise InputError(
            f"Could not read the {what} file {path} as an image "
            f"(supported: {', '.join(VOLUME_SUFFIXES)})."
        )
    scene.AddNode(storage)
    node.SetAndObserveStorageNodeID(storage.GetID())
    node.CreateDefaultDisplayNodes()
    return node


def save_volume(node, path) -> Path:
    """Write a volume node to an image file (format from the suffix; NRRD compressed), keeping its placement."""
    import slicer

    path = Path(path)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(True)
    if not storage.WriteData(node) or not path.is_file():
        raise RuntimeError(f"MRML could not write the image {path}.")
    return path


def save_markups_json(scene, node, path) -> Path:
    """Write a markups node as a Slicer ``.mrk.json`` file (through a temporary storage node)."""
    import slicer

    path = Path(path)
    storage = slicer.vtkMRMLMarkupsJsonStorageNode()
    scene.AddNode(storage)
    try:
        storage.SetFileName(str(path))
        if not storage.WriteData(node) or not path.is_file():
            raise RuntimeError(f"MRML could not write the landmarks to {path}.")
    finally:
        scene.RemoveNode(storage)
    return path


def save_scene_mrb(scene, path) -> Path:
    """Write the whole scene as a Slicer bundle (.mrb), atomically: a failed write leaves no file."""
    path = Path(path)
    if path.suffix.lower() != ".mrb":
        raise InputError(f"A scene bundle must end in .mrb, got {path.name}.")
    # Written under its final name (MRML names the bundle's inner folder after it) in a staging folder.
    with tempfile.TemporaryDirectory(prefix=".bonerecon-partial-", dir=path.parent) as staging:
        staged = Path(staging) / path.name
        if not scene.WriteToMRB(str(staged)) or not staged.is_file():
            raise RuntimeError(f"MRML could not write the scene bundle {path}.")
        os.replace(staged, path)
    return path


def load_scene_mrb(scene, path) -> None:
    """Add the content of a .mrb bundle to ``scene``."""
    path = check_input_file(path, "scene")
    if not scene.ReadFromMRB(str(path), False):
        raise InputError(f"Could not read the scene bundle {path}.")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem
