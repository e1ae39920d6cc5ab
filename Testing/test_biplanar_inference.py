"""Network inference on plain image files: any bit depth and colour, spacing from the header or the
user, MONOCHROME1 shown stored-high-dark; landmarks and per-vertebra images returned in the input's own pixels."""

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from BoneReconLib import biplanar_network
from BoneReconLib.biplanar_inference import INPUT_SPACING_MM, detect, edge_margin_mm
from BoneReconLib.biplanar_network import BiplanarNet
from BoneReconLib.errors import InputError
from BoneReconLib.radiograph_file import read_radiograph
from BoneReconLib.shape_model_library import load_models

NAMES = load_models(levels=["L1"])["L1"].landmark_names  # the found rule fits their layout


def write(array, path, spacing=None, colour=False):
    image = sitk.GetImageFromArray(array, isVector=colour)
    if spacing is not None:
        image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def test_files_of_any_depth_and_colour_become_bone_bright_images(tmp_path):
    ramp = np.tile(np.arange(64, dtype=np.float64), (48, 1))
    sixteen = write((ramp * 1000).astype(np.uint16), tmp_path / "r16.png")
    eight = write((ramp * 4).astype(np.uint8), tmp_path / "r8.jpg")
    colour = write(np.repeat((ramp * 4).astype(np.uint8)[..., None], 3, axis=2), tmp_path / "rgb.png", colour=True)
    nrrd = write(ramp.astype(np.float32), tmp_path / "r.nrrd", spacing=(0.2, 0.3))
    with pytest.raises(InputError, match="carries no pixel spacing"):
        read_radiograph(sixteen)
    for path in (sixteen, eight, colour):
        image = read_radiograph(path, [0.15])
        assert image.pixels.shape == (48, 64) and image.spacing_mm == (0.15, 0.15) and not image.inverted
        assert image.pixels.min() == 0.0 and image.pixels.max() == 1.0
        assert np.all(np.diff(image.pixels[10], axis=0) >= -0.02)  # the ramp keeps its direction
    assert read_radiograph(nrrd).spacing_mm == pytest.approx((0.2, 0.3))
    flat = write(np.full((32, 32), 7, np.uint8), tmp_path / "flat.png")
    with pytest.raises(InputError, match="flat"):
        read_radiograph(flat, [1.0])
    with pytest.raises(InputError, match="positive"):
        read_radiograph(sixteen, [0.0])


def test_monochrome1_dicom_is_shown_as_stored_high_dark():
    """Testing/data/monochrome1.dcm (made with pydicom: 32 x 32, MONOCHROME1, 10 bits; stored 0
    everywhere, 200 in the first 4 columns, 1000 in the centre square): stored high must come out
    dark, stored 0 bright (a reader that inverts once more would show the negative)."""
    image = read_radiograph(Path(__file__).parent / "data" / "monochrome1.dcm", [0.5])
    assert image.inverted
    assert image.pixels[16, 16] == 0.0 and image.pixels[2, 16] == 1.0
    assert image.pixels[16, 0] == pytest.approx(0.8, abs=0.01)


def test_real_monochrome1_radiograph_is_bone_bright(shared_data):
    """RG3_UNCI.dcm (MONOCHROME1 lower leg): the collimated border (no exposure) is bright, the
    bones brighter than the soft tissue beside them."""
    path = shared_data / "xray" / "pydicom" / "RG3_UNCI.dcm"
    with pytest.raises(InputError, match="carries no pixel spacing"):
        read_radiograph(path)
    image = read_radiograph(path, [0.2])
    assert image.inverted
    assert image.pixels[:40, :40].mean() > 0.95  # collimated corner
    assert image.pixels[100:140, 600:1100].max() > image.pixels[100:140, 1250:1300].mean() + 0.2


