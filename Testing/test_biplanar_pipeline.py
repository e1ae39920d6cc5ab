"""The biplanar chain's input checks, working resolution, view picking and measured-level choice."""

import numpy as np
import pytest

from BoneReconLib.biplanar_command import pick_views
from BoneReconLib.biplanar_pipeline import _working_resolution, check_views
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import View, ap_view, biplanar_rig
from BoneReconLib.spine_measurements import consecutive_levels


def _images(views):
    return [np.zeros((v.size[1], v.size[0]), dtype=np.float32) for v in views]


def test_matching_views_pass():
    views = biplanar_rig(size=(200, 160))
    check_views(_images(views), views)


def test_image_size_must_match_its_view():
    views = biplanar_rig(size=(200, 160))
    images = _images(views)
    with pytest.raises(InputError, match="LAT radiograph is 160x200 pixels but its geometry describes a 200x160"):
        check_views([images[0], images[1].T], views)


def test_nearly_parallel_views_are_refused():
    views = biplanar_rig(angle_deg=10.0)
    with pytest.raises(InputError, match="only 10 degrees apart"):
        check_views(_images(views), views)


def test_views_that_do_not_overlap_are_refused():
    ap = ap_view()
    lat = ap_view(rotation_deg=-90.0, isocenter=(0.0, 0.0, 600.0), name="LAT")  # 60 cm higher up
    with pytest.raises(InputError, match="do not overlap"):
        check_views(_images([ap, lat]), [ap, lat])


def test_working_resolution_keeps_every_landmark_on_its_ray():
    """Block-averaged views: a 3D point's landmark, moved to the coarse pixels, is where the coarse
    view projects it; the image's total per area is kept."""
    views = biplanar_rig(size=(300, 240), pixel_spacing=(0.5, 0.5))
    rng = np.random.default_rng(0)
    points = rng.uniform(-40, 40, (6, 3))
    landmarks = []
    for view in views:
        ij, _ = view.project(points)
        landmarks.append([dict(i=float(a), j=float(b), confidence=1.0) for a, b in ij])
    images = [rng.uniform(0, 1, (5, 240, 300)) for _ in views]
    small_views, small_images, small_marks = _working_resolution(views, images, landmarks, 1.5)
    for view, small, marks, image, small_image in zip(views, small_views, small_marks, images, small_images):
        assert small.pixel_spacing == pytest.approx([1.5, 1.5]) and small.size == (100, 80)
        assert small_image.shape == (5, 80, 100)
        assert small_image.mean() == pytest.approx(image.mean(), rel=1e-9)
        ij, _ = small.project(points)
        assert np.array([[m["i"], m["j"]] for m in marks]) == pytest.approx(ij, abs=1e-9)
    same = _working_resolution(views, images, landmarks, 0.6)  # already finer than twice 0.6 mm: untouched
    assert same[0] is views and same[1] is images


def test_measured_levels_are_the_longest_converged_run():
    levels = ["L1", "L2", "L3", "L4", "L5"]
    assert consecutive_levels(levels, ["L1", "L2", "L4", "L5", "L3"]) == levels
    assert consecutive_levels(levels, ["L1", "L3", "L4", "L5"]) == ["L3", "L4", "L5"]
    assert consecutive_levels(levels, ["L2", "L4"]) == ["L2"]
    assert consecutive_levels(levels, []) == []


def test_views_are_picked_by_name_or_order():
    ap, lat = biplanar_rig()
    renamed = [View.from_dict(dict(lat.to_dict(), name="lateral")), View.from_dict(dict(ap.to_dict(), name="PA"))]
    assert [v.name for v in pick_views(renamed)] == ["PA", "lateral"]
    unnamed = [View.from_dict(dict(v.to_dict(), name=f"view {k}")) for k, v in enumerate((ap, lat))]
    assert pick_views(unnamed) == unnamed
    with pytest.raises(InputError, match="must hold the AP and the lateral view"):
        pick_views([ap])
    with pytest.raises(InputError, match="2 views named like 'AP'"):
        pick_views([ap, ap, lat])
