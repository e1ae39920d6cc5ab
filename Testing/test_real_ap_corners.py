"""Annotated real AP radiographs (AASCE format): reading, the fixed split, samples whose corner
landmarks sit on the corners in the resampled picture, and fine-tuning with them."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from BoneReconLib.biplanar_training import train_biplanar
from BoneReconLib.errors import InputError
from BoneReconLib.real_ap_corners import (
    CORNER_NAMES,
    RealAPSamples,
    corner_indices,
    read_annotated_ap,
    split_of,
)

NAMES = ["a", "body left superior", "body left inferior", "body right superior", "body right inferior", "b"]


def _write_folder(folder, count=5, size=(120, 300)):
    """AASCE-format folder: per image, T1-L5 corners (L1-L5 drawn as bright 3 x 3 dots); returns them."""
    (folder / "images").mkdir(parents=True)
    width, height = size
    rng = np.random.default_rng(4)
    names, rows, truths = [], [], []
    for n in range(count):
        corners = np.zeros((17, 4, 2))
        for v in range(17):
            top = 10 + 16 * v + rng.uniform(-2, 2)
            left = 40 + rng.uniform(-3, 3)
            corners[v] = [[left, top], [left + 36, top + 1], [left + 1, top + 12], [left + 35, top + 13]]
        picture = np.repeat(np.linspace(0, 100, height, dtype=np.uint8)[:, None], width, axis=1)  # a ramp
        for i, j in np.rint(corners[-5:].reshape(-1, 2)).astype(int):
            picture[j - 1:j + 2, i - 1:i + 2] = 255
        name = f"image {n}.png"
        sitk.WriteImage(sitk.GetImageFromArray(picture), str(folder / "images" / name))
        names.append(name)
        normalised = (np.rint(corners) + 0.5) / [width, height]  # pixel centres -> normalised edges
        rows.append(np.concatenate([normalised[..., 0].ravel(), normalised[..., 1].ravel()]))
        truths.append(np.rint(corners))
    (folder / "filenames.csv").write_text("\n".join(names) + "\n")
    np.savetxt(folder / "landmarks.csv", np.array(rows), delimiter=",")
    return truths


def test_fixed_split_keeps_every_fourth_image_for_the_report():
    splits = [split_of(row) for row in range(24)]
    assert [row for row, s in enumerate(splits) if s == "report"] == [0, 4, 8, 12, 16, 20]
    assert [row for row, s in enumerate(splits) if s == "validation"] == [2, 14]
    assert splits.count("train") == 16


def test_corners_read_back_and_map_to_named_landmarks(tmp_path):
    truths = _write_folder(tmp_path / "ap")
    items = read_annotated_ap(tmp_path / "ap")
    assert [item.row for item in items] == [0, 1, 2, 3, 4]
    for item, truth in zip(items, truths):
        assert item.corners == pytest.approx(truth[-5:], abs=1e-6)
        assert item.spine == pytest.approx(truth, abs=1e-6)  # T1..L5, in order
    assert [item.row for item in read_annotated_ap(tmp_path / "ap", "train")] == [1, 3]
    index = corner_indices(NAMES)
    # Image top-left is the patient's right superior corner (AP: the patient faces the viewer).
    assert NAMES[index[0, 0]] == CORNER_NAMES[0] == "body right superior"
    assert index[2, 1] == 2 * len(NAMES) + NAMES.index("body left superior")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "filenames.csv").write_text("x.jpg\n")
    (tmp_path / "bad" / "landmarks.csv").write_text("0.1,0.2\n")
    with pytest.raises(InputError, match="must hold 136 values"):
        read_annotated_ap(tmp_path / "bad")


def test_samples_put_corner_landmarks_on_the_drawn_corners(tmp_path):
    _write_folder(tmp_path / "ap")
    samples = RealAPSamples(tmp_path / "ap", "train", NAMES, reference_width_mm=50.0, augment=True, seed=3, size=128)
    item = samples.items[0]
    assert samples.spacing_mm(item) * item.width_px() == pytest.approx(50.0)
    for index in range(len(samples)):
        sample = samples[index]
        assert float(sample["decomposition_weight"]) == 0.0
        picture = sample["image"][0]
        keep = sample["weight"] > 0
        assert int(keep.sum()) == 20  # the L1-L5 corners, all inside the field
        for i, j in sample["landmarks"][keep].numpy():
            r, c = int(round(j)), int(round(i))
            patch = picture[r - 2:r + 3, c - 2:c + 3]
            assert float(patch.max()) > float(picture.mean()) + 2 * float(picture.std())  # a bright dot is there


def test_fine_tuning_mixes_real_radiographs_and_validates_on_them(tmp_path, tiny_lumbar):
    _write_folder(tmp_path / "ap", count=12)
    history = train_biplanar(tiny_lumbar, tmp_path / "run", steps=2, batch_size=2, validate_every=2,
                             size=128, real_ap=tmp_path / "ap")
    assert np.isfinite(history["validation"][-1]["corner_mm_real_AP"])
    assert history["settings"]["real_ap"] == str((tmp_path / "ap").resolve())
    # Fine-tuning from those weights starts exactly there.
    tuned = train_biplanar(tiny_lumbar, tmp_path / "tuned", steps=1, batch_size=2, validate_every=1,
                           size=32, init=tmp_path / "run" / "best.pt", learning_rate=1e-12)
    start = torch.load(tmp_path / "run" / "best.pt", weights_only=False)["model"]
    end = torch.load(tmp_path / "tuned" / "checkpoint.pt", weights_only=False)["model"]
    for key, value in start.items():
        assert torch.allclose(end[key].float(), value.float(), atol=1e-6), key
    assert tuned["settings"]["init"] == str((tmp_path / "run" / "best.pt").resolve())
    with pytest.raises(InputError, match="at least 2"):
        train_biplanar(tiny_lumbar, tmp_path / "r3", steps=1, batch_size=1, size=32, real_ap=tmp_path / "ap")


def test_real_radiographs_per_batch_is_chosen_and_checked(tmp_path, tiny_lumbar, monkeypatch):
    _write_folder(tmp_path / "ap", count=12)
    drawn = []
    original = RealAPSamples.__getitem__

    def counted(self, index):
        if self.augment:  # the training rows (validation rows are not augmented)
            drawn.append(index)
        return original(self, index)

    monkeypatch.setattr(RealAPSamples, "__getitem__", counted)
    history = train_biplanar(tiny_lumbar, tmp_path / "run", steps=2, batch_size=3, validate_every=2, size=32,
                             real_ap=tmp_path / "ap", real_per_batch=2)
    assert len(drawn) == 4 and drawn[0] != drawn[1] and drawn[2] != drawn[3]  # two different ones per step
    assert history["settings"]["real_per_batch"] == 2
    for bad in (0, 3):
        with pytest.raises(InputError, match="per batch must be from 1 to 2"):
            train_biplanar(tiny_lumbar, tmp_path / f"bad{bad}", steps=1, batch_size=3, size=32,
                           real_ap=tmp_path / "ap", real_per_batch=bad)
