"""Dataset folders: cases round-trip exactly, splits never share a subject, unfinished or damaged
folders are refused, an interrupted generation resumes."""

import json

import numpy as np
import pytest
import torch
from BoneReconLib.dataset_store import CaseDataset, DatasetWriter, read_manifest, split_by_subject
from BoneReconLib.errors import InputError


def make_case(rng, n):
    return dict(image=rng.random((2, 16, 16)).astype(np.float32), landmarks=rng.random((19, 2)),
                visible=rng.random(19) > 0.5, level=np.int64(n))


def test_cases_round_trip_and_split_by_subject(tmp_path):
    rng = np.random.default_rng(0)
    writer = DatasetWriter(tmp_path / "data", "test-kind", {"seed": 3, "note": "unit test"})
    written = {}
    for n in range(30):
        subject = f"person{n % 10}"  # three cases of each of ten subjects
        written[f"case{n:03d}"] = (subject, make_case(rng, n))
        writer.add(f"case{n:03d}", subject, written[f"case{n:03d}"][1], {"angle_deg": float(n)})
    manifest = writer.finish(fractions=(0.6, 0.2, 0.2), seed=1)
    assert manifest == read_manifest(tmp_path / "data")
    assert manifest["kind"] == "test-kind" and manifest["description"]["seed"] == 3
    split_of_subject = {}
    for case in manifest["cases"]:
        assert split_of_subject.setdefault(case["subject"], case["split"]) == case["split"]  # one split per subject
    assert sorted(split_of_subject.values()).count("train") == 6
    total = 0
    for split in ("train", "validation", "test"):
        dataset = CaseDataset(tmp_path / "data", split, verify=True)
        total += len(dataset)
        for item in dataset:
            subject, arrays = written[item["meta"]["case"]]
            assert item["meta"]["subject"] == subject and split_of_subject[subject] == split
            for key, value in arrays.items():
                assert item[key].dtype == torch.from_numpy(np.asarray(value)).dtype
                assert np.array_equal(item[key].numpy(), value)
    assert total == 30
    only = CaseDataset(tmp_path / "data", None, keys=["landmarks"])
    assert len(only) == 30 and set(only[0]) == {"landmarks", "meta"}
    with pytest.raises(InputError, match="no array"):
        CaseDataset(tmp_path / "data", None, keys=["depth"])[0]
    loader = torch.utils.data.DataLoader(CaseDataset(tmp_path / "data", "train", keys=["image"]), batch_size=4)
    assert next(iter(loader))["image"].shape == (4, 2, 16, 16)


def test_split_is_deterministic_and_covers_every_asked_split():
    subjects = [f"s{n}" for n in range(7)]
    a = split_by_subject(subjects, (0.8, 0.1, 0.1), seed=4)
    assert a == split_by_subject(reversed(subjects), (0.8, 0.1, 0.1), seed=4)
    assert set(a.values()) == {"train", "validation", "test"} and list(a.values()).count("train") == 5
    assert split_by_subject(subjects, (0.8, 0.1, 0.1), seed=5) != a
    assert set(split_by_subject(subjects, (1.0, 0.0, 0.0)).values()) == {"train"}
    with pytest.raises(InputError, match="three"):
        split_by_subject(subjects, (0.5, 0.5))


def test_unfinished_damaged_and_bad_input(tmp_path):
    rng = np.random.default_rng(1)
    writer = DatasetWriter(tmp_path / "d", "k")
    writer.add("a", "p1", make_case(rng, 0))
    with pytest.raises(InputError, match="not a finished dataset"):
        CaseDataset(tmp_path / "d")
    # A new writer on the same folder resumes: the case already written is kept.
    (tmp_path / "d" / "cases" / "b.npz.partial").write_bytes(b"half a file")
    resumed = DatasetWriter(tmp_path / "d", "k")
    assert resumed.has("a") and not (tmp_path / "d" / "cases" / "b.npz.partial").exists()
    with pytest.raises(InputError, match="already"):
        resumed.add("a", "p1", make_case(rng, 0))
    for case_id, subject, arrays, message in [("x/y", "p", {}, "names"), ("c", "p", {"meta": np.zeros(1)}, "cannot"),
                                              ("c", "p", {"s": np.array(["text"])}, "not numeric")]:
        with pytest.raises(InputError, match=message):
            resumed.add(case_id, subject, arrays)
    resumed.add("b", "p2", make_case(rng, 1))
    manifest = resumed.finish(fractions=(0.5, 0.5, 0.0))
    assert [c["id"] for c in manifest["cases"]] == ["a", "b"]
    with pytest.raises(InputError, match="already holds"):
        DatasetWriter(tmp_path / "d", "k")
    # A changed file is caught when verifying.
    target = tmp_path / "d" / manifest["cases"][0]["file"]
    np.savez_compressed(target, meta=np.array(json.dumps({"case": "a", "subject": "p1"})), image=np.zeros(1))
    dataset = CaseDataset(tmp_path / "d", None, verify=True)
    with pytest.raises(InputError, match="does not match"):
        dataset[0]
    with pytest.raises(InputError, match="Unknown split"):
        CaseDataset(tmp_path / "d", "training")
    with pytest.raises(InputError, match="no cases"):
        DatasetWriter(tmp_path / "empty", "k").finish()