def test_landmarks_and_decomposition_come_back_in_the_input_pixels(monkeypatch):
    # An untrained network's heatmaps are near-flat noise: their highest pixel (where the inference
    # window is centred) differs between the two resolutions, so this test of the pixel bookkeeping
    # decodes with the plain soft-argmax (the window has its own known-answer test).
    monkeypatch.setattr(biplanar_network, "PEAK_WINDOW_MM", None)
    torch.manual_seed(0)
    model = BiplanarNet().eval()
    rng = np.random.default_rng(0)
    coarse = rng.random((160, 120)).astype(np.float32)
    fine = np.kron(coarse, np.ones((2, 2), np.float32))  # the same picture at half the spacing
    a = detect(model, coarse, (2.0, 2.0), "AP", NAMES)
    b = detect(model, fine, (1.0, 1.0), "AP", NAMES)
    assert len(a.landmarks) == 95 and a.landmarks[19]["vertebra"] == "L2" and a.landmarks[20]["name"] == NAMES[1]
    pa = np.array([[m["i"], m["j"]] for m in a.landmarks])
    pb = np.array([[m["i"], m["j"]] for m in b.landmarks])
    # Pixel centres: coarse (i, j) lies at fine (2i + 0.5, 2j + 0.5); the network saw nearly the same image.
    assert np.median(np.abs(pb - (2 * pa + 0.5))) < 1.0
    assert a.decomposition.shape == (5, 160, 120) and b.decomposition.shape == (5, 320, 240)
    assert np.all(a.decomposition >= 0)
    with pytest.raises(InputError, match="view"):
        detect(model, coarse, (2.0, 2.0), "PA", NAMES)
    # Every landmark says how far off it may be; a network left in training mode gives no such
    # figure, and its landmarks come without it rather than failing.
    assert all(m["uncertainty_mm"] >= biplanar_network.UNCERTAINTY_FLOOR_MM for m in a.landmarks)
    training = detect(model.train(), coarse, (2.0, 2.0), "AP", NAMES)
    assert len(training.landmarks) == 95 and not any("uncertainty_mm" in m for m in training.landmarks)


def test_field_centred_on_a_chosen_pixel():
    torch.manual_seed(0)
    model = BiplanarNet().eval()
    big = np.random.default_rng(2).random((400, 300)).astype(np.float32)
    crop = big[80:280, 50:250]  # 200 x 200 pixels of 2 mm: the network's 384 mm field lies inside
    a = detect(model, crop, (2.0, 2.0), "LAT", NAMES)
    b = detect(model, big, (2.0, 2.0), "LAT", NAMES, centre_ij=(50 + 99.5, 80 + 99.5))
    pa = np.array([[m["i"], m["j"]] for m in a.landmarks])
    pb = np.array([[m["i"], m["j"]] for m in b.landmarks])
    assert pb == pytest.approx(pa + [50, 80], abs=2e-3)  # positions are stored to 1e-3 px


def test_landmarks_command(tmp_path):
    from BoneReconLib.training_run import save_atomically as _save
    from BoneReconLib.cli import main

    torch.manual_seed(0)
    model = BiplanarNet()
    _save(tmp_path / "w.pt", dict(model=model.state_dict(), config=model.config))
    image = write((np.random.default_rng(1).random((100, 80)) * 4000).astype(np.uint16), tmp_path / "x.png")
    out = tmp_path / "landmarks.json"
    code = main(["--quiet", "landmarks", "--image", str(image), "--view", "LAT", "--pixel-spacing", "0.5",
                 "--weights", str(tmp_path / "w.pt"), "--out", str(out), "--decomposition", str(tmp_path / "dec")])
    assert code == 0
    record = json.loads(out.read_text())
    assert record["size"] == [80, 100] and record["view"] == "LAT" and len(record["landmarks"]) == 95
    assert set(record["landmarks"][0]) == {"vertebra", "name", "i", "j", "confidence", "uncertainty_mm"}
    # Noise through an untrained network: no vertebra is claimed, and the file says so.
    assert record["found"] == [] and "No lumbar vertebra was found" in record["message"]
    assert set(record["vertebra_confidence"]) == set(record["vertebra_layout_mm"]) == {"L1", "L2", "L3", "L4", "L5"}
    assert sitk.ReadImage(str(tmp_path / "dec" / "L3.nrrd")).GetSize() == (80, 100)
    # A PNG carries no spacing: refused, nothing written.
    assert main(["--quiet", "landmarks", "--image", str(image), "--view", "AP", "--weights", str(tmp_path / "w.pt"),
                 "--out", str(tmp_path / "n.json")]) == 2
    assert not (tmp_path / "n.json").exists()


