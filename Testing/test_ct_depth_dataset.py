"""DepthRecon training cases from a CT and its label map (the bundled sample CT, L3 and L4 as the
"bones"): depth maps that agree with the posed label surfaces, the standard placement, the
dataset layout that training reads, 'bonerecon dataset depth', and bad input."""

import json

import numpy as np
import pytest
import torch
from BoneReconLib.cli import main
from BoneReconLib.ct_depth_dataset import LabelledCT, generate_ct_depth_dataset, sample_pose, standard_rotation
from BoneReconLib.dataset_store import CaseDataset, read_manifest
from BoneReconLib.depth_samples import DepthSamples, case_targets, dataset_bones
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import View, ap_view, save_geometry
from BoneReconLib.mesh_depth import mesh_depth
from BoneReconLib.sample_data import SAMPLE_CT, SAMPLE_VERTEBRA_LABELS

BONES = {28: "L4", 29: "L3"}  # TotalSegmentator values in the sample's label map


def small_view(**extra):
    view = ap_view(size=(96, 80), pixel_spacing=(2.0, 2.0), source_to_detector=1000.0, source_to_isocenter=800.0)
    view.extra.update(extra)
    return view


@pytest.fixture(scope="module")
def sample_ct():
    return LabelledCT.from_files(SAMPLE_CT, SAMPLE_VERTEBRA_LABELS, BONES, name="sample")


