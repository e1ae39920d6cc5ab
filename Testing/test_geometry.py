"""Projection geometry: round trips, known answers, triangulation, JSON, validation."""

import json
import math

import numpy as np
import pytest
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import (
    View, ap_view, biplanar_rig, geometry_json, load_geometry, save_geometry, triangulate, views_from_json_text,
)


def oblique_view(name="OBL"):
    """A rotated, off-centre detector with anisotropic pixels and a flipped v (no display convention)."""
    angle = math.radians(25)
    u = [math.cos(angle), math.sin(angle), 0.0]
    return View(name, source=[30.0, 700.0, 15.0], detector_center=[-40.0, -350.0, 60.0],
                detector_u=u, detector_v=[0.0, 0.0, -1.0], pixel_spacing=[0.7, 1.3], size=[300, 200])


def test_pixel_centre_formula_of_the_contract():
    view = ap_view(size=(5, 4), pixel_spacing=(2.0, 3.0))
    # centre = c + (i - (nu-1)/2) su u + (j - (nv-1)/2) sv v
    expected = view.detector_center + (3 - 2.0) * 2.0 * view.detector_u + (0 - 1.5) * 3.0 * view.detector_v
    assert np.allclose(view.pixel_to_world(3, 0), expected)
    assert view.shape == (4, 5)


def test_ap_view_layout():
    view = ap_view(source_to_detector=1000, source_to_isocenter=800)
    assert np.allclose(view.source, [0, 800, 0]) and np.allclose(view.detector_center, [0, -200, 0])
    assert np.allclose(view.normal, [0, -1, 0]) and view.source_to_detector_distance == pytest.approx(1000)
    # a point on the patient's right projects to the image's left half; superior to the top
    (i, j), _ = view.project(np.array([50.0, 0.0, 40.0]))
    assert i < 127.5 and j < 127.5
    # magnification 1000/800 at the isocentre plane
    (i2, _), _ = view.project(np.array([-40.0, 0.0, 0.0]))
    assert (i2 - 127.5) * 1.0 == pytest.approx(40 * 1000 / 800)


def test_project_backproject_round_trip():
    view = oblique_view()
    rng = np.random.default_rng(0)
    ij = rng.uniform([0, 0], [299, 199], size=(50, 2))
    origins, directions = view.rays(ij[:, 0], ij[:, 1])
    distance = rng.uniform(100, 900, size=50)
    points = origins + distance[:, None] * directions
    back, depth = view.project(points)
    assert np.allclose(back, ij, atol=1e-9)
    assert np.allclose(depth, distance)


def test_points_behind_the_source_do_not_project():
    view = ap_view()
    ij, _ = view.project(np.array([[0, 900.0, 0], [0, 0, 0]]))
    assert np.all(np.isnan(ij[0])) and np.all(np.isfinite(ij[1]))


def test_principal_point_of_an_off_centre_source():
    view = View("PP", source=[10.0, 0.0, 500.0], detector_center=[0.0, 0.0, 0.0], detector_u=[1, 0, 0],
                detector_v=[0, 1, 0], pixel_spacing=[0.5, 0.5], size=[101, 101])
    assert np.allclose(view.principal_point, [50 + 20, 50])
    assert np.allclose(view.normal, [0, 0, -1])


@pytest.mark.parametrize("angle", [90.0, 60.0, 120.0])
def test_triangulation_recovers_known_points(angle):
    views = biplanar_rig(angle_deg=angle, source_to_detector=1100, source_to_isocenter=700,
                         size=(400, 400), pixel_spacing=(0.5, 0.5))
    rng = np.random.default_rng(1)
    for point in rng.uniform(-60, 60, size=(10, 3)):
        pixels = [v.project(point)[0] for v in views]
        result = triangulate(views, pixels)
        assert np.allclose(result.point, point, atol=1e-6)
        assert result.ray_distance_rms < 1e-6 and np.all(result.reprojection_error < 1e-6)


def test_triangulation_residual_reports_inconsistent_points():
    views = biplanar_rig()
    point = np.array([5.0, -10.0, 20.0])
    pixels = [views[0].project(point)[0], views[1].project(point)[0] + np.array([0.0, 4.0])]  # 4 px off in j
    result = triangulate(views, pixels)
    assert 0.5 < result.ray_distance_rms < 4.0
    assert result.reprojection_error.max() > 1.0


def test_triangulation_of_parallel_rays_is_refused():
    view = ap_view()
    with pytest.raises(InputError, match="parallel"):
        triangulate([view, view], [(10, 10), (10, 10)])


def test_lateral_view_is_the_ap_turned_about_the_long_axis():
    ap, lat = biplanar_rig(angle_deg=90)
    assert np.allclose(lat.source, [800, 0, 0]) and np.allclose(lat.normal, [-1, 0, 0])
    assert np.allclose(lat.detector_u, [0, 1, 0]) and np.allclose(lat.detector_v, ap.detector_v)


def test_json_round_trip_keeps_every_field(tmp_path):
    views = [oblique_view(), *biplanar_rig()]
    path = save_geometry(views, tmp_path / "views.json")
    loaded = load_geometry(path)
    assert [v.name for v in loaded] == ["OBL", "AP", "LAT"]
    for a, b in zip(views, loaded):
        for key in ("source", "detector_center", "detector_u", "detector_v", "pixel_spacing"):
            assert np.array_equal(getattr(a, key), getattr(b, key)), key
        assert a.size == b.size
    single = views_from_json_text(json.dumps(views[1].to_dict()))
    assert len(single) == 1 and single[0].name == "AP"


def test_extra_fields_survive_json():
    data = biplanar_rig()[0].to_dict()
    data["comment"] = "calibrated 2026-11-01"
    (view,) = views_from_json_text(json.dumps(data))
    assert json.loads(geometry_json([view]))["views"][0]["comment"] == "calibrated 2026-11-01"


def _ap_dict(**changes):
    data = biplanar_rig()[0].to_dict()
    data.update(changes)
    return json.dumps({"views": [data]})


@pytest.mark.parametrize("changes, message", [
    ({"source": [0, -200, 0]}, "source lies on the detector plane"),
    ({"pixel_spacing": [0.0, 1.0]}, "pixel_spacing must be positive"),
    ({"detector_u": [1, 0, 0.1]}, "detector_u must be a unit vector"),
    ({"detector_v": [0.6, 0, 0.8]}, "detector_u and detector_v must be orthogonal"),
    ({"size": [256.5, 256]}, "size must be two positive integers"),
    ({"size": [0, 256]}, "size must be two positive integers"),
    ({"source": [0, "a", 0]}, "source must be 3 numbers"),
    ({"detector_center": [0, float("nan"), 0]}, "detector_center must be 3 finite numbers"),
])
def test_degenerate_geometry_names_the_bad_field(changes, message):
    with pytest.raises(InputError, match=message):
        views_from_json_text(_ap_dict(**changes))


def test_missing_fields_and_bad_files(tmp_path):
    data = biplanar_rig()[0].to_dict()
    del data["pixel_spacing"]
    with pytest.raises(InputError, match="missing pixel_spacing"):
        views_from_json_text(json.dumps({"views": [data]}))
    with pytest.raises(InputError, match="not valid JSON"):
        views_from_json_text("{views: ")
    with pytest.raises(InputError, match="repeated view names"):
        views_from_json_text(geometry_json([biplanar_rig()[0], biplanar_rig()[0]]))
    with pytest.raises(InputError, match="does not exist"):
        load_geometry(tmp_path / "none.json")
