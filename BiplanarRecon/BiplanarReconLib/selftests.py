"""BiplanarRecon self-tests: run by pytest headless (Testing/) and by BiplanarReconTest in Slicer.

Each test takes (context, tmp_dir) and uses only the bundled sample case, so it runs on a user's
fresh install as well as in CI.
"""

from __future__ import annotations

import numpy as np

from BoneReconLib.errors import InputError
from BoneReconLib.mrml_io import load_scene_mrb, save_scene_mrb
from BoneReconLib.progress import Cancelled
from BoneReconLib.scene_summary import scene_summary
from BoneReconLib.surface_metrics import open_edge_count, volume_and_centroid
from BoneReconLib.vertebra_labels import BUILTIN_TABLES, LUMBAR_LEVELS

from .logic import BiplanarReconLogic


def _label_voxels_ras(labelmap_node, value):
    """(voxel count x voxel volume, RAS centroid) of one label, from the node's IJK-to-RAS matrix."""
    import slicer.util
    import vtk

    array = slicer.util.arrayFromVolume(labelmap_node)
    matrix = vtk.vtkMatrix4x4()
    labelmap_node.GetIJKToRASMatrix(matrix)
    m = slicer.util.arrayFromVTKMatrix(matrix)
    kji = np.argwhere(array == value)
    ras = kji[:, ::-1] @ m[:3, :3].T + m[:3, 3]
    return len(kji) * abs(np.linalg.det(m[:3, :3])), ras.mean(axis=0)


def test_sample_vertebra_models_match_labels(context, tmp_dir):
    """Every model is watertight, has its label's volume and sits where its voxels are."""
    logic = BiplanarReconLogic(context.scene)
    _, labels = logic.loadSampleCase()
    segmentation, models = logic.createVertebraModels(labels, "totalsegmentator", smoothing=0.0)
    assert list(models) == list(LUMBAR_LEVELS)
    seg = segmentation.GetSegmentation()
    assert [seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())] == list(LUMBAR_LEVELS)
    value_of = {name: value for value, name in BUILTIN_TABLES["totalsegmentator"].items()}
    superior = []
    for level, model in models.items():
        poly = model.GetPolyData()
        assert open_edge_count(poly) == 0, f"{level} surface is not closed"
        volume, centroid = volume_and_centroid(poly)
        voxel_volume, voxel_centroid = _label_voxels_ras(labels, value_of[level])
        assert abs(volume / voxel_volume - 1.0) < 0.04, (level, volume, voxel_volume)
        assert np.linalg.norm(centroid - voxel_centroid) < 1.0, (level, centroid, voxel_centroid)
        superior.append(centroid[2])
    assert np.all(np.diff(superior) < -20.0), "L1..L5 must run head to feet, one vertebra apart"


def test_wrong_label_table_is_reported_and_changes_nothing(context, tmp_dir):
    logic = BiplanarReconLogic(context.scene)
    _, labels = logic.loadSampleCase()
    before = context.scene.GetNumberOfNodes()
    try:
        logic.createVertebraModels(labels, "verse")
    except InputError as exc:
        assert "no L1/L2/L3/L4/L5" in str(exc)
    else:
        raise AssertionError("VerSe ids on a TotalSegmentator label map must be rejected")
    assert context.scene.GetNumberOfNodes() == before


def test_cancel_leaves_scene_unchanged(context, tmp_dir):
    logic = BiplanarReconLogic(context.scene)
    _, labels = logic.loadSampleCase()
    before = scene_summary(context.scene)
    count = context.scene.GetNumberOfNodes()
    seen = []

    def cancel_when_building_surfaces(fraction, message):
        seen.append(fraction)
        if fraction >= 0.4:
            raise Cancelled("test cancel")

    try:
        logic.createVertebraModels(labels, progress=cancel_when_building_surfaces)
    except Cancelled:
        pass
    else:
        raise AssertionError("the cancel request was ignored")
    assert seen and max(seen) >= 0.4
    assert context.scene.GetNumberOfNodes() == count
    assert scene_summary(context.scene) == before


def test_scene_bundle_round_trip(context, tmp_dir):
    """Save as .mrb, clear, reload: every data node comes back with the same content."""
    logic = BiplanarReconLogic(context.scene)
    _, labels = logic.loadSampleCase()
    logic.createVertebraModels(labels)
    params = logic.getParameterNode()
    params.SetParameter("labelTable", "totalsegmentator")
    labels.SetAttribute("BoneRecon.role", "vertebra labels")
    before = scene_summary(context.scene)
    path = save_scene_mrb(context.scene, tmp_dir / "roundtrip.mrb")
    context.scene.Clear(False)  # keeps only the (reset) singleton parameter nodes
    assert all(cls == "vtkMRMLScriptedModuleNode" for cls, _ in scene_summary(context.scene))
    load_scene_mrb(context.scene, path)
    after = scene_summary(context.scene)
    assert set(after) == set(before), set(before) ^ set(after)
    for key in before:
        assert after[key] == before[key], key


