"""Registration beyond the shape model's span: a shape made of a model instance plus a smooth field
is approached from the instance by gradient steps through the renderer, the projection helper
matches View.project, and a start that cannot be improved is handed back unchanged."""

import numpy as np
import pytest
import torch

from BoneReconLib.free_form_registration import FreeFormSettings, project_centred_mm, refine_beyond_span
from BoneReconLib.geometry import biplanar_rig
from BoneReconLib.mesh_depth import mesh_depth
from BoneReconLib.shape_refinement import model_deformation
from BoneReconLib.vertebra_registration import RegistrationResult, VertebraTarget, _centred_mm


def _target(model, views, points):
    thickness = mesh_depth(torch.as_tensor(points), model.triangles, views).thickness[0].clamp_min(0).numpy()
    marks = model.landmark_positions(torch.as_tensor(points)[None])[0].numpy()
    return VertebraTarget(views, list(thickness), [view.project(marks)[0] for view in views],
                          [np.ones(len(marks))] * 2)


def _start(model):
    return RegistrationResult(np.eye(3), np.zeros(3), 1.0, np.zeros(4), 0.0, np.ones(2), 0.0, True)


def test_projection_in_mm_from_the_detector_centre_matches_the_view():
    views = biplanar_rig(size=(100, 80), pixel_spacing=(0.7, 0.9))
    points = np.array([[10.0, -20.0, 30.0], [-40.0, 5.0, -12.0]])
    for view in views:
        expected = _centred_mm(view.project(points)[0], view)
        assert project_centred_mm(view, torch.as_tensor(points)).numpy() == pytest.approx(expected, abs=1e-9)


def test_a_shape_beyond_the_span_is_approached_and_a_start_at_the_truth_is_kept(bundled_models):
    model = bundled_models["L3"]
    views = biplanar_rig(size=(96, 96), pixel_spacing=(1.0, 1.0))
    deformation = model_deformation(model, 8.0, 1.0)
    weights = np.random.default_rng(3).standard_normal((deformation.n_functions, 3)) * 1.5
    field = deformation.displacements(weights[None]).numpy()[0]
    truth = model.mean + field  # the mean shape (zero coefficients) plus a field no mode can express
    start = _start(model)
    before = np.linalg.norm(start.points(model) - truth, axis=1).mean()
    refined = refine_beyond_span(model, start, _target(model, views, truth),
                                 settings=FreeFormSettings(steps=60, factor=1))
    after = np.linalg.norm(refined.points(model) - truth, axis=1).mean()
    assert refined is not start and refined.displacement is not None
    assert before > 1.0 and after < 0.75 * before, (before, after)
    assert refined.ncc.min() > 0.98 and refined.converged

    at_truth = refine_beyond_span(model, start, _target(model, views, model.mean),
                                  settings=FreeFormSettings(steps=10, factor=1))
    assert at_truth is start  # nothing to gain: the CMA-ES result is handed back as it was


def test_the_refinement_keeps_out_of_a_placed_neighbour(bundled_models):
    """A start at the truth that runs 7 mm into a neighbour already placed (the images and
    landmarks say it is where it is): alone there is nothing to refine; with the neighbour given
    the refinement moves it out, as the CMA-ES cost would."""
    from meshes import ellipsoid

    from BoneReconLib.neighbour_clearance import clearance_of

    model = bundled_models["L3"]
    views = biplanar_rig(size=(96, 96), pixel_spacing=(1.2, 1.2))
    truth = model.mean
    centre = truth.mean(axis=0)
    points, triangles = ellipsoid(radii=(20.0, 20.0, 8.0), centre=(centre[0], centre[1], truth[:, 2].max() - 5.0))
    neighbour = clearance_of(points, triangles)
    start = _start(model)
    depth = lambda result: float(neighbour.depth_inside(result.points(model)[None])[0])  # noqa: E731
    assert depth(start) > 6.0
    target = _target(model, views, truth)
    alone = refine_beyond_span(model, start, target, settings=FreeFormSettings(steps=30, factor=1))
    assert alone is start
    target.neighbours = [neighbour]
    kept_out = refine_beyond_span(model, start, target, settings=FreeFormSettings(steps=30, factor=1))
    assert kept_out is not start and depth(kept_out) < depth(start) - 2.0, depth(kept_out)