def test_inference_in_the_scene_places_landmarks_on_the_detector(context, monkeypatch):
    from BoneReconLib.biplanar_network import UNCERTAINTY_FLOOR_MM
    from BoneReconLib.biplanar_nodes import CONFIDENCE_PREFIX, UNCERTAINTY_PREFIX, detect_in_scene
    from BoneReconLib.geometry import biplanar_rig
    from BoneReconLib.radiograph_node import create_radiograph_node

    torch.manual_seed(0)
    model = BiplanarNet().eval()
    view = biplanar_rig(size=(96, 80), pixel_spacing=(1.2, 1.2))[1]
    image = np.random.default_rng(2).random((80, 96)).astype(np.float32)
    node = create_radiograph_node(context.scene, image, view, "LAT radiograph")
    before = context.scene.GetNumberOfNodes()
    images, points, detection = detect_in_scene(context.scene, model, node, "LAT", NAMES)
    assert [n.GetName() for n in images] == [f"LAT radiograph L{k}" for k in range(1, 6)]
    assert points.GetNumberOfControlPoints() == 95
    for k in (0, 40, 94):
        world = np.array(points.GetNthControlPointPosition(k))
        expected = view.pixel_to_world(detection.landmarks[k]["i"], detection.landmarks[k]["j"])
        assert world == pytest.approx(expected)
        assert abs((world - view.detector_center) @ view.normal) < 1e-6  # on the detector plane
        description = points.GetNthControlPointDescription(k)
        confidence, uncertainty = description[len(CONFIDENCE_PREFIX):-len(" mm")].split(UNCERTAINTY_PREFIX)
        assert float(confidence) == pytest.approx(detection.landmarks[k]["confidence"], abs=1e-4)
        assert float(uncertainty) == pytest.approx(detection.landmarks[k]["uncertainty_mm"], abs=5e-3)
        assert float(uncertainty) >= UNCERTAINTY_FLOOR_MM
    assert points.GetNthControlPointLabel(20) == f"L2 {NAMES[1]}"
    # A failure half-way adds nothing.
    import BoneReconLib.biplanar_nodes as biplanar_nodes

    count, made = context.scene.GetNumberOfNodes(), []

    def fail_on_third(*args, **kwargs):
        if len(made) == 2:
            raise InputError("disk full")
        made.append(create_radiograph_node(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(biplanar_nodes, "create_radiograph_node", fail_on_third)
    with pytest.raises(InputError, match="disk full"):
        detect_in_scene(context.scene, model, node, "LAT", NAMES)
    assert context.scene.GetNumberOfNodes() == count > before


def test_edge_margin_is_the_distance_to_the_radiographs_edge():
    """Known answers on a radiograph covering rows 20-199 of the network's field and every column:
    pixel centres, so the edges lie half a pixel beyond the first and last covered ones."""
    covered = np.zeros((256, 256), bool)
    covered[20:200] = True
    levels = np.array([[[128.0, 100.0], [128.0, 30.0]],  # 30 - 19.5 = 10.5 px from the top edge
                       [[5.0, 100.0], [128.0, 199.0]],  # 199.5 - 199 = 0.5 px from the bottom edge
                       [[128.0, 210.0], [128.0, 100.0]]])  # 10.5 px below it: outside
    assert edge_margin_mm(levels, covered) == pytest.approx(np.array([10.5, 0.5, -10.5]) * INPUT_SPACING_MM)
    assert np.all(edge_margin_mm(levels, np.zeros((256, 256), bool)) == -np.inf)


def test_found_needs_all_three_cues_and_says_which_failed():
    from BoneReconLib.biplanar_inference import Detection

    levels = ("L1", "L2", "L3", "L4", "L5")
    good = dict(confidence=0.3, layout=3.0, edge=50.0)
    for spoil, value in (("confidence", 0.1), ("layout", 6.0), ("edge", 12.0)):
        cues = {name: dict(zip(levels, [value if name == spoil and level == "L3" else good[name] for level in levels]))
                for name in good}
        detection = Detection([], np.zeros((5, 4, 4)), cues["confidence"], cues["layout"], cues["edge"])
        assert detection.found == ["L1", "L2", "L4", "L5"], spoil
        assert detection.message.startswith("Not found with confidence: L3 (outside the image or at its edge")
    lone = Detection([], np.zeros((5, 4, 4)), dict.fromkeys(levels, 0.3), dict.fromkeys(levels, 3.0),
                     dict(zip(levels, [5.0, 60.0, 60.0, 60.0, -3.0])))
    lone.vertebra_layout_mm.update(L2=7.5, L3=7.5, L4=7.5)
    assert lone.found == []
    assert "most confident L1: confidence 0.30, layout 3.0 mm, 5 mm inside the image" in lone.message
    everything = Detection([], np.zeros((5, 4, 4)), dict.fromkeys(levels, 0.3), dict.fromkeys(levels, 3.0),
                           dict.fromkeys(levels, 60.0))
    assert everything.found == list(levels) and everything.message is None