INITIAL_CENTROID_MM = 15.0  # initial pose from landmarks alone, before any registration


def test_network_landmarks_and_initial_poses_on_the_sample(context, tmp_dir):
    """Plain DRRs of the sample CT (its real vertebrae, never seen in training, and no realism chain):
    the bundled network finds at least four of L1-L5 in one view (today the lateral; the AP stays
    below the found threshold), the body landmarks of each found vertebra fall on that vertebra's
    own DRR, and the mean shapes placed from the triangulated landmarks sit on the labelled
    vertebrae (centroids 5-13 mm apart with biplanar-1.0.0, before any registration)."""
    import slicer.util

    from BoneReconLib.radiograph_node import get_view

    logic = BiplanarReconLogic(context.scene)
    rendered = logic.renderSampleRadiographs(withLabels=True)
    found = logic.detectLandmarks(rendered.radiographs["AP"], rendered.radiographs["LAT"])
    body = ("body anterior superior", "body anterior inferior", "body posterior superior", "body posterior inferior",
            "body left superior", "body left inferior", "body right superior", "body right inferior",
            "superior endplate centre", "inferior endplate centre")
    assert max(len(detection.found) for _, _, detection in found.values()) >= 4, \
        {view: detection.vertebra_confidence for view, (_, _, detection) in found.items()}
    for view_name, (images, points, detection) in found.items():
        assert len(images) == 5 and points.GetNumberOfControlPoints() == 95
        view = get_view(rendered.radiographs[view_name])
        for level in detection.found:
            own = slicer.util.arrayFromVolume(rendered.label_drrs[level, view_name])[0]
            near = own > 0.02 * own.max()
            hits = []
            for landmark in detection.landmarks:
                if landmark["vertebra"] == level and landmark["name"] in body:
                    i, j = int(round(landmark["i"])), int(round(landmark["j"]))
                    reach = max(1, int(round(3.0 / view.pixel_spacing[0])))  # 3 mm
                    hits.append(bool(near[max(j - reach, 0):j + reach + 1, max(i - reach, 0):i + reach + 1].any()))
            assert np.mean(hits) >= 0.8, (view_name, level, np.mean(hits))

    placed = logic.initialiseVertebrae(rendered.radiographs["AP"], rendered.radiographs["LAT"], found=found)
    assert len(placed["models"]) >= 4, placed["initialisation"].messages
    value_of = {name: value for value, name in BUILTIN_TABLES["totalsegmentator"].items()}
    labels = context.scene.GetFirstNodeByName("Sample vertebra labels")
    for level, model in placed["models"].items():
        _, centroid = volume_and_centroid(model.GetPolyData())
        _, truth = _label_voxels_ras(labels, value_of[level])
        assert np.linalg.norm(centroid - truth) < INITIAL_CENTROID_MM, (level, centroid, truth)


