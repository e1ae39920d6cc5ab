"""The bundled wrist network on a person it never saw (ManskeLab ControlSample2, a left wrist,
posed and viewed at random from its back, as the benchmark sees it): every bone found, the
surfaces within the accuracy the network's manifest reports for that person (plus a margin for
a single case). Needs ../shared/data."""

import numpy as np
from BoneReconLib.dataset_store import CaseDataset
from BoneReconLib.depth_pipeline import reconstruct_bones
from BoneReconLib.depth_training import bundled_depth_weights, load_depth_network
from BoneReconLib.geometry import View
from BoneReconLib.limb_dataset import generate_limb_dataset
from BoneReconLib.limb_posing import wrist_joints
from BoneReconLib.limb_radiograph import Bone
from BoneReconLib.network_library import read_network_manifest
from BoneReconLib.surface_evaluation import compare_surfaces

BONES = ("radius", "ulna", "scaphoid", "lunate", "capitate")


def test_bundled_wrist_network_on_an_unseen_person(shared_data, tmp_path):
    folder = shared_data / "meshes" / "wrist_manske"
    bones = [Bone.from_file(folder / f"ControlSample2_L_{name.capitalize()}_Mesh.vtk", fill_holes=True, name=name)
             for name in BONES]
    generate_limb_dataset(tmp_path / "cs2", {"cs2": bones}, 2, seed=21,
                          articulations={"cs2": wrist_joints(bones, side="left")},
                          store_meshes=True, fractions=(0, 0, 1))
    model = load_depth_network(bundled_depth_weights("wrist"))
    reported = read_network_manifest()["networks"]["depth-wrist"]["metrics"]["held_out_test"]["assd_mm"]
    errors = []
    for item in CaseDataset(tmp_path / "cs2", "test"):
        view = View.from_dict(item["meta"]["geometry"]["views"][0])
        result = reconstruct_bones(model, item["image"][0].numpy(), view)
        assert set(result.prediction.found) == set(BONES)
        for k, name in enumerate(item["meta"]["bones"]):
            truth = (item[f"vertices_{k}"].double().numpy(), item[f"triangles_{k}"].long().numpy())
            errors.append(compare_surfaces(*result.surfaces[name], *truth, with_dice=False)["mean_mm"])
    assert float(np.mean(errors)) < reported + 1.5, (errors, reported)