@pytest.fixture(scope="module")
def ct_dataset(sample_ct, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ctdepth") / "set"
    other = LabelledCT(name="copy", hu=sample_ct.hu, labels=sample_ct.labels, ijk_to_ras=sample_ct.ijk_to_ras,
                       bones=sample_ct.bones)
    generate_ct_depth_dataset(folder, [sample_ct, other], small_view(), 2, seed=3, store_meshes=True,
                              splits={"sample": "train", "copy": "validation"})
    return folder


def test_standard_placement_faces_the_source_and_centres_the_bones(sample_ct):
    view = small_view(source_to_object=760.0)
    assert np.allclose(standard_rotation(view), np.eye(3))  # an AP view already looks at +A, S up
    centre = sample_ct.bone_points().mean(axis=0)
    pose = sample_pose(centre, view, np.random.default_rng(0), rotation_deg=0.0, tilt_deg=0.0, shift_mm=0.0)
    assert np.allclose(pose[:3, :3], np.eye(3))
    placed = pose[:3, :3] @ centre + pose[:3, 3]
    assert np.allclose(placed, view.source + 760.0 * view.normal)
    turned = sample_pose(centre, view, np.random.default_rng(1), rotation_deg=30.0, tilt_deg=5.0, shift_mm=10.0)
    assert abs(np.linalg.det(turned[:3, :3]) - 1.0) < 1e-9
    moved = turned[:3, :3] @ centre + turned[:3, 3] - (view.source + 760.0 * view.normal)
    assert abs(moved @ view.normal) < 1e-9 and np.abs(moved).max() <= 10.0 * np.sqrt(2) + 1e-9
    as_is = sample_pose(centre, view, np.random.default_rng(0), "as-is", 0.0, 0.0, 0.0)
    assert np.allclose(as_is, np.eye(4))
    with pytest.raises(InputError, match="placement"):
        sample_pose(centre, view, np.random.default_rng(0), "sideways")


def test_depth_maps_agree_with_the_posed_label_surfaces(ct_dataset):
    """The label's exact depth maps against the ray-cast depth of its marching-cubes surface, posed
    the same way (stored with the case): two independent routes to the same numbers."""
    item = CaseDataset(ct_dataset, "train")[0]
    meta = item["meta"]
    view = View.from_dict(meta["geometry"]["views"][0])
    assert meta["bones"] == ["L4", "L3"]
    for k in range(2):
        surface = mesh_depth(item[f"vertices_{k}"].double(), item[f"triangles_{k}"].long(), [view])[0, 0]
        hit = item["back"][k, 0] > 0
        both = hit & surface.hit
        assert int(both.sum()) > 200 and int((hit ^ surface.hit).sum()) < 0.1 * int(hit.sum())
        for name in ("front", "back", "thickness"):
            error = (item[name][k, 0].double() - getattr(surface, name))[both].abs()
            assert float(error.median()) < 0.3, (k, name, float(error.median()))
        # Thickness is the length inside: back - front, less where a ray leaves and enters again.
        span = (item["back"][k, 0] - item["front"][k, 0])[hit]
        assert bool((item["thickness"][k, 0][hit] <= span + 1e-3).all())
    # The mask and nearest-bone ids follow the depth maps; the object plane lies within the bones.
    hits = item["back"][:, 0] > 0
    assert torch.equal(item["mask"][0].bool(), hits.any(dim=0))
    assert set(np.unique(item["bone_id"].numpy())) <= {0, 1, 2}
    on = item["front"][:, 0][hits]
    assert float(on.min()) < view.extra["source_to_object"] < float(item["back"][:, 0][hits].max())
    assert float(item["image"].min()) >= 0.0 and float(item["image"].max()) <= 1.0


def test_the_cases_train_like_mesh_made_limb_cases(ct_dataset):
    manifest = read_manifest(ct_dataset)
    assert manifest["kind"] == "single-view-limb"
    assert {case["subject"]: case["split"] for case in manifest["cases"]} == {"sample": "train", "copy": "validation"}
    bones = dataset_bones(ct_dataset)
    assert bones == ["L4", "L3"]
    item = CaseDataset(ct_dataset, "validation")[0]
    _, hit, front, back, _, _ = case_targets(item, bones)
    assert bool((back[hit > 0] >= front[hit > 0]).all())
    sample = DepthSamples(ct_dataset, bones, "train", augment=True, size=64)[1]
    assert sample["image"].shape == (1, 64, 64) and sample["hit"].shape == (2, 64, 64)


def test_dataset_depth_command_and_bad_input(tmp_path, capsys):
    geometry = save_geometry([small_view()], tmp_path / "view.json")
    table = tmp_path / "bones.csv"
    table.write_text("value,name\n28,L4\n29,L3\n30,L2\n")
    out = tmp_path / "set"
    code = main(["--quiet", "dataset", "depth", "--out", str(out), "--ct", str(SAMPLE_CT), str(SAMPLE_VERTEBRA_LABELS),
                 "--geometry", str(geometry), "--label-table", str(table), "--only", "L4,L3", "--cases", "2",
                 "--fractions", "1", "0", "0"])
    assert code == 0, capsys.readouterr()
    manifest = read_manifest(out)
    assert manifest["description"]["subjects"] == {"ct": ["L4", "L3"]} and len(manifest["cases"]) == 2
    # A label that the map lacks, a bone outside the view, a label map off the CT's grid: one clear message,
    # no dataset.
    table.write_text("value,name\n99,radius\n")
    code = main(["dataset", "depth", "--out", str(tmp_path / "bad"), "--ct", str(SAMPLE_CT),
                 str(SAMPLE_VERTEBRA_LABELS), "--geometry", str(geometry), "--label-table", str(table)])
    assert code != 0 and "no voxels of radius (99)" in capsys.readouterr().err
    far = small_view()
    far = View(name="XR", source=far.source + [0, 0, 3000.0], detector_center=far.detector_center + [0, 0, 3000.0],
               detector_u=far.detector_u, detector_v=far.detector_v, pixel_spacing=far.pixel_spacing, size=far.size)
    ct = LabelledCT.from_files(SAMPLE_CT, SAMPLE_VERTEBRA_LABELS, BONES)
    with pytest.raises(InputError, match="outside"):
        generate_ct_depth_dataset(tmp_path / "far", [ct], far, 1, placement="as-is", rotation_deg=0, tilt_deg=0,
                                  shift_mm=0)
    import SimpleITK as sitk
    shifted = sitk.ReadImage(str(SAMPLE_VERTEBRA_LABELS))
    shifted.SetOrigin([o + 5.0 for o in shifted.GetOrigin()])
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nii.gz"))
    with pytest.raises(InputError, match="voxel grid"):
        LabelledCT.from_files(SAMPLE_CT, tmp_path / "shifted.nii.gz", BONES)
    assert json.loads(json.dumps(manifest))  # the manifest is plain JSON


def test_module_logic_makes_the_same_cases_from_scene_nodes(ct_dataset, context, tmp_path):
    """DepthReconLogic.makeTrainingData (the panel's 'Make training data'): the CT and label map
    nodes of a scene, the view of a radiograph node -> the cases the files give (same seed)."""
    from BoneReconLib.mrml_io import load_volume
    from BoneReconLib.radiograph_node import create_radiograph_node
    from DepthReconLib import DepthReconLogic

    scene = context.scene
    ct = load_volume(scene, SAMPLE_CT, name="sample")
    labels = load_volume(scene, SAMPLE_VERTEBRA_LABELS, labelmap=True)
    view = small_view()
    radiograph = create_radiograph_node(scene, np.zeros(view.shape, np.float32), view, "XR")
    other = load_volume(scene, SAMPLE_CT, name="copy")
    manifest = DepthReconLogic(scene).makeTrainingData([(ct, labels), (other, labels)], tmp_path / "set",
                                                       radiographNode=radiograph, cases=2, labelNames=BONES, seed=3)
    assert len(manifest["cases"]) == 4
    # Case "sample-0000" from the nodes is case "sample-0000" from the files: same seed, same pose, same maps.
    from_files = {item["meta"]["case"]: item for item in CaseDataset(ct_dataset)}
    from_nodes = {item["meta"]["case"]: item for item in CaseDataset(tmp_path / "set")}
    assert set(from_nodes) == set(from_files) and "sample-0000" in from_nodes
    for case in from_nodes:
        assert from_nodes[case]["meta"]["pose"] == from_files[case]["meta"]["pose"]
        for key in ("front", "back", "attenuation"):
            assert torch.allclose(from_nodes[case][key], from_files[case][key], atol=1e-3), (case, key)
    with pytest.raises(InputError, match="view"):
        DepthReconLogic(scene).makeTrainingData([(ct, labels)], tmp_path / "other", labelNames=BONES)


def test_a_registered_ct_is_rendered_where_the_registration_put_it(sample_ct, tmp_path):
    """--placement as-is --registration: the whole-CT pose of 'bonerecon register' places the CT;
    without jitter the cases are those of the same CT whose voxels were moved there."""
    from BoneReconLib.geometry import rotation_about

    pose = np.eye(4)
    pose[:3, :3] = rotation_about((0.2, 0.1, 1.0), np.radians(12.0))
    pose[:3, 3] = (4.0, -6.0, 3.0)
    registration = tmp_path / "registration.json"
    registration.write_text(json.dumps({"poses": {"volume": {"pose": pose.tolist(), "ncc": [0.9]}}}))
    centre = sample_ct.bone_points().mean(axis=0)
    view = ap_view(size=(96, 80), pixel_spacing=(2.0, 2.0), isocenter=pose[:3, :3] @ centre + pose[:3, 3])
    code = main(["--quiet", "dataset", "depth", "--out", str(tmp_path / "reg"), "--ct", str(SAMPLE_CT),
                 str(SAMPLE_VERTEBRA_LABELS), "--geometry", str(save_geometry([view], tmp_path / "v.json")),
                 "--label-table", "totalsegmentator", "--only", "L4,L3", "--cases", "1", "--placement", "as-is",
                 "--registration", str(registration), "--rotation-deg", "0", "--tilt-deg", "0", "--shift-mm", "0"])
    assert code == 0
    registered = CaseDataset(tmp_path / "reg")[0]
    assert np.allclose(registered["meta"]["pose"], pose, atol=1e-5)
    moved = LabelledCT(name="moved", hu=sample_ct.hu, labels=sample_ct.labels, ijk_to_ras=pose @ sample_ct.ijk_to_ras,
                       bones=sample_ct.bones)
    generate_ct_depth_dataset(tmp_path / "moved", [moved], view, 1, placement="as-is", rotation_deg=0.0,
                              tilt_deg=0.0, shift_mm=0.0, fractions=(1, 0, 0))
    reference = CaseDataset(tmp_path / "moved")[0]
    assert np.allclose(reference["meta"]["pose"], np.eye(4), atol=1e-9)
    hit = reference["back"] > 0
    assert int(hit.sum()) > 500 and torch.equal(hit, registered["back"] > 0)
    assert float((registered["front"] - reference["front"])[hit].abs().max()) < 1e-3
    assert torch.allclose(registered["attenuation"], reference["attenuation"], atol=1e-4)
    registration.write_text(json.dumps({"poses": {}}))
    assert main(["dataset", "depth", "--out", str(tmp_path / "bad"), "--ct", str(SAMPLE_CT),
                 str(SAMPLE_VERTEBRA_LABELS), "--geometry", str(tmp_path / "v.json"), "--placement", "as-is",
                 "--registration", str(registration)]) != 0
