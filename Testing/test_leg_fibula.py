"""The fibula beside the tibia: its model keeps where it lies, a bone rendered beside another
explains its share of the image, the fibula is found beside a tibia phantom and refused where
there is none, and tibia files give their fibula in the tibia's frame."""

import numpy as np
import pytest

from BoneReconLib.errors import InputError
from BoneReconLib.geometry import biplanar_rig
from BoneReconLib.leg_fibula import fibula_model_from_fits, fibula_surfaces, fit_fibula
from BoneReconLib.leg_pipeline import HIGHPASS_MM, comparison_mask
from BoneReconLib.mesh_depth import mesh_depth
from BoneReconLib.spine_initialisation import SimilarityFit
from leg_phantoms import fibula_phantom, mirrored, tibia_phantom


def _family():
    """Fibulas on one set of vertices: the phantom moved by known offsets (no fitting needed)."""
    points, triangles = fibula_phantom()
    offsets = np.array([[0, 0, 0], [3, 1, 0], [-2, 2, 1], [1, -3, -2], [-3, -1, 2], [2, 2, -1]], float)
    return np.stack([points + o for o in offsets]), triangles, offsets


def test_the_fibula_model_keeps_where_its_fibulas_lie():
    fits, triangles, offsets = _family()
    model = fibula_model_from_fits(fits, triangles, sources=["phantom"])
    assert np.allclose(model.mean, fits.mean(axis=0))  # no Procrustes: the mean lies where they do
    assert model.info["frame"] == "tibia" and model.info["side"] == "right" and model.n_modes == 3
    # Pure shifts: one s.d. of the first mode moves every vertex alike.
    first = model.instances(np.array([[1.0, 0.0, 0.0]])).numpy()[0] - model.mean
    assert np.allclose(first, first.mean(axis=0), atol=1e-6)
    apex, tip = (lm.position(model.mean) for lm in model.landmarks)
    assert apex[2] == pytest.approx(model.mean[:, 2].max()) and tip[2] == pytest.approx(model.mean[:, 2].min())


@pytest.fixture(scope="module")
def shank():
    """A tibia phantom and a fibula phantom beside it (the truth: 2 mm lateral, 3 mm back from the
    family's mean, a little longer), in an AP + lateral rig; images with and without the fibula."""
    tibia = tibia_phantom()
    fits, triangles, _ = _family()
    model = fibula_model_from_fits(fits, triangles)
    truth = fibula_phantom(x=32.0 + 2.0, y=-8.0 - 3.0, length=336.0)
    views = biplanar_rig(source_to_detector=1200.0, source_to_isocenter=1000.0, size=(100, 200),
                         pixel_spacing=(2.0, 2.0), isocenter=(0.0, 0.0, -170.0))
    tibia_depth = mesh_depth(*tibia, views)
    tibia_thickness = tibia_depth.thickness[0].clamp_min(0).numpy()
    fibula_thickness = mesh_depth(*truth, views).thickness[0].clamp_min(0).numpy()
    silhouettes = tibia_depth.hit[0].numpy()
    tibia_masks = [comparison_mask(v, s, np.zeros_like(s)) for v, s in zip(views, silhouettes)]
    outline = mesh_depth(model.mean, model.triangles, views).hit[0].numpy()
    masks = [comparison_mask(v, s, np.zeros_like(s)) for v, s in zip(views, outline)]
    return dict(model=model, truth=truth, views=views, tibia=tibia_thickness, fibula=fibula_thickness,
                masks=masks, tibia_masks=tibia_masks)


def test_the_fibula_is_found_beside_the_tibia(shank):
    from BoneReconLib.surface_evaluation import compare_surfaces

    images = [t + f for t, f in zip(shank["tibia"], shank["fibula"])]
    start = SimilarityFit(np.eye(3), np.zeros(3), 1.0, np.ones(0, bool), 0.0)  # the tibia's pose: the world's frame
    found = fit_fibula(shank["model"], start, shank["views"], images, shank["tibia"], shank["masks"], HIGHPASS_MM,
                       shank["tibia_masks"])
    placed = compare_surfaces(found.points, found.triangles, *shank["truth"], with_dice=False)["mean_mm"]
    before = compare_surfaces(shank["model"].mean, found.triangles, *shank["truth"], with_dice=False)["mean_mm"]
    assert found.used and placed < 0.6 and placed < 0.4 * before
    # The fibula lies over the tibia's back in the lateral view (in the AP it is mostly beside it).
    assert np.all(found.agreement_with > found.agreement_alone) and found.agreement_with.min() > 0.99
    assert found.agreement_alone[1] < 0.9
    assert "fitted beside the tibia" in found.note()


