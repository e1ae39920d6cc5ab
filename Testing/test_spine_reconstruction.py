"""The biplanar pipeline on a synthetic case's true per-vertebra images and landmarks: every level is
placed and registered; a level without landmarks in one view is reported, not invented."""

import numpy as np

from BoneReconLib.dataset_store import CaseDataset
from BoneReconLib.geometry import View
from BoneReconLib.shape_correspondence import surface_distance
from BoneReconLib.spine_alignment import LEVELS
from BoneReconLib.spine_reconstruction import reconstruct_spine


def test_true_inputs_give_every_level_and_a_missing_level_is_reported(tiny_lumbar, bundled_models):
    case = CaseDataset(tiny_lumbar, None)[1]
    views = [View.from_dict(v) for v in case["meta"]["geometry"]["views"]]
    names = case["meta"]["landmark_names"]
    ij = case["landmarks_ij"].numpy()
    landmarks = [[dict(vertebra=level, name=name, i=float(p[0]), j=float(p[1]), confidence=1.0)
                  for level, per in zip(LEVELS, ij[v]) for name, p in zip(names, per)] for v in range(2)]
    for m in landmarks[1][2 * 19:3 * 19]:
        m["confidence"] = 0.05  # L3 not found in the lateral view
    images = [case["decomposition"][:, v].float().numpy() for v in range(2)]
    result = reconstruct_spine(bundled_models, views, images, landmarks, LEVELS, modes=2, levels_of_detail=(2,),
                               generations=(6,))
    assert sorted(result.points) == ["L1", "L2", "L4", "L5"]
    assert result.messages[0].startswith("L3: too few landmarks")
    assert set(result.seconds) == {"initialisation", "registration"}
    assert set(result.overlap_mm) == {"L1-L2", "L4-L5"}  # neighbours both reconstructed; L3 is missing
    deep = [segment for segment, depth in result.overlap_mm.items() if depth > 3.0]
    assert [m.split(":")[0] for m in result.messages[1:] if "into each other" in m] == deep
    for level, points in result.points.items():
        truth = case[f"vertices_{level}"].numpy()
        error = surface_distance(points, bundled_models[level].triangles, truth, bundled_models[level].triangles)
        assert error < 2.0, (level, error)
        assert np.isfinite(result.results[level].cost)


def test_no_level_to_reconstruct_gives_an_empty_result(tiny_lumbar, bundled_models):
    """The pipeline passes only the levels the network found; when it found none, nothing is placed."""
    case = CaseDataset(tiny_lumbar, None)[1]
    views = [View.from_dict(v) for v in case["meta"]["geometry"]["views"]]
    images = [case["decomposition"][:0, v].float().numpy() for v in range(2)]
    result = reconstruct_spine(bundled_models, views, images, [[], []], [], modes=2, levels_of_detail=(2,),
                               generations=(6,))
    assert result.points == {} and result.results == {} and result.messages == [] and result.overlap_mm == {}
    assert result.initialisation.poses == {}