def test_reconstruction_from_the_sample_radiographs(context, tmp_dir):
    """logic.reconstruct on DRRs of the sample CT: swapped views are refused and a cancel in the
    middle of the registration leaves the scene as it was; a full run adds a model and 19 3D
    landmarks per level the network finds (L1-L4: the sample's L5 runs off both DRRs and is named
    as not reconstructed) and the measurement table, and every level it calls converged lies on its
    labelled vertebra (volume centroids within 6 mm: the labels are 3 mm voxels; today L1-L4
    converge on these plain DRRs)."""
    import slicer.util

    logic = BiplanarReconLogic(context.scene)
    ap, lat = logic.loadSampleRadiographs()
    before = scene_summary(context.scene)
    count = context.scene.GetNumberOfNodes()
    try:
        logic.reconstruct(lat, ap)
    except InputError as exc:
        assert "look swapped" in str(exc), exc
    else:
        raise AssertionError("swapped radiographs were accepted")
    seen = []

    def cancel_while_registering(fraction, message):  # as the second level's registration starts
        seen.append(message)
        registering = {m.split(":")[0] for m in seen if m.startswith("Registering L")}
        if len(registering) == 2:
            raise Cancelled("test cancel")

    try:
        logic.reconstruct(ap, lat, preset="fast", progress=cancel_while_registering)
    except Cancelled:
        pass
    else:
        raise AssertionError("the cancel request was ignored")
    assert len({m.split(":")[0] for m in seen if m.startswith("Registering L")}) == 2, seen
    assert context.scene.GetNumberOfNodes() == count and scene_summary(context.scene) == before

    done = logic.reconstruct(ap, lat)
    result = done["result"]
    assert sorted(done["models"]) == ["L1", "L2", "L3", "L4"], result.messages
    assert "L5: found in neither radiograph, so not reconstructed" in result.messages
    assert done["landmarks"].GetNumberOfControlPoints() == 19 * 4
    assert len(result.converged) >= 2, result.messages
    assert done["table"].GetNumberOfRows() > 10 and done["table"].GetCellText(0, 0) == "lordosis"
    labels = context.scene.GetFirstNodeByName("Sample vertebra labels")
    value_of = {name: value for value, name in BUILTIN_TABLES["totalsegmentator"].items()}
    for level, node in done["models"].items():
        assert node.GetName() == level if level in result.converged else node.GetName() == f"{level} (not converged)"
        if level in result.converged:
            _, truth = _label_voxels_ras(labels, value_of[level])
            assert np.linalg.norm(volume_and_centroid(node.GetPolyData())[1] - truth) < 6.0, level
        else:
            assert node.GetDisplayNode().GetOpacity() < 1.0
    assert slicer.util.arrayFromModelPoints(done["models"]["L1"]).shape == (len(logic.shapeModels()["L1"].mean), 3)


def test_ct_registered_back_onto_its_own_radiographs(context, tmp_dir):
    """Ground truth: the sample CT started 4 deg / 6 mm away from where its DRRs were rendered comes
    back to under 1.5 mm (corners of its box), every vertebra on its own to under 1.5 mm (its own
    box), with a transform node per result and each level's model under its transform."""
    import slicer.util

    from BoneReconLib.geometry import rotation_about
    from BoneReconLib.volume_node import ijk_to_world

    logic = BiplanarReconLogic(context.scene)
    rendered = logic.renderSampleRadiographs()
    ct = context.scene.GetFirstNodeByName("Sample CT")
    labels = context.scene.GetFirstNodeByName("Sample vertebra labels")
    bounds = [0.0] * 6
    ct.GetRASBounds(bounds)
    corners = np.array([[x, y, z] for x in bounds[0:2] for y in bounds[2:4] for z in bounds[4:6]])
    centre = corners.mean(axis=0)
    start = np.eye(4)
    start[:3, :3] = rotation_about(np.array([0.6, -0.3, 0.75]) / np.linalg.norm([0.6, -0.3, 0.75]), np.radians(4.0))
    start[:3, 3] = centre - start[:3, :3] @ centre + [3.0, -4.0, 3.5]
    moved = lambda pose, points: points @ pose[:3, :3].T + pose[:3, 3]  # noqa: E731
    assert np.linalg.norm(moved(start, corners) - corners, axis=1).max() > 5.0
    done = logic.registerToRadiographs(ct, [rendered.radiographs["AP"], rendered.radiographs["LAT"]], labels,
                                       initial=start)
    assert sorted(done["results"]) == sorted(["volume", *LUMBAR_LEVELS])
    found = slicer.util.arrayFromTransformMatrix(done["transforms"]["volume"])
    assert np.linalg.norm(moved(found, corners) - corners, axis=1).max() < 1.5
    value_of = {name: value for value, name in BUILTIN_TABLES["totalsegmentator"].items()}
    for level in LUMBAR_LEVELS:
        result = done["results"][level]
        assert result.converged, (level, result.ncc)
        kji = np.argwhere(slicer.util.arrayFromVolume(labels) == value_of[level])
        low, high = kji.min(axis=0)[::-1], kji.max(axis=0)[::-1]  # (i, j, k)
        box = np.array([[a, b, c] for a in (low[0], high[0]) for b in (low[1], high[1]) for c in (low[2], high[2])],
                       dtype=float)
        ras = moved(ijk_to_world(labels), box)
        assert np.linalg.norm(moved(result.pose, ras) - ras, axis=1).max() < 1.5, level
        assert done["models"][level].GetTransformNodeID() == done["transforms"][level].GetID()


SELF_TESTS = [
    test_sample_vertebra_models_match_labels,
    test_wrong_label_table_is_reported_and_changes_nothing,
    test_cancel_leaves_scene_unchanged,
    test_scene_bundle_round_trip,
    test_network_landmarks_and_initial_poses_on_the_sample,
    test_reconstruction_from_the_sample_radiographs,
    test_ct_registered_back_onto_its_own_radiographs,
]
