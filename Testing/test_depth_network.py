"""DepthRecon's network and its training: targets that decode back to the case's depths, shapes and
back >= front by construction, a small network that learns a tiny dataset, resumable training,
the shape variation of the limb dataset, and fixed subject splits."""

import numpy as np
import pytest
import torch
from BoneReconLib.dataset_store import CaseDataset, read_manifest, split_by_subject
from BoneReconLib.depth_network import DepthNet
from BoneReconLib.depth_reference import decode_depth, object_distance
from BoneReconLib.depth_samples import KEYS, DepthSamples, case_targets, dataset_bones
from BoneReconLib.depth_training import evaluate, load_depth_network, losses, train_depth, validation_indices
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import View
from BoneReconLib.limb_dataset import generate_limb_dataset
from BoneReconLib.limb_radiograph import Bone
from BoneReconLib.limb_variation import LimbVariation, vary_limb
from BoneReconLib.progress import Cancelled
from meshes import ellipsoid


def limb(k):
    return [Bone("femur", *ellipsoid(radii=(10, 10, 40), centre=(0, 0, 45))),
            Bone("tibia", *ellipsoid(radii=(9 + k, 9, 35), centre=(0, 0, -40)))]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("limbs") / "set"
    subjects = {"a": limb(0), "b": limb(1), "c": limb(2)}
    generate_limb_dataset(folder, subjects, 3, seed=1, size=(64, 64), variation=LimbVariation(0.05, 0.5),
                          splits={"a": "train", "b": "validation", "c": "test"})
    return folder


def test_targets_decode_to_the_cases_depths(dataset):
    item = CaseDataset(dataset, "train", keys=KEYS)[0]
    bones = dataset_bones(dataset)
    assert bones == ["femur", "tibia"]
    image, hit, front, back, view, pixel_mm = case_targets(item, bones)
    distance, assumed = object_distance(view)
    assert not assumed
    on = hit[1] > 0
    assert torch.allclose(decode_depth(front[1].double(), view, distance)[on], item["front"][1, 0].double()[on],
                          atol=1e-3)
    # Without augmentation the network grid is the case's grid (64 px): the same targets.
    sample = DepthSamples(dataset, bones, "train", size=64)[0]
    assert torch.allclose(sample["front"][1][on], front[1][on], atol=1e-3)
    assert float(sample["object_pixel_mm"]) == pytest.approx(pixel_mm)
    # At half the size every network pixel spans two case pixels: depths in pixels halve, pixels double.
    half = DepthSamples(dataset, bones, "train", size=32)[0]
    assert float(half["object_pixel_mm"]) == pytest.approx(2 * pixel_mm)
    inner = half["hit"][1] > 0.99
    assert float(half["front"][1][inner].mean()) == pytest.approx(float(front[1][on].mean()) / 2, rel=0.1)
    with pytest.raises(InputError, match="not among"):
        case_targets(item, ["femur"])


def test_network_outputs_and_back_never_before_front():
    model = DepthNet(["a", "b", "c"], widths=(8, 16, 32), depth_widths=(8, 16, 32), size=32)
    out = model(torch.randn(2, 1, 32, 32))
    assert out["logits"].shape == out["front"].shape == out["extent"].shape == (2, 3, 32, 32)
    assert bool((out["extent"] >= 0).all())
    with pytest.raises(ValueError):
        DepthNet(["a", "a"])


@pytest.fixture(scope="module")
def learned(dataset):
    """(network fitted to the tiny dataset's training cases, loss terms before, after)."""
    torch.manual_seed(0)
    bones = dataset_bones(dataset)
    samples = DepthSamples(dataset, bones, "train", size=64)
    batch = {k: torch.stack([samples[i][k] for i in range(len(samples))]) for k in samples[0]}
    model = DepthNet(bones, widths=(8, 16, 32), depth_widths=(8, 16, 32), size=64,
                     object_pixel_mm=float(samples[0]["object_pixel_mm"]))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        first = {k: float(v) for k, v in losses(model(batch["image"]), batch).items()}
    for _ in range(150):
        terms = losses(model(batch["image"]), batch)
        optimiser.zero_grad()
        terms["total"].backward()
        optimiser.step()
    with torch.no_grad():
        last = {k: float(v) for k, v in losses(model(batch["image"]), batch).items()}
    return model.eval(), first, last


