"""Lumbar dataset folders: the same cases from the same seed, readable through the torch Dataset, a
cancelled generation that resumes, and the command line with its bad input."""

import json

import numpy as np
import pytest

from BoneReconLib.cli import main
from BoneReconLib.dataset_store import CaseDataset, read_manifest
from BoneReconLib.errors import InputError
from BoneReconLib.lumbar_dataset import generate_lumbar_dataset
from BoneReconLib.progress import Cancelled
from BoneReconLib.sample_data import SAMPLE_CT, SAMPLE_VERTEBRA_LABELS




def arrays_of(folder, case):
    with np.load(folder / "cases" / f"{case}.npz") as data:
        return {key: data[key] for key in data.files}


def test_same_seed_same_cases_and_a_cancelled_run_resumes(tmp_path, spine_background, bundled_models):
    manifest = generate_lumbar_dataset(tmp_path / "a", [spine_background], bundled_models, 4, seed=7, size=(48, 48))
    assert [c["id"] for c in manifest["cases"]] == [f"case-{n:05d}" for n in range(4)]
    assert {c["subject"] for c in manifest["cases"]} == {c["id"] for c in manifest["cases"]}  # a shape per case

    calls = []

    def cancel_after_two(fraction, message):
        calls.append(message)
        if len(calls) == 2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        generate_lumbar_dataset(tmp_path / "b", [spine_background], bundled_models, 4, seed=7, size=(48, 48),
                                progress=cancel_after_two)
    assert len(list((tmp_path / "b" / "cases").glob("*.npz"))) == 2
    generate_lumbar_dataset(tmp_path / "b", [spine_background], bundled_models, 4, seed=7, size=(48, 48))
    for n in range(4):
        first, second = arrays_of(tmp_path / "a", f"case-{n:05d}"), arrays_of(tmp_path / "b", f"case-{n:05d}")
        assert sorted(first) == sorted(second)
        for key in first:
            assert np.array_equal(first[key], second[key]), key
    other = arrays_of(tmp_path / "a", "case-00001")
    assert not np.array_equal(other["landmarks"], arrays_of(tmp_path / "a", "case-00000")["landmarks"])

    dataset = CaseDataset(tmp_path / "a", split=None)
    item = dataset[0]
    assert tuple(item["image"].shape) == (2, 48, 48)
    assert tuple(item["decomposition"].shape) == (5, 2, 48, 48)
    assert tuple(item["landmarks_ij"].shape) == (2, 5, 19, 2)
    meta = item["meta"]
    assert [v["name"] for v in meta["geometry"]["views"]] == ["AP", "LAT"]
    assert set(meta["facet_overlap_mm"]) == {"L1-L2", "L2-L3", "L3-L4", "L4-L5"}
    assert len(meta["landmark_names"]) == 19


def test_worker_processes_draw_the_same_cases_and_resume_a_folder(tmp_path, spine_background, bundled_models):
    settings = dict(seed=3, size=(40, 40))
    generate_lumbar_dataset(tmp_path / "alone", [spine_background], bundled_models, 3, **settings)
    generate_lumbar_dataset(tmp_path / "helped", [spine_background], bundled_models, 1, **settings)
    (tmp_path / "helped" / "manifest.json").unlink()  # an unfinished folder holding case 0
    lines = []
    manifest = generate_lumbar_dataset(tmp_path / "helped", [spine_background], bundled_models, 3, workers=2,
                                       progress=lambda fraction, message: lines.append(message), **settings)
    assert lines == ["case 2 of 3", "case 3 of 3"] and len(manifest["cases"]) == 3
    for n in range(3):
        alone, helped = arrays_of(tmp_path / "alone", f"case-{n:05d}"), arrays_of(tmp_path / "helped", f"case-{n:05d}")
        assert sorted(alone) == sorted(helped)
        assert json.loads(str(alone.pop("meta")))["geometry"] == json.loads(str(helped.pop("meta")))["geometry"]
        for key in alone:  # one torch thread per worker: sums may differ in the last bits
            assert np.allclose(alone[key], helped[key], rtol=1e-5, atol=1e-6), key
    with pytest.raises(InputError, match="cannot be negative"):
        generate_lumbar_dataset(tmp_path / "bad", [spine_background], bundled_models, 1, workers=-1, **settings)


def test_command_line_writes_a_dataset_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "lumbar"
    code = main(["--quiet", "dataset", "lumbar", "--out", str(out), "--background", str(SAMPLE_CT),
                 str(SAMPLE_VERTEBRA_LABELS), "--cases", "2", "--size", "32", "--seed", "3"])
    assert code == 0
    manifest = read_manifest(out)
    assert manifest["kind"] == "lumbar-biplanar" and len(manifest["cases"]) == 2
    assert set(manifest["description"]["shape_models"]) == {"L1", "L2", "L3", "L4", "L5"}
    assert "cases/min" in capsys.readouterr().out

    bad = tmp_path / "bad"
    code = main(["--quiet", "dataset", "lumbar", "--out", str(bad), "--background", str(SAMPLE_CT),
                 str(SAMPLE_VERTEBRA_LABELS), "--label-table", "verse", "--cases", "2"])
    assert code == 2 and not bad.exists()
    assert "label table" in capsys.readouterr().err
    code = main(["--quiet", "dataset", "lumbar", "--out", str(bad), "--background", str(SAMPLE_CT),
                 str(SAMPLE_VERTEBRA_LABELS), "--background", str(SAMPLE_CT), str(SAMPLE_VERTEBRA_LABELS)])
    assert code == 2 and not bad.exists()
    assert "same file name" in capsys.readouterr().err
    code = main(["--quiet", "dataset", "lumbar", "--out", str(out), "--background", str(SAMPLE_CT),
                 str(SAMPLE_VERTEBRA_LABELS), "--cases", "2", "--size", "32"])
    assert code == 2 and "already holds a finished dataset" in capsys.readouterr().err


def test_shapes_beyond_the_span_are_model_instances_plus_their_stored_free_form_field(tmp_path, bundled_models):
    from BoneReconLib.shape_refinement import model_deformation

    out = tmp_path / "beyond"
    code = main(["--quiet", "dataset", "lumbar", "--out", str(out), "--background", str(SAMPLE_CT),
                 str(SAMPLE_VERTEBRA_LABELS), "--cases", "2", "--size", "32", "--seed", "5",
                 "--beyond-span-mm", "1.5", "--fractions", "0", "0", "1"])
    assert code == 0
    manifest = read_manifest(out)
    assert {c["split"] for c in manifest["cases"]} == {"test"}
    assert manifest["description"]["beyond_span_mm"] == 1.5
    arrays = arrays_of(out, "case-00000")
    for n, level in enumerate(["L1", "L2", "L3", "L4", "L5"]):
        model = bundled_models[level]
        pose = arrays["poses"][n]
        in_model_frame = (arrays[f"vertices_{level}"] - pose[:3, 3]) @ pose[:3, :3]
        instance = model.instances(arrays[f"coefficients_{level}"].astype(np.float64)).numpy()[0]
        field = model_deformation(model, amplitude_mm=1.5).displacements(arrays[f"free_form_{level}"][None]).numpy()[0]
        assert np.abs(field).mean() > 0.3  # a field of about a millimetre, not nothing
        assert np.allclose(in_model_frame, instance + field, atol=2e-3), level
    code = main(["--quiet", "dataset", "lumbar", "--out", str(tmp_path / "bad"), "--background", str(SAMPLE_CT),
                 str(SAMPLE_VERTEBRA_LABELS), "--beyond-span-mm", "-1"])
    assert code == 2 and not (tmp_path / "bad").exists()
