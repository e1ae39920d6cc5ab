"""DRR line integrals against exact answers (linear fields are integrated exactly), batching, gradients."""

import math

import numpy as np
import pytest
import torch
from BoneReconLib.drr import Volume, attenuation_coefficients, hu_to_mu, radiograph_from_attenuation, render_attenuation
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import ap_view, biplanar_rig, rotation_about

SHAPE_KJI = (20, 30, 40)
COEFFS = np.array([0.01, 0.001, 0.002, 0.0005])  # mu = c0 + c1 i + c2 j + c3 k (1/mm)


def oblique_matrix():
    rotation = rotation_about([1.0, 2.0, 2.0], math.radians(20.0))
    m = np.eye(4)
    m[:3, :3] = rotation * np.array([1.5, 1.2, 2.0])
    m[:3, 3] = [-25.0, -20.0, -18.0]
    return m


def ramp_volume(dtype=torch.float64):
    k, j, i = np.indices(SHAPE_KJI, dtype=float)
    mu = COEFFS[0] + COEFFS[1] * i + COEFFS[2] * j + COEFFS[3] * k
    return Volume.from_numpy(mu, oblique_matrix(), dtype=dtype)


def exact_integrals(volume, view):
    """Each pixel ray's chord through the box [-0.5, n-0.5]^3 (IJK) and the exact integral of the ramp on it."""
    m_inv = np.linalg.inv(volume.ijk_to_ras)
    origins, _ = view.rays()
    targets = view.pixel_to_world(*np.meshgrid(np.arange(view.size[0]), np.arange(view.size[1])))
    o = (origins @ m_inv[:3, :3].T) + m_inv[:3, 3]
    d = (targets @ m_inv[:3, :3].T) + m_inv[:3, 3] - o
    size = np.array([SHAPE_KJI[2], SHAPE_KJI[1], SHAPE_KJI[0]], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-0.5 - o) / d, (size - 0.5 - o) / d
    near, far = np.minimum(t1, t2), np.maximum(t1, t2)
    t_in, t_out = np.nanmax(near, axis=-1), np.nanmin(far, axis=-1)
    hits = t_out > t_in
    chord = np.where(hits, (t_out - t_in) * np.linalg.norm(targets - view.source, axis=-1), 0.0)
    mu_mid = COEFFS[0] + (o + ((t_in + t_out) / 2)[..., None] * d) @ COEFFS[1:]
    entry, exit_ = o + t_in[..., None] * d, o + t_out[..., None] * d
    # Interpolation with zeros outside reaches one voxel beyond the outer centres: rays missing that box see 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        u1, u2 = (-1.0 - o) / d, (size - o) / d
    reach = np.nanmin(np.maximum(u1, u2), axis=-1) > np.nanmax(np.minimum(u1, u2), axis=-1)
    return dict(exact=np.where(hits, chord * mu_mid, 0.0), hits=hits, reach=reach, entry_axis=np.argmax(near, axis=-1),
                exit_axis=np.argmin(far, axis=-1), entry=entry, exit=exit_, size=size)


@pytest.mark.parametrize("view", [
    ap_view(size=(48, 40), pixel_spacing=(1.5, 1.5), source_to_detector=600, source_to_isocenter=400),
    ap_view(size=(48, 40), pixel_spacing=(1.5, 1.5), source_to_detector=600, source_to_isocenter=400,
            rotation_deg=-70, name="OBL"),
], ids=["AP", "oblique"])
def test_linear_field_is_integrated_exactly(view):
    volume = ramp_volume()
    with torch.no_grad():
        drr = render_attenuation(volume, [view])[0, 0].numpy()
    ref = exact_integrals(volume, view)
    hits = ref["hits"]
    assert hits.sum() > 200 and (~ref["reach"]).sum() > 20  # the test covers hits and misses
    assert np.all(drr[~ref["reach"]] == 0.0)
    # The renderer's slice axis: rays entering and leaving through its two faces are integrated exactly...
    d = view.pixel_to_world(24, 20) - view.source
    axis = int(np.argmax(np.abs(np.linalg.inv(volume.ijk_to_ras)[:3, :3] @ d)))
    through = hits & (ref["entry_axis"] == axis) & (ref["exit_axis"] == axis)
    # ... where the chord stays sideways within the voxel centres' range [0, n-1], where interpolation
    # equals the linear field (over the outer half voxel the renderer holds the edge value).
    for side in [a for a in range(3) if a != axis]:
        ends = np.stack([ref["entry"][..., side], ref["exit"][..., side]])
        through &= (ends.min(axis=0) >= 0) & (ends.max(axis=0) <= ref["size"][side] - 1)
    assert through.sum() > 100
    assert np.allclose(drr[through], ref["exact"][through], rtol=1e-9, atol=1e-12)
    # Elsewhere the boundary costs at most about one slice step of the largest attenuation.
    mu_max = float(volume.data.max())
    assert np.all(np.abs(drr - ref["exact"])[hits] <= mu_max * 2 * np.max(volume.spacing) * 1.8)


