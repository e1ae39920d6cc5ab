"""BiplanarRecon network inference in the scene: radiograph node in, per-vertebra image nodes and a
markups node of 2D landmarks (placed on the radiograph's detector plane in 3D) out.

The radiograph node carries its view (:mod:`.radiograph_node`), which gives the pixel spacing and
puts every output where the input is. Its pixels are taken as bone bright (DRRs, MONOCHROME2
radiographs) and windowed between their 0.5 and 99.5 percentiles. Each landmark's label is
"<vertebra> <name>" and its description holds the network's confidence and the landmark's expected
error (mm per axis, ``biplanar_network.heatmap_uncertainty``); nothing is added to the
scene when the work fails. MRML adapter (no Qt).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

from .biplanar_inference import Detection, detect
from .biplanar_network import BiplanarNet
from .radiograph_file import displayed
from .radiograph_node import create_radiograph_node, get_view, image_of
from .scene_transaction import rollback_on_error

CONFIDENCE_PREFIX = "confidence "
UNCERTAINTY_PREFIX = ", expected error "


def detect_in_scene(scene, model: BiplanarNet, radiograph_node, view_name: str,
                    landmark_names: Sequence[str]) -> Tuple[List, object, Detection]:
    """(decomposition volume nodes L1-L5, landmarks markups node, the detection) of one radiograph node."""
    view = get_view(radiograph_node)
    pixels = displayed(image_of(radiograph_node), what=f"'{radiograph_node.GetName()}'")
    detection = detect(model, pixels, view.pixel_spacing, view_name, landmark_names)
    name = radiograph_node.GetName()
    with rollback_on_error(scene):
        images = [create_radiograph_node(scene, image, view, f"{name} {level}")
                  for level, image in zip(("L1", "L2", "L3", "L4", "L5"), detection.decomposition)]
        points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{name} landmarks")
        points.CreateDefaultDisplayNodes()
        for landmark in detection.landmarks:
            position = view.pixel_to_world(landmark["i"], landmark["j"])
            index = points.AddControlPoint(*position.tolist(), f"{landmark['vertebra']} {landmark['name']}")
            description = f"{CONFIDENCE_PREFIX}{landmark['confidence']:.4f}"
            if "uncertainty_mm" in landmark:
                description += f"{UNCERTAINTY_PREFIX}{landmark['uncertainty_mm']:.2f} mm"
            points.SetNthControlPointDescription(index, description)
            points.SetNthControlPointLocked(index, True)
    return images, points, detection
