"""DepthRecon self-tests: run by pytest headless (Testing/) and by DepthReconTest in Slicer.

Analytic phantoms: a label map with a sphere and a box, placed with an oblique IJK-to-RAS
matrix; the models must have the shapes' exact volumes and centres in RAS.
"""

from __future__ import annotations

import math

import numpy as np

from BoneReconLib.errors import InputError
from BoneReconLib.geometry import rotation_about
from BoneReconLib.surface_metrics import open_edge_count, volume_and_centroid

from .logic import DepthReconLogic

SPHERE_RADIUS = 12.0  # mm
SPHERE_CENTER_IJK = np.array([30.0, 32.0, 28.0])
BOX_IJK = ((8, 20), (10, 50), (40, 52))  # half-open voxel ranges along i, j, k
SPACING = np.array([0.8, 0.9, 1.0])


def _oblique_ijk_to_ras():
    """Spacing, a rotation of 30 degrees about an oblique axis, and an offset origin."""
    rotation = rotation_about([1.0, 2.0, 2.0], math.radians(30.0))
    matrix = np.eye(4)
    matrix[:3, :3] = rotation * SPACING
    matrix[:3, 3] = [-41.5, 17.25, 103.0]
    return matrix


def make_phantom_labelmap(scene, name="Phantom bones"):
    """A label map node: 1 = sphere, 2 = box; returns (node, {label: (volume mm3, RAS centre)})."""
    import slicer.util

    shape_kji = (64, 70, 60)
    k, j, i = np.indices(shape_kji)
    ijk = np.stack([i, j, k], axis=-1).astype(float)
    labels = np.zeros(shape_kji, dtype=np.int16)
    distance = np.linalg.norm((ijk - SPHERE_CENTER_IJK) * SPACING, axis=-1)
    labels[distance <= SPHERE_RADIUS] = 1
    (i0, i1), (j0, j1), (k0, k1) = BOX_IJK
    labels[k0:k1, j0:j1, i0:i1] = 2

    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
    m = _oblique_ijk_to_ras()
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(m))
    slicer.util.updateVolumeFromArray(node, labels)
    node.CreateDefaultDisplayNodes()
    to_ras = lambda p: m[:3, :3] @ p + m[:3, 3]  # noqa: E731
    box_size = np.array([i1 - i0, j1 - j0, k1 - k0]) * SPACING
    box_centre_ijk = np.array([(i0 + i1 - 1) / 2, (j0 + j1 - 1) / 2, (k0 + k1 - 1) / 2])
    truth = {
        1: (4.0 / 3.0 * math.pi * SPHERE_RADIUS**3, to_ras(SPHERE_CENTER_IJK)),
        2: (float(np.prod(box_size)), to_ras(box_centre_ijk)),
    }
    return node, truth


def test_phantom_models_have_exact_volumes_and_centres(context, tmp_dir):
    logic = DepthReconLogic(context.scene)
    labelmap, truth = make_phantom_labelmap(context.scene)
    segmentation, models = logic.createBoneModels(labelmap, {1: "Sphere", 2: "Box"}, smoothing=0.0)
    assert sorted(models) == ["Box", "Sphere"]
    for name, value in (("Sphere", 1), ("Box", 2)):
        poly = models[name].GetPolyData()
        assert open_edge_count(poly) == 0, f"{name} surface is not closed"
        volume, centre = volume_and_centroid(poly)
        true_volume, true_centre = truth[value]
        assert abs(volume / true_volume - 1.0) < 0.03, (name, volume, true_volume)
        assert np.linalg.norm(centre - true_centre) < 0.3, (name, centre, true_centre)


def test_default_names_come_from_labels(context, tmp_dir):
    logic = DepthReconLogic(context.scene)
    labelmap, _ = make_phantom_labelmap(context.scene)
    colors = labelmap.GetDisplayNode().GetColorNode()
    assert logic.labelNames(labelmap) == {1: colors.GetColorName(1), 2: colors.GetColorName(2)}
    context.scene.RemoveNode(labelmap.GetDisplayNode())  # no colour table: generic names
    assert logic.labelNames(labelmap) == {1: "Label 1", 2: "Label 2"}


def _assert_refused_leaving_scene(scene, call, message: str):
    """``call()`` raises an InputError saying ``message`` and adds no node to ``scene``."""
    before = scene.GetNumberOfNodes()
    try:
        call()
    except InputError as exc:
        assert message in str(exc), str(exc)
    else:
        raise AssertionError(f"expected a refusal saying '{message}'")
    assert scene.GetNumberOfNodes() == before


def test_empty_label_map_is_reported_and_changes_nothing(context, tmp_dir):
    import slicer.util

    logic = DepthReconLogic(context.scene)
    labelmap, _ = make_phantom_labelmap(context.scene)
    slicer.util.updateVolumeFromArray(labelmap, np.zeros((8, 8, 8), dtype=np.int16))
    _assert_refused_leaving_scene(context.scene, lambda: logic.createBoneModels(labelmap), "no non-zero labels")


def test_bundled_network_loads_and_a_radiograph_needs_its_geometry(context, tmp_dir):
    """The installed extension carries its wrist network (hash checked); a radiograph without
    imaging geometry is refused before anything is added to the scene."""
    import slicer.util

    logic = DepthReconLogic(context.scene)
    model = logic.network("wrist")
    assert model.bones == ["radius", "ulna", "scaphoid", "lunate", "capitate"]
    plain = context.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "plain image")
    slicer.util.updateVolumeFromArray(plain, np.random.default_rng(0).random((1, 64, 80)).astype(np.float32))
    _assert_refused_leaving_scene(context.scene, lambda: logic.reconstructFromRadiograph(plain), "no imaging geometry")


SELF_TESTS = [
    test_phantom_models_have_exact_volumes_and_centres,
    test_default_names_come_from_labels,
    test_empty_label_map_is_reported_and_changes_nothing,
    test_bundled_network_loads_and_a_radiograph_needs_its_geometry,
]