def test_no_fibula_is_made_up_where_the_image_has_none(shank):
    images = [np.array(t) for t in shank["tibia"]]  # the tibia alone
    start = SimilarityFit(np.eye(3), np.zeros(3), 1.0, np.ones(0, bool), 0.0)
    found = fit_fibula(shank["model"], start, shank["views"], images, shank["tibia"], shank["masks"], HIGHPASS_MM,
                       shank["tibia_masks"])
    assert not found.used and "not found" in found.note()


def test_a_bone_rendered_beside_explains_its_share_of_the_image(shank):
    """The registration's background: at the true pose, the tibia with the fibula's thickness
    beside it agrees exactly with an image of both; alone it does not."""
    from BoneReconLib.leg_fibula import agreement

    images = [t + f for t, f in zip(shank["tibia"], shank["fibula"])]
    alone = agreement(images, shank["tibia"], shank["tibia_masks"], HIGHPASS_MM, shank["views"])
    beside = agreement(images, images, shank["tibia_masks"], HIGHPASS_MM, shank["views"])
    assert np.allclose(beside, 1.0) and np.all(alone < 0.995) and alone[1] < 0.9


def _write_shank(path, tibia, fibula):
    """One surface file holding a tibia and its fibula (as leg exports do)."""
    import vtk

    from BoneReconLib.mesh_depth import mesh_from_polydata
    from BoneReconLib.mesh_io import polydata_from_arrays, write_surface

    both = vtk.vtkAppendPolyData()
    for piece in (tibia, fibula):
        both.AddInputData(polydata_from_arrays(*piece))
    both.Update()
    write_surface(*mesh_from_polydata(both.GetOutput()), path)
    return path


def test_tibia_files_give_their_fibula_in_the_tibia_frame(tmp_path):
    from BoneReconLib.mesh_io import write_surface
    from BoneReconLib.shape_correspondence import surface_distance

    tibia, fibula = tibia_phantom(), fibula_phantom()
    right = _write_shank(tmp_path / "a_tibia_r.stl", tibia, fibula)
    left = _write_shank(tmp_path / "b_tibia_l.stl", mirrored(*tibia), mirrored(*fibula))
    right_fibula, left_fibula = fibula_surfaces([right, left])
    assert left_fibula.name.endswith("(left)")
    # The left leg's fibula, mirrored into the right tibia's frame, lies where the right one does.
    assert surface_distance(right_fibula.points, right_fibula.triangles, left_fibula.points,
                            left_fibula.triangles) < 0.5
    assert right_fibula.points[:, 0].mean() > 15.0  # lateral of a right tibia: +x
    write_surface(*tibia, tmp_path / "c_tibia_r.stl")
    with pytest.raises(InputError, match="holds no fibula"):
        fibula_surfaces([tmp_path / "c_tibia_r.stl"])
    with pytest.raises(InputError, match="one per surface"):
        fibula_surfaces([right], persons=["p1", "p2"])


def test_ssm_build_adds_a_fibula_model_to_a_leg_folder(tmp_path):
    """`bonerecon ssm build --anatomy fibula`: three legs' tibia files (fibulas 4 mm apart) -> a
    fibula model beside the folder's other models, its mean where the fibulas lie on average."""
    import json

    from BoneReconLib.shape_correspondence import surface_distance
    from BoneReconLib.shape_model_library import load_models
    from test_cli import run_cli

    tibia = tibia_phantom()
    files = [_write_shank(tmp_path / f"{n}_tibia_r.stl", tibia, fibula_phantom(x=32.0 + dx))
             for n, dx in enumerate((-4.0, 0.0, 4.0))]
    folder = tmp_path / "leg"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"format": "bonerecon-ssm-manifest/1",
                                                      "models": {"femur": {"file": "femur.ssm.npz"}}}))
    done = run_cli("-q", "ssm", "build", "--anatomy", "fibula", "--meshes", *files, "--out", folder)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["models"]) == {"femur", "fibula"} and manifest["models"]["fibula"]["frame"] == "tibia"
    model = load_models(folder, levels=["fibula"])["fibula"]
    middle = fibula_surfaces([files[1]])[0]
    assert surface_distance(model.mean, model.triangles, middle.points, middle.triangles) < 0.5
    done = run_cli("ssm", "build", "--anatomy", "fibula", "--meshes", tmp_path / "nothing.stl", "--out", folder)
    assert done.returncode == 2 and json.loads((folder / "manifest.json").read_text()) == manifest
