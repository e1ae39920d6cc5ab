"""Shape models in the scene: model folders with hash checks, instance nodes, the module logic call."""

import json

import numpy as np
import pytest
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import rotation_about
from BoneReconLib.shape_model_library import load_models
from BoneReconLib.shape_statistics import build_shape_model
from test_shape_model import family  # noqa: F401 (fixture)


@pytest.fixture
def model_folder(family, tmp_path):  # noqa: F811
    shapes, triangles, _, _ = family
    model = build_shape_model("L2", shapes, triangles, landmark_targets={"spinous process tip": ("spinous process",
                                                                                                 [0, -40.0, 0])})
    digest = model.save(tmp_path / "L2.ssm.npz")
    (tmp_path / "manifest.json").write_text(json.dumps({"models": {"L2": {"file": "L2.ssm.npz", "sha256": digest}}}))
    return tmp_path


def test_model_folder_loads_with_hash_check(model_folder):
    models = load_models(model_folder)
    assert list(models) == ["L2"] and models["L2"].landmark_names == ["spinous process tip"]
    with pytest.raises(InputError, match="No shape model for L4"):
        load_models(model_folder, ["L4"])
    manifest = json.loads((model_folder / "manifest.json").read_text())
    manifest["models"]["L2"]["sha256"] = "0" * 64
    (model_folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="does not match its manifest"):
        load_models(model_folder)
    with pytest.raises(InputError, match="holds no shape models"):
        load_models(model_folder / "nowhere")


def test_logic_instance_updates_model_and_landmark_nodes(model_folder, context):
    import slicer.util
    from BiplanarReconLib import BiplanarReconLogic

    logic = BiplanarReconLogic(context.scene)
    model = logic.shapeModels(model_folder)["L2"]
    pose = np.eye(4)
    pose[:3, :3] = rotation_about([1, 0, 0], 0.2)
    pose[:3, 3] = [5.0, 10.0, 200.0]
    surface, landmarks = logic.instance("L2", coefficients=[1.0, -0.5], pose=pose, folder=model_folder)
    expected = model.instances(np.array([[1.0, -0.5]]), poses=pose[None]).numpy()[0]
    np.testing.assert_allclose(slicer.util.arrayFromModelPoints(surface), expected, atol=1e-6)
    assert landmarks.GetNthControlPointLabel(0) == "spinous process tip"
    assert landmarks.GetNthControlPointDescription(0) == "spinous process"
    np.testing.assert_allclose(landmarks.GetNthControlPointPosition(0),
                               model.landmarks[0].position(expected), atol=1e-6)
    # The same nodes follow a new instance.
    logic.instance("L2", coefficients=[0.0, 0.0, 2.0], modelNode=surface, landmarksNode=landmarks,
                   folder=model_folder)
    np.testing.assert_allclose(slicer.util.arrayFromModelPoints(surface), model.instances([[0.0, 0.0, 2.0]])[0],
                               atol=1e-6)
    # With the free-form term: the field of these weights is added in the model's frame, before the pose.
    free_form = logic.freeForm("L2", model_folder)
    weights = np.zeros((free_form.n_functions, 3))
    weights[0] = [2.0, 0.0, -1.0]
    logic.instance("L2", coefficients=[1.0], pose=pose, modelNode=surface, landmarksNode=landmarks,
                   folder=model_folder, freeFormWeights=weights)
    field = free_form.displacements(weights[None]).numpy()[0]
    assert np.abs(field).max() > 0.1
    expected = (model.instances([[1.0]]).numpy()[0] + field) @ pose[:3, :3].T + pose[:3, 3]
    np.testing.assert_allclose(slicer.util.arrayFromModelPoints(surface), expected, atol=1e-6)
    np.testing.assert_allclose(landmarks.GetNthControlPointPosition(0), model.landmarks[0].position(expected),
                               atol=1e-6)
    before = context.scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match="No shape model for L5"):
        logic.instance("L5", folder=model_folder)
    assert context.scene.GetNumberOfNodes() == before


def test_bundled_models_load_and_make_plausible_vertebrae():
    from BoneReconLib.vertebra_landmarks import LANDMARKS

    models = load_models()  # hashes checked against the manifest
    assert list(models) == ["L1", "L2", "L3", "L4", "L5"]
    for level, model in models.items():
        assert model.landmark_names == list(LANDMARKS), level
        mean = {lm.name: lm.position(model.mean) for lm in model.landmarks}
        depth = mean["body anterior superior"][1] - mean["body posterior superior"][1]
        width = mean["body right superior"][0] - mean["body left superior"][0]
        assert 25 < depth < 45 and 35 < width < 65, (level, depth, width)  # lumbar vertebral bodies, mm
        assert mean["spinous process tip"][1] < -30 and abs(mean["spinous process tip"][0]) < 5
        extreme = model.instances(np.array([[3.0]])).numpy()[0]  # +3 s.d. along mode 1: still a vertebra
        assert 50 < np.ptp(extreme[:, 0]) < 130
