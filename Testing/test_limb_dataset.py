"""Single-view limb datasets: views that frame the limb, cases whose stored geometry reproduces
them, the same dataset from the same seed, and a cancelled generation that resumes."""

import math

import numpy as np
import pytest
import torch
from BoneReconLib.bone_density import BoneDensity
from BoneReconLib.dataset_store import CaseDataset, read_manifest
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import View
from BoneReconLib.limb_dataset import generate_limb_dataset, long_axis, sample_view
from BoneReconLib.limb_radiograph import Bone, render_limb, soft_tissue_envelope
from BoneReconLib.progress import Cancelled
from meshes import ellipsoid


def leg(k):
    return [Bone("femur", *ellipsoid(radii=(10, 10, 60), centre=(0, 0, 65))),
            Bone("tibia", *ellipsoid(radii=(9 + k, 9, 55), centre=(0, 0, -60)))]


SUBJECTS = {f"s{k}": leg(k) for k in range(3)}


def test_sampled_views_frame_the_limb_across_its_long_axis():
    bones = SUBJECTS["s0"]
    axis = long_axis(np.concatenate([b.points for b in bones]))
    rng = np.random.default_rng(0)
    for _ in range(20):
        view = sample_view(bones, rng, size=(64, 128), rotation_deg=30.0, tilt_deg=5.0)
        assert abs(view.normal @ axis) < math.sin(math.radians(5.0)) + 1e-9  # beam across the limb
        assert view.normal[1] < -math.cos(math.radians(31.0))  # from the front, turned at most ~30 degrees
        for bone in bones:
            pixels, _ = view.project(bone.points)
            assert np.all(view.contains(pixels))  # the whole limb is on the detector
    with pytest.raises(InputError, match="front to back"):
        sample_view([Bone("b", *ellipsoid(radii=(5, 40, 5)))], rng)


def test_dataset_cases_are_consistent_and_reproducible(tmp_path):
    manifest = generate_limb_dataset(tmp_path / "a", SUBJECTS, 2, seed=3, size=(48, 64), fractions=(0.34, 0.33, 0.33))
    assert len(manifest["cases"]) == 6 and manifest["cases_per_minute"] > 0
    assert {c["subject"]: c["split"] for c in manifest["cases"]}.__len__() == 3
    again = generate_limb_dataset(tmp_path / "b", SUBJECTS, 2, seed=3, size=(48, 64), fractions=(0.34, 0.33, 0.33))
    first, second = CaseDataset(tmp_path / "a", None), CaseDataset(tmp_path / "b", None)
    for x, y in zip(first, second):
        for key in ("image", "attenuation", "front", "bone_id"):
            assert torch.equal(x[key], y[key])
    case = first[0]
    assert case["image"].shape == (1, 64, 48) and 0.0 <= float(case["image"].min()) <= float(case["image"].max()) <= 1.0
    assert torch.equal(case["mask"], case["thickness"].sum(dim=0) > 0)
    hit = case["thickness"] > 0
    assert torch.all(case["front"][hit] < case["back"][hit])
    # The stored view reproduces the stored line integrals.
    view = View.from_dict(case["meta"]["geometry"]["views"][0])
    bones = SUBJECTS[case["meta"]["subject"]]
    redone = render_limb(bones, soft_tissue_envelope(bones, thickness_mm=8.0), [view],
                         density=BoneDensity(**case["meta"]["density"]))
    assert torch.allclose(redone.attenuation.float(), case["attenuation"], atol=1e-5)
    assert case["meta"]["bones"] == ["femur", "tibia"] and "photons" in case["meta"]["realism"]
    assert again["cases"] == read_manifest(tmp_path / "b")["cases"]


def test_cancelled_generation_resumes_to_the_same_cases(tmp_path):
    def stop_after_three(fraction, message):
        if fraction > 0.5 - 1e-9:
            raise Cancelled()

    with pytest.raises(Cancelled):
        generate_limb_dataset(tmp_path / "d", SUBJECTS, 2, seed=5, size=(32, 32), progress=stop_after_three)
    assert len(list((tmp_path / "d" / "cases").glob("*.npz"))) == 3
    assert not (tmp_path / "d" / "manifest.json").exists()
    generate_limb_dataset(tmp_path / "d", SUBJECTS, 2, seed=5, size=(32, 32))
    generate_limb_dataset(tmp_path / "whole", SUBJECTS, 2, seed=5, size=(32, 32))
    for x, y in zip(CaseDataset(tmp_path / "d", None), CaseDataset(tmp_path / "whole", None)):
        assert x["meta"]["case"] == y["meta"]["case"] and torch.equal(x["image"], y["image"])
    with pytest.raises(InputError, match="at least one subject"):
        generate_limb_dataset(tmp_path / "e", {}, 2)


def test_dataset_limb_command(tmp_path):
    from BoneReconLib.mesh_io import write_surface
    from test_cli import run_cli

    files = {}
    for k in range(2):
        files[k] = [write_surface(b.points, b.triangles, tmp_path / f"s{k}_{b.name}.stl") for b in leg(k)]
    out = tmp_path / "data"
    result = run_cli("-q", "dataset", "limb", "--out", out, "--subject", "knee0", *files[0],
                     "--subject", "knee1", *files[1], "--cases", "2", "--size", "32", "--seed", "7")
    assert result.returncode == 0, result.stderr
    assert "Wrote 4 cases of 2 subjects" in result.stdout
    manifest = read_manifest(out)
    assert sorted({c["subject"] for c in manifest["cases"]}) == ["knee0", "knee1"]
    assert CaseDataset(out, None, verify=True)[0]["meta"]["bones"] == ["s0_femur", "s0_tibia"]
    metres = write_surface(leg(0)[0].points / 1000.0, leg(0)[0].triangles, tmp_path / "metres.stl")
    cases = [(["--subject", "a", metres], "looks like metres"),
             (["--subject", "a"], "give the subject's name, then"),
             (["--subject", "a", tmp_path / "missing.stl"], "missing.stl"),
             (["--subject", "a", files[0][0], "--subject", "a", files[0][1]], "given twice")]
    for extra, message in cases:
        result = run_cli("dataset", "limb", "--out", tmp_path / "bad", *extra)
        assert result.returncode == 2 and message in result.stderr, (extra, result.stderr)
        assert not (tmp_path / "bad").exists()
    again = run_cli("dataset", "limb", "--out", out, "--subject", "knee0", *files[0])
    assert again.returncode == 2 and "already holds a finished dataset" in again.stderr
