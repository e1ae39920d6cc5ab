"""Cortical shell and cancellous interior: the inner surface of a sphere, a shelled bone in a skin
envelope against analytic chords, sampled densities in range, impossible densities refused."""

import numpy as np
import pytest
import torch
from BoneReconLib.bone_density import SOFT_TISSUE_HU, BoneDensity, inner_surface, sample_density
from BoneReconLib.drr import hu_to_mu
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import ap_view
from BoneReconLib.limb_radiograph import Bone, render_limb
from meshes import ellipsoid


def test_inner_surface_is_the_sphere_shrunk_by_the_thickness():
    points, triangles = ellipsoid(theta=80, phi=80, radii=(10.0,) * 3)
    inner = inner_surface(torch.as_tensor(points), torch.as_tensor(triangles), 1.5).numpy()
    assert np.linalg.norm(inner, axis=1) == pytest.approx(8.5, abs=1e-3)
    flipped = inner_surface(torch.as_tensor(points), torch.as_tensor(triangles[:, ::-1].copy()), 1.5).numpy()
    assert flipped == pytest.approx(inner)  # the orientation of the triangles does not matter


def test_a_shelled_bone_in_its_skin_matches_the_analytic_chords():
    bone_r, skin_r, shell = 10.0, 18.0, 1.5
    bone = Bone("ball", *ellipsoid(theta=160, phi=160, radii=(bone_r,) * 3))
    skin = ellipsoid(theta=160, phi=160, radii=(skin_r,) * 3)
    density = BoneDensity(cancellous_hu=250.0, cortical_hu=1500.0, cortical_mm=shell)
    view = ap_view(size=(81, 81), pixel_spacing=(0.5, 0.5), source_to_detector=4000.0, source_to_isocenter=3900.0)
    images = render_limb([bone], skin, [view], density=density)
    mu_s, mu_c, mu_k = (float(hu_to_mu(np.float64(h))) for h in (SOFT_TISSUE_HU, 250.0, 1500.0))
    chord = lambda radius, r: 2 * np.sqrt(max(radius ** 2 - r ** 2, 0.0))  # noqa: E731
    for offset in (0, 8, 16, 19, 30):
        r = offset * 0.5 * 3900.0 / 4000.0
        outer, inner = chord(bone_r, r), chord(bone_r - shell, r)
        expected = mu_s * (chord(skin_r, r) - outer) + mu_c * inner + mu_k * (outer - inner)
        assert float(images.attenuation[0, 40, 40 + offset]) == pytest.approx(expected, rel=0.01, abs=1e-4), offset
    # Depth maps stay those of the outer surface.
    assert float(images.depth.thickness[0, 0, 40, 40]) == pytest.approx(2 * bone_r, rel=1e-3)
    uniform = render_limb([bone], skin, [view])
    assert torch.equal(uniform.mask, images.mask) and torch.equal(uniform.bone_id, images.bone_id)


def test_sampled_densities_are_in_range_and_bad_ones_refused():
    draws = [sample_density(np.random.default_rng(k)) for k in range(100)]
    assert min(d.cancellous_hu for d in draws) >= 120 and max(d.cortical_hu for d in draws) <= 1600
    assert all(0.5 <= d.cortical_mm <= 1.2 for d in draws)
    with pytest.raises(InputError, match="cancellous < cortical"):
        BoneDensity(cancellous_hu=900.0, cortical_hu=800.0)
    with pytest.raises(InputError, match="cortical thickness"):
        BoneDensity(cortical_mm=0.0)
