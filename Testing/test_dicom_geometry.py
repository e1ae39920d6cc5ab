import numpy as np
import pytest
from BoneReconLib.dicom_geometry import view_from_dicom
from BoneReconLib.errors import InputError


def write_dx(path, tags, size=(30, 20), spacing=(0.14, 0.15)):
    """A small DX file; SimpleITK writes ImagerPixelSpacing (row\\column) from the image spacing."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.zeros((1, size[1], size[0]), np.uint16))
    image.SetSpacing((spacing[0], spacing[1], 1.0))
    for key, value in {"0008|0060": "DX", **tags}.items():
        image.SetMetaData(key, value)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(path))
    writer.Execute(image)
    return path


AP_TAGS = {"0018|1110": "1100", "0018|1111": "1000", "0018|5101": "AP", "0020|0020": "L\\F"}


def test_ap_header(tmp_path):
    view = view_from_dicom(write_dx(tmp_path / "ap.dcm", AP_TAGS))
    assert view.name == "AP" and view.size == (30, 20)
    assert np.allclose(view.pixel_spacing, [0.14, 0.15])
    assert np.allclose(view.source, [0, 1000, 0]) and np.allclose(view.detector_center, [0, -100, 0])
    assert np.allclose(view.detector_u, [-1, 0, 0]) and np.allclose(view.detector_v, [0, 0, -1])
    # a point 1 mm to the patient's left at the isocentre lands 1.1 mm / 0.14 mm right of the centre
    (i, j), _ = view.project(np.array([-1.0, 0.0, 0.0]))
    assert i - 14.5 == pytest.approx(1.1 / 0.14) and j == pytest.approx(9.5)


def test_lateral_and_primary_angle(tmp_path):
    lateral = view_from_dicom(write_dx(tmp_path / "ll.dcm", {**AP_TAGS, "0018|5101": "LL", "0020|0020": "A\\F"}))
    assert np.allclose(lateral.normal, [-1, 0, 0]) and np.allclose(lateral.detector_u, [0, 1, 0])
    turned = view_from_dicom(write_dx(tmp_path / "ap10.dcm", {**AP_TAGS, "0018|1510": "10"}))
    beam = turned.normal
    assert beam[0] == pytest.approx(-np.sin(np.radians(10))) and beam[1] == pytest.approx(-np.cos(np.radians(10)))
    assert abs(turned.detector_u @ beam) < 1e-9  # u kept perpendicular to the turned beam


def test_missing_tags_are_listed(tmp_path):
    path = write_dx(tmp_path / "bare.dcm", {"0018|5101": "AP"})
    with pytest.raises(InputError, match=r"DistanceSourceToDetector \(0018,1110\).*PatientOrientation"):
        view_from_dicom(path)
    view = view_from_dicom(write_dx(tmp_path / "nodsp.dcm", {k: v for k, v in AP_TAGS.items() if k != "0018|1111"}),
                           source_to_patient=900.0)
    assert np.allclose(view.source, [0, 900, 0])


def test_orientation_along_the_beam_is_refused(tmp_path):
    with pytest.raises(InputError, match="runs along the beam"):
        view_from_dicom(write_dx(tmp_path / "bad.dcm", {**AP_TAGS, "0020|0020": "A\\F"}))


def test_real_computed_radiograph_without_geometry_tags(shared_data):
    path = shared_data / "xray" / "pydicom" / "RG3_UNCI.dcm"
    with pytest.raises(InputError, match=r"RG3_UNCI.dcm lacks the geometry tag\(s\) ImagerPixelSpacing"):
        view_from_dicom(path)


def test_a_radiograph_file_takes_its_view_from_json_else_from_its_header(tmp_path):
    """The DepthRecon command and module: --geometry when given, else the DICOM header; a plain
    image without either is refused with one clear message (and no output)."""
    import json

    import SimpleITK as sitk
    from BoneReconLib.depth_command import run_depth
    from BoneReconLib.dicom_geometry import view_for_image
    from BoneReconLib.geometry import ap_view, save_geometry

    dicom = write_dx(tmp_path / "ap.dcm", AP_TAGS)
    assert view_for_image(dicom).source_to_detector_distance == pytest.approx(1100.0)
    assert view_for_image(dicom).extra["source_to_object"] == pytest.approx(1000.0)
    geometry = save_geometry([ap_view(size=(30, 20), name="mine")], tmp_path / "view.json")
    assert view_for_image(dicom, geometry).name == "mine"  # the JSON wins
    png = tmp_path / "xr.png"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 30), np.uint8)), str(png))
    with pytest.raises(InputError, match=r"No imaging geometry for xr.png: give its views JSON"):
        view_for_image(png)
    with pytest.raises(InputError, match="No imaging geometry"):
        run_depth(tmp_path / "out", png, None, weights=tmp_path / "unused.pt")
    assert not (tmp_path / "out").exists()
    assert json.loads(geometry.read_text())["views"][0]["name"] == "mine"