def test_a_small_network_learns_the_tiny_dataset_and_training_resumes(dataset, learned, tmp_path):
    model, first, last = learned
    bones = dataset_bones(dataset)
    samples = DepthSamples(dataset, bones, "train", size=64)
    assert last["dice"] < 0.5 * first["dice"] and last["depth_px"] < 0.3 * first["depth_px"]
    scores = evaluate(model, samples, "cpu")
    assert scores["dice"] > 0.8 and set(scores["dice_per_bone"]) == set(bones)
    # The command's training: interrupted after 2 steps, then resumed, gives the same weights as 4 at once.
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    train_depth(dataset, out_a, steps=4, batch_size=2, validate_every=2, checkpoint_every=1, size=64)
    with pytest.raises(Cancelled):
        train_depth(dataset, out_b, steps=4, batch_size=2, validate_every=2, checkpoint_every=1, size=64,
                    progress=_stop_after(2))
    train_depth(dataset, out_b, steps=4, batch_size=2, validate_every=2, checkpoint_every=1, size=64)
    a, b = load_depth_network(out_a / "best.pt"), load_depth_network(out_b / "best.pt")
    for key, value in a.state_dict().items():
        assert torch.allclose(value, b.state_dict()[key]), key
    with pytest.raises(InputError, match="other settings"):
        train_depth(dataset, out_b, steps=5, batch_size=2, size=64)
    # Training may go on from earlier weights (--init): they are the starting point, same bones and layout.
    out_c = tmp_path / "c"
    train_depth(dataset, out_c, steps=1, batch_size=2, validate_every=1, size=64, learning_rate=1e-12,
                init=out_a / "best.pt")
    c = load_depth_network(out_c / "best.pt")
    for key, value in a.state_dict().items():
        assert torch.allclose(value, c.state_dict()[key], atol=1e-6), key
    with pytest.raises(InputError, match="are for bones"):
        train_depth(dataset, tmp_path / "d", steps=1, size=32, init=out_a / "best.pt")


def test_validation_cases_are_spread_over_every_subject():
    # Cases are stored subject by subject: two subjects of 250 validation cases each.
    chosen = validation_indices(500, 64)
    assert len(chosen) == 64 and chosen[0] == 0 and chosen[-1] == 499
    assert sum(i < 250 for i in chosen) == 32
    assert validation_indices(10, 64) == list(range(10)) and validation_indices(0) == []


def _stop_after(steps):
    def progress(fraction, message):
        if message.startswith(f"step {steps}/"):
            raise Cancelled()
    return progress


def test_variation_keeps_bones_closed_and_changes_their_size(dataset):
    bones = limb(0)
    rng = np.random.default_rng(3)
    varied = vary_limb(bones, LimbVariation(scale_sd=0.1, warp_mm=2.0), rng)
    for before, after in zip(bones, varied):
        assert np.array_equal(before.triangles, after.triangles)
        moved = np.linalg.norm(after.points - before.points, axis=1)
        assert moved.max() > 0.5
    plain = vary_limb(bones, LimbVariation(scale_sd=0.0, warp_mm=0.0), rng)
    assert all(np.allclose(a.points, b.points) for a, b in zip(bones, plain))
    # The smooth bend never folds a surface: every triangle keeps its orientation.
    from BoneReconLib.mesh_depth import check_closed_surface
    for bone, after in zip(bones, varied):
        check_closed_surface(after.triangles, len(after.points))
        normal = lambda p, t: np.cross(p[t[:, 1]] - p[t[:, 0]], p[t[:, 2]] - p[t[:, 0]])  # noqa: E731
        turned = np.einsum("ij,ij->i", normal(bone.points, bone.triangles), normal(after.points, after.triangles))
        assert (turned > 0).all()
    manifest = read_manifest(dataset)
    assert manifest["split"]["assigned"] == {"a": "train", "b": "validation", "c": "test"}
    assert {c["subject"]: c["split"] for c in manifest["cases"]} == {"a": "train", "b": "validation", "c": "test"}
    view = View.from_dict(CaseDataset(dataset, "test")[0]["meta"]["geometry"]["views"][0])
    assert "source_to_object" in view.extra


