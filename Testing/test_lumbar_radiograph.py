"""Biplanar lumbar cases: the cortical shell's line integral against the analytic sphere, every
landmark on its own vertebra's image, the background CT's lumbar spine removed, bad backgrounds
refused."""

import numpy as np
import pytest
import SimpleITK as sitk
from meshes import ellipsoid

from BoneReconLib.drr import hu_to_mu
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import View, ap_view, biplanar_rig
from BoneReconLib.lumbar_dataset import draw_case
from BoneReconLib.bone_density import SOFT_TISSUE_HU, BoneDensity
from BoneReconLib.lumbar_radiograph import SpineCT, render_lumbar
from BoneReconLib.sample_data import SAMPLE_CT, SAMPLE_VERTEBRA_LABELS
from BoneReconLib.spine_alignment import LEVELS




def test_cortical_shell_and_interior_of_a_sphere_match_the_analytic_chords():
    radius, shell = 15.0, 1.0
    points, triangles = ellipsoid(theta=200, phi=200, radii=(radius,) * 3)
    density = BoneDensity(cancellous_hu=200.0, cortical_hu=1400.0, cortical_mm=shell)
    view = ap_view(size=(61, 61), pixel_spacing=(0.5, 0.5), source_to_detector=4000.0, source_to_isocenter=3900.0)
    images = render_lumbar(None, {"L3": points}, {"L3": triangles}, {"L3": points[:3]}, [view], density)
    mu_soft, mu_c, mu_k = (float(hu_to_mu(np.float64(h))) for h in (SOFT_TISSUE_HU, 200.0, 1400.0))
    # Near-parallel rays at offset r from the centre cross 2 sqrt(R^2 - r^2) of bone, of which
    # 2 sqrt((R - t)^2 - r^2) is interior.
    scale = 3900.0 / 4000.0  # detector mm -> mm at the sphere
    for offset_px in (0, 10, 20, 27):
        r = offset_px * 0.5 * scale
        outer = 2 * np.sqrt(radius ** 2 - r ** 2)
        inner = 2 * np.sqrt(max((radius - shell) ** 2 - r ** 2, 0.0))
        expected = mu_c * inner + mu_k * (outer - inner)
        value = float(images.decomposition[0, 0, 30, 30 + offset_px])
        assert value == pytest.approx(expected, rel=0.01), offset_px
        assert float(images.attenuation[0, 30, 30 + offset_px]) == pytest.approx(expected - mu_soft * outer, rel=0.01)
    # The shell makes the rim brighter than a uniform ball of the same mean would be.
    assert float(images.decomposition[0, 0, 30, 57]) / 2 > mu_c * np.sqrt(radius ** 2 - (27 * 0.5 * scale) ** 2)


def test_every_landmark_projects_onto_its_own_vertebra_image(spine_background, bundled_models):
    for seed in range(3):
        arrays, meta = draw_case(bundled_models, spine_background, np.random.default_rng([11, seed]), size=(128, 128))
        decomposition = arrays["decomposition"].astype(np.float32)  # (5, V, nv, nu)
        ij = arrays["landmarks_ij"]  # (V, 5, L, 2)
        for v in range(2):
            for n in range(len(LEVELS)):
                for i, j in ij[v, n]:
                    assert 0 <= i <= 127 and 0 <= j <= 127  # the field holds the whole spine
                    # A surface point projects inside or on the edge of its vertebra's silhouette.
                    patch = decomposition[n, v, max(int(round(j)) - 1, 0):int(round(j)) + 2,
                                          max(int(round(i)) - 1, 0):int(round(i)) + 2]
                    assert patch.max() > 0, (v, LEVELS[n])
        # The landmarks stored in 3D project to the stored pixels through the stored geometry.
        for v, view_dict in enumerate(meta["geometry"]["views"]):
            view = View.from_dict(view_dict)
            projected, depth = view.project(arrays["landmarks"].astype(np.float64))
            assert projected == pytest.approx(ij[v], abs=1e-3)
            assert depth == pytest.approx(arrays["landmarks_depth"][v], rel=1e-5)
        assert arrays["visible"].mean() > 0.4
        assert np.all(arrays["image"] >= 0) and np.all(arrays["image"] <= 1)


def test_ap_and_lateral_views_are_perpendicular_and_look_from_the_front_and_side(spine_background, bundled_models):
    arrays, meta = draw_case(bundled_models, spine_background, np.random.default_rng(4), size=(64, 64))
    ap, lat = (View.from_dict(v) for v in meta["geometry"]["views"])
    assert abs(ap.normal @ lat.normal) < np.sin(np.radians(3.5))
    assert ap.normal[1] < -0.98  # AP: beam from the front to the back (up to 5 + 3 deg off)
    assert abs(lat.normal[0]) > 0.98


def test_background_loses_its_lumbar_vertebrae_only(spine_background):
    mu = spine_background.volume().data.numpy()
    soft = float(hu_to_mu(np.float64(SOFT_TISSUE_HU)))
    assert mu[spine_background.lumbar] == pytest.approx(soft)
    outside = ~spine_background.lumbar
    assert mu[outside] == pytest.approx(hu_to_mu(spine_background.hu[outside]).astype(np.float32), rel=1e-5)
    assert spine_background.centroids["L1"][2] > spine_background.centroids["L5"][2] + 100  # L1 well above L5
    frame = spine_background.spine_frame()
    assert frame[:3, :3] @ frame[:3, :3].T == pytest.approx(np.eye(3))
    assert frame[1, 1] > 0.9  # y toward the patient's front


def test_bad_backgrounds_are_refused(tmp_path, spine_background):
    with pytest.raises(InputError, match="choose the matching label table"):
        SpineCT.from_files(SAMPLE_CT, SAMPLE_VERTEBRA_LABELS, label_table="verse")
    labels = sitk.ReadImage(str(SAMPLE_VERTEBRA_LABELS))
    array = sitk.GetArrayFromImage(labels)
    without_l1 = sitk.GetImageFromArray(np.where(array == 31, 0, array))
    without_l1.CopyInformation(labels)
    sitk.WriteImage(without_l1, str(tmp_path / "no_l1.nii.gz"))
    with pytest.raises(InputError, match="lacks L1"):
        SpineCT.from_files(SAMPLE_CT, tmp_path / "no_l1.nii.gz")
    shifted = sitk.Image(labels)
    shifted.SetOrigin(tuple(np.array(labels.GetOrigin()) + 5.0))
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nii.gz"))
    with pytest.raises(InputError, match="not on the CT's voxel grid"):
        SpineCT.from_files(SAMPLE_CT, tmp_path / "shifted.nii.gz")
    with pytest.raises(InputError, match="does not exist"):
        SpineCT.from_files(tmp_path / "missing.nii.gz", SAMPLE_VERTEBRA_LABELS)
    views = biplanar_rig(size=(16, 16))
    with pytest.raises(InputError, match="No vertebrae"):
        render_lumbar(spine_background.volume(), {}, {}, {}, views)