def test_pose_equals_moving_the_volume():
    volume = ramp_volume()
    angle = math.radians(15)
    pose = np.eye(4)
    pose[:3, :3] = [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
    pose[:3, 3] = [3.0, -4.0, 5.0]
    moved = type(volume)(volume.data, pose @ volume.ijk_to_ras)
    views = biplanar_rig(size=(32, 32), pixel_spacing=(2.0, 2.0), source_to_detector=700, source_to_isocenter=450)
    with torch.no_grad():
        a = render_attenuation(volume, views, poses=pose)
        b = render_attenuation(moved, views)
    assert a.abs().sum() > 0 and torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_batched_equals_looped():
    volume = ramp_volume(torch.float32)
    views = biplanar_rig(size=(24, 20), pixel_spacing=(2.5, 2.5), source_to_detector=700, source_to_isocenter=450)
    rng = np.random.default_rng(3)
    poses = np.repeat(np.eye(4)[None], 4, axis=0)
    poses[:, :3, 3] = rng.uniform(-8, 8, size=(4, 3))
    with torch.no_grad():
        batched = render_attenuation(volume, views, poses=poses)
        for n in range(4):
            for v in range(2):
                single = render_attenuation(volume, [views[v]], poses=poses[n])[0, 0]
                assert torch.allclose(batched[n, v], single, rtol=1e-5, atol=1e-5)  # float32 rounding
    assert batched.shape == (4, 2, 20, 24) and batched.abs().sum() > 0
    assert not torch.allclose(batched[0], batched[1])  # the poses really differ


def test_gradient_with_respect_to_translation_matches_finite_differences():
    k, j, i = np.indices((16, 18, 20), dtype=float)
    blob = np.exp(-(((i - 9.5) / 4) ** 2 + ((j - 8.5) / 3) ** 2 + ((k - 7.5) / 3.5) ** 2)) * 0.05
    matrix = np.diag([2.0, 2.0, 2.0, 1.0])
    matrix[:3, 3] = [-19.0, -17.0, -15.0]
    volume = Volume.from_numpy(blob, matrix, dtype=torch.float64)
    view = ap_view(size=(16, 16), pixel_spacing=(3.0, 3.0), source_to_detector=500, source_to_isocenter=350)
    weights = torch.linspace(-1, 1, 256, dtype=torch.float64).reshape(16, 16)

    def loss(shift):
        pose = torch.eye(4, dtype=torch.float64).index_put(
            (torch.tensor([0, 1, 2]), torch.tensor([3, 3, 3])), shift)
        return (render_attenuation(volume, [view], poses=pose)[0, 0] * weights).sum()

    shift = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(loss(shift), shift)
    eps = 1e-4
    numeric = []
    for axis in range(3):
        delta = torch.zeros(3, dtype=torch.float64)
        delta[axis] = eps
        numeric.append((loss(shift.detach() + delta) - loss(shift.detach() - delta)) / (2 * eps))
    assert torch.allclose(grad, torch.stack(numeric), rtol=1e-3, atol=1e-7)
    assert grad.abs().max() > 1e-4


def test_cropping_air_changes_nothing():
    data = np.zeros((30, 40, 50))
    data[10:18, 12:30, 20:35] = 0.02
    volume = Volume.from_numpy(data, oblique_matrix(), dtype=torch.float64)
    cropped = volume.crop_to_content()
    assert tuple(cropped.data.shape) == (10, 20, 17)
    views = biplanar_rig(size=(40, 40), pixel_spacing=(2.0, 2.0), source_to_detector=700, source_to_isocenter=450)
    with torch.no_grad():
        full, small = render_attenuation(volume, views), render_attenuation(cropped, views)
    assert full.abs().sum() > 0 and torch.allclose(full, small, atol=1e-12)


def test_hu_to_mu():
    water, bone = attenuation_coefficients(60.0)
    assert water == pytest.approx(0.02059, rel=1e-6) and bone == pytest.approx(1.92 * 0.03148, rel=1e-6)
    hu = np.array([-1000.0, -500.0, 0.0, 1900.0, 3000.0])
    mu = hu_to_mu(hu)
    assert mu[0] == 0 and mu[1] == pytest.approx(water / 2) and mu[2] == pytest.approx(water)
    assert mu[3] == pytest.approx(bone) and np.all(np.diff(mu) > 0)
    assert torch.allclose(hu_to_mu(torch.tensor(hu)), torch.tensor(mu))
    low, _ = attenuation_coefficients(40.0)
    assert low > water  # softer beams attenuate more
    with pytest.raises(InputError, match="40-100 keV"):
        attenuation_coefficients(150.0)


def test_radiograph_is_bright_where_attenuation_is_high():
    attenuation = torch.tensor([[0.2, 0.5, 2.0]])
    image = radiograph_from_attenuation(attenuation)
    assert torch.allclose(image, attenuation / 2.0) and image[0, 2] > image[0, 1] > image[0, 0]
    assert torch.allclose(radiograph_from_attenuation(attenuation, window=1.0, gamma=2.0),
                          torch.tensor([[0.04, 0.25, 1.0]]))
    noisy = radiograph_from_attenuation(attenuation.expand(4000, 3), window=4.0, photons=2000.0,
                                        generator=torch.Generator().manual_seed(0))
    # -log of Poisson counts: unbiased to O(1/photons); its spread is 1/sqrt(photons * transmission)
    assert torch.allclose(noisy.mean(dim=0), attenuation[0] / 4.0, atol=0.003)
    expected_std = 1 / torch.sqrt(2000.0 * torch.exp(-attenuation[0])) / 4.0
    assert torch.allclose(noisy.std(dim=0), expected_std, rtol=0.1)
    with pytest.raises(InputError, match="window"):
        radiograph_from_attenuation(attenuation, window=0.0)


def test_bad_volumes_and_views():
    with pytest.raises(InputError, match="no valid voxel spacing"):
        Volume.from_numpy(np.zeros((2, 2, 2)), np.diag([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(InputError, match="must be 3D"):
        Volume.from_numpy(np.zeros((2, 2)), np.eye(4))
    singular = np.eye(4)
    singular[2, 2] = 0.0
    with pytest.raises(InputError, match="Pose 1 is not a finite, invertible"):
        render_attenuation(ramp_volume(), [ap_view(size=(10, 10))], poses=np.stack([np.eye(4), singular]))
    views = [ap_view(size=(10, 10)), ap_view(size=(12, 10), name="B")]
    with pytest.raises(InputError, match="same detector size"):
        render_attenuation(ramp_volume(), views)


def test_label_images_sum_to_the_whole_drr():
    from BoneReconLib.drr import render_labels

    volume = ramp_volume()
    k, j, i = np.indices(SHAPE_KJI)
    labels = np.where(i < 15, 1, np.where(j < 12, 2, 3))  # three labels that partition the volume
    labels[5:9, 20:25, 30:36] = 7
    views = biplanar_rig(size=(32, 28), pixel_spacing=(2.0, 2.0), source_to_detector=700, source_to_isocenter=450)
    with torch.no_grad():
        parts = render_labels(volume, labels, [1, 2, 3, 7], views)
        whole = render_attenuation(volume, views)
    assert parts.shape == (4, 1, 2, 28, 32)
    assert torch.allclose(parts.sum(dim=0), whole, rtol=1e-9, atol=1e-9)
    assert all(float(parts[n].sum()) > 0 for n in range(4))
    # label 7 is a small box: its image is zero away from the box's shadow
    assert float((parts[3] > 0).double().mean()) < 0.2
    with pytest.raises(InputError, match="Label 5 is absent"):
        render_labels(volume, labels, [5], views)