def test_fixed_splits_are_checked():
    assert split_by_subject(["a", "b", "c", "d"], (1, 0, 0), assigned={"d": "test"})["d"] == "test"
    with pytest.raises(InputError, match="unknown split"):
        split_by_subject(["a"], assigned={"a": "holdout"})
    with pytest.raises(InputError, match="not in the dataset"):
        split_by_subject(["a"], assigned={"z": "test"})


def _case_files(dataset, model, tmp_path):
    """(weights file of ``model``, the first training case, its view, its geometry JSON, its image as NRRD)."""
    import json

    import SimpleITK as sitk

    weights = tmp_path / "net.pt"
    torch.save(dict(model=model.state_dict(), config=model.config), weights)
    item = CaseDataset(dataset, "train")[0]
    view = View.from_dict(item["meta"]["geometry"]["views"][0])
    geometry = tmp_path / "view.json"
    geometry.write_text(json.dumps({"views": [view.to_dict()]}))
    image = tmp_path / "xr.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(item["image"][0].numpy()), str(image))
    return weights, item, view, geometry, image


def _save_blind(model, path):
    """``model`` with its mask logits pushed far negative: a network that sees no bone."""
    blind = DepthNet(**model.config)
    blind.load_state_dict(model.state_dict())
    with torch.no_grad():
        blind.segmentation_out.bias.fill_(-30.0)
    torch.save(dict(model=blind.state_dict(), config=blind.config), path)


def test_depth_command_reconstructs_a_training_case_and_refuses_an_empty_image(dataset, learned, tmp_path):

    import SimpleITK as sitk
    from BoneReconLib.depth_command import run_depth
    from BoneReconLib.mesh_io import read_surface
    from BoneReconLib.mesh_depth import mesh_from_polydata
    from BoneReconLib.surface_evaluation import compare_surfaces

    model = learned[0]
    weights, item, view, geometry, image = _case_files(dataset, model, tmp_path)
    run = run_depth(tmp_path / "out", image, geometry, weights)
    assert set(run.prediction.found) == {"femur", "tibia"} and not run.prediction.assumed_object_plane
    for name in ("scene.mrb", "report.md", "labels.nrrd", "femur.vtk", "tibia_front_depth.nrrd", "geometry.json"):
        assert name in run.files and (tmp_path / "out" / name).is_file()
    # The tibia as the network saw it: within a few network pixels (~1.2 mm here) of the truth
    # (the posed, varied ellipsoid is not stored; its exact depth maps back-projected stand in).
    from BoneReconLib.depth_reconstruction import depth_surface
    k = item["meta"]["bones"].index("tibia")
    truth = depth_surface(view, item["front"][k, 0], item["back"][k, 0], item["back"][k, 0] > 0)
    found = mesh_from_polydata(read_surface(tmp_path / "out" / "tibia.vtk"))
    assert compare_surfaces(*found, *truth, with_dice=False)["mean_mm"] < 3.0
    assert "object plane" in (tmp_path / "out" / "report.md").read_text()
    # A network that sees no bone (its mask logits pushed far negative): "no bone found", not a
    # mesh of noise; a flat image is no radiograph. Clear errors, and no output folder.
    _save_blind(model, tmp_path / "blind.pt")
    with pytest.raises(InputError, match="No bone found"):
        run_depth(tmp_path / "none", image, geometry, tmp_path / "blind.pt")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros(view.shape, np.float32)), str(tmp_path / "flat.nrrd"))
    with pytest.raises(InputError, match="flat"):
        run_depth(tmp_path / "none", tmp_path / "flat.nrrd", geometry, weights)
    assert not (tmp_path / "none").exists()


def test_module_logic_reconstructs_a_radiograph_node_and_cancel_leaves_the_scene_unchanged(
        dataset, learned, tmp_path, context):
    """DepthReconLogic (what the panel and the Python console call): a radiograph node that carries
    its view -> models, masks, depth maps and label map in one folder; the geometry may come from a
    JSON; Cancel, "no bone found" and a node without geometry leave the scene as it was."""

    from BoneReconLib.depth_reconstruction import depth_surface
    from BoneReconLib.mesh_depth import mesh_from_polydata
    from BoneReconLib.progress import Cancelled
    from BoneReconLib.radiograph_node import get_view
    from BoneReconLib.surface_evaluation import compare_surfaces
    from DepthReconLib import DepthReconLogic

    model = learned[0]
    weights, item, view, geometry, image = _case_files(dataset, model, tmp_path)

    scene = context.scene
    logic = DepthReconLogic(scene)
    radiograph = logic.loadRadiograph(image, geometry, name="wrist XR")
    assert np.allclose(get_view(radiograph).detector_center, view.detector_center)
    before = scene.GetNumberOfNodes()

    seen = []

    def cancel_at_second_bone(fraction, message):
        seen.append(fraction)
        if message.startswith("Back-projecting") and len([m for m in seen if m >= 0.1]) > 1:
            raise Cancelled("test")

    with pytest.raises(Cancelled):
        logic.reconstructFromRadiograph(radiograph, weights=weights, progress=cancel_at_second_bone)
    assert scene.GetNumberOfNodes() == before

    done = logic.reconstructFromRadiograph(radiograph, weights=weights)
    nodes, result = done["nodes"], done["result"]
    assert set(result.prediction.found) == {"femur", "tibia"}
    assert sorted(nodes.models) == ["femur", "tibia"]
    assert nodes.models["tibia"].GetName() == "wrist XR bones tibia"
    assert sorted(nodes.depths) == ["femur back", "femur front", "tibia back", "tibia front"]
    assert nodes.masks.GetSegmentation().GetNumberOfSegments() == 2
    import slicer.util
    labels = slicer.util.arrayFromVolume(nodes.labels)
    assert set(np.unique(labels)) == {0, 1, 2}
    # The model in the scene is the reconstructed tibia: a few network pixels from the truth.
    k = item["meta"]["bones"].index("tibia")
    truth = depth_surface(view, item["front"][k, 0], item["back"][k, 0], item["back"][k, 0] > 0)
    found = mesh_from_polydata(nodes.models["tibia"].GetPolyData())
    assert compare_surfaces(*found, *truth, with_dice=False)["mean_mm"] < 3.0
    # The tibia's front depth volume holds millimetres from the source where the tibia is.
    front = slicer.util.arrayFromVolume(nodes.depths["tibia front"])[0]
    on = front > 0
    distance = np.linalg.norm(view.source - view.detector_center)
    assert on.sum() > 30 and 0.5 * distance < float(np.median(front[on])) < distance

    # Without geometry: a clear error, nothing added; a geometry JSON gives it one.
    plain = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "plain")
    slicer.util.updateVolumeFromArray(plain, item["image"][0].numpy()[None].astype(np.float32))
    count = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="no imaging geometry"):
        logic.reconstructFromRadiograph(plain, weights=weights)
    assert scene.GetNumberOfNodes() == count
    logic.setGeometry(plain, geometry)
    assert set(logic.reconstructFromRadiograph(plain, weights=weights)["result"].prediction.found) == {"femur", "tibia"}

    # A network that sees nothing: "No bone found", nothing added.
    _save_blind(model, tmp_path / "blind.pt")
    count = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="No bone found"):
        logic.reconstructFromRadiograph(radiograph, weights=tmp_path / "blind.pt")
    assert scene.GetNumberOfNodes() == count
    with pytest.raises(InputError, match="No bundled network"):
        logic.reconstructFromRadiograph(radiograph, anatomy="knee")
