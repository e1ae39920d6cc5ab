"""DepthRecon logic: MRML nodes in, MRML nodes out; never imports Qt.

Two jobs: bones from one calibrated radiograph (the bundled network's masks and front/back depth
maps, back-projected into one model per bone and a label map), and one surface model per label
of a CT bone label map (the ground truth a user needs before making training data from their
own CTs).

Console use::

    from DepthReconLib import DepthReconLogic
    logic = DepthReconLogic()
    radiograph = logic.loadRadiograph("wrist.png", "view.json")   # or logic.setGeometry(node, "view.json")
    done = logic.reconstructFromRadiograph(radiograph)           # done["nodes"].models: {bone: model}
    segmentation, models = logic.createBoneModels(labelMapNode)
    manifest = logic.makeTrainingData([(ctNode, labelMapNode)], "wrist-set", radiographNode=radiograph, cases=200)
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

from BoneReconLib.errors import InputError
from BoneReconLib.label_models import export_models, present_label_values, segmentation_from_labels
from BoneReconLib.module_logic import ModuleLogic
from BoneReconLib.progress import ProgressCallback
from BoneReconLib.scene_transaction import rollback_on_error

MODELS_FOLDER = "Bone models"
ANATOMIES = ("wrist",)  # bundled networks ("depth-<anatomy>" in the network manifest)


class DepthReconLogic(ModuleLogic):
    moduleName = "DepthRecon"

    def __init__(self, scene=None):
        super().__init__(scene)
        self._networks = {}

    def network(self, anatomy: str = "wrist", weights=None):
        """The DepthRecon network (loaded once): ``weights`` (a file) or the bundled one of ``anatomy``."""
        from BoneReconLib.depth_training import bundled_depth_weights, load_depth_network

        if weights is None and anatomy not in ANATOMIES:
            raise InputError(f"No bundled network for '{anatomy}' (bundled: {', '.join(ANATOMIES)}).")
        path = str(weights) if weights is not None else str(bundled_depth_weights(anatomy))
        if path not in self._networks:
            self._networks[path] = load_depth_network(path)
        return self._networks[path]

    def setGeometry(self, radiographNode, geometryPath, viewName: Optional[str] = None):
        """Give a radiograph node its imaging geometry from a views JSON (the only view, or ``viewName``);
        the node is moved onto the view's detector plane."""
        from BoneReconLib.geometry import load_view
        from BoneReconLib.radiograph_node import set_view

        if radiographNode is None:
            raise ValueError("Select a radiograph.")
        view = load_view(geometryPath, viewName)
        set_view(radiographNode, view)
        return view

    def loadRadiograph(self, imagePath, geometryPath=None, viewName: Optional[str] = None, name: Optional[str] = None):
        """A radiograph node from an image file (PNG/JPEG/NRRD/DICOM; MONOCHROME1 inverted) placed by
        its geometry JSON, or by its own DICOM header when no JSON is given."""
        from BoneReconLib.dicom_geometry import view_for_image
        from BoneReconLib.mrml_io import check_input_file
        from BoneReconLib.radiograph_file import read_radiograph
        from BoneReconLib.radiograph_node import create_radiograph_node

        view = view_for_image(imagePath, geometryPath, viewName)
        radiograph = read_radiograph(check_input_file(imagePath, "radiograph"), view.pixel_spacing)
        return create_radiograph_node(self.scene, radiograph.pixels, view, name or f"{view.name} radiograph")

    def reconstructFromRadiograph(self, radiographNode, anatomy: str = "wrist", weights=None,
                                  centreIJ: Optional[Sequence[float]] = None, voxelMm: Optional[float] = None,
                                  progress: Optional[ProgressCallback] = None) -> dict:
        """Bones of one radiograph node that carries its geometry -> {"result": DepthReconstruction,
        "nodes": DepthResultNodes} (2D mask segmentation, front/back depth volumes, one model per
        bone, label map, in one folder). "No bone found" is an InputError; on it, on Cancel or on
        any error nothing is added to the scene."""
        from BoneReconLib.depth_pipeline import reconstruct_bones
        from BoneReconLib.depth_result_nodes import add_depth_results
        from BoneReconLib.progress import as_progress
        from BoneReconLib.radiograph_node import get_view, image_of

        if radiographNode is None:
            raise ValueError("Select a radiograph.")
        report = as_progress(progress)
        view = get_view(radiographNode)
        image = image_of(radiographNode)
        report(0.0, "Loading the network")
        model = self.network(anatomy, weights)
        with rollback_on_error(self.scene):
            result = reconstruct_bones(model, image, view, centreIJ, voxelMm, report, 0.02, 0.9)
            report(0.9, "Adding the results to the scene")
            nodes = add_depth_results(self.scene, result, f"{radiographNode.GetName()} bones")
        return dict(result=result, nodes=nodes)

    @staticmethod
    def labelNames(labelMapNode) -> Dict[int, str]:
        """{value: name} for each label present, named by the label map's colour table if it has names."""
        colors = None
        display = labelMapNode.GetDisplayNode()
        if display is not None:
            colors = display.GetColorNode()
        names = {}
        for value in present_label_values(labelMapNode):
            name = colors.GetColorName(value) if colors is not None and value < colors.GetNumberOfColors() else ""
            names[value] = name if name and name.lower() not in ("invalid", "(none)") else f"Label {value}"
        if len(set(names.values())) != len(names):  # colour tables may repeat names
            names = {value: f"{name} ({value})" for value, name in names.items()}
        return names

    def makeTrainingData(self, ctAndLabelMaps: Sequence[Tuple[object, object]], outDir, radiographNode=None,
                         geometryPath=None, viewName: Optional[str] = None, cases: int = 100,
                         placement: str = "standard",
                         labelNames: Optional[Mapping[int, str]] = None, seed: int = 0,
                         progress: Optional[ProgressCallback] = None) -> dict:
        """DepthRecon training cases from CTs with bone label maps (``bonerecon dataset depth``):
        DRRs in the view of ``radiographNode`` (its geometry) or of ``geometryPath``, with every
        labelled bone's exact front/back depth maps, written to ``outDir`` (resumable); returns the
        manifest. ``ctAndLabelMaps``: (CT node, label map node) pairs; each CT is a subject (the split
        is by CT). ``placement`` "as-is" keeps each CT where it is (after registering it to that
        radiograph: paired data); "standard" faces its anterior to the source. Bones are named by
        the label maps' colour tables unless ``labelNames`` ({value: name}) is given."""
        from BoneReconLib.ct_depth_dataset import LabelledCT, generate_ct_depth_dataset
        from BoneReconLib.drr_command import file_stem
        from BoneReconLib.geometry import load_view
        from BoneReconLib.radiograph_node import get_view
        from BoneReconLib.volume_node import volume_array

        pairs = list(ctAndLabelMaps)
        if not pairs or any(ct is None or labels is None for ct, labels in pairs):
            raise ValueError("Select a CT and its bone label map.")
        if radiographNode is not None:
            view = get_view(radiographNode)
        elif geometryPath:
            view = load_view(geometryPath, viewName)
        else:
            raise InputError("Give the X-ray view: a radiograph that carries its geometry, or a geometry file.")
        cts = []
        for ctNode, labelMapNode in pairs:
            hu, matrix = volume_array(ctNode)
            labels, labelMatrix = volume_array(labelMapNode)
            names = dict(labelNames) if labelNames else self.labelNames(labelMapNode)
            cts.append(LabelledCT.from_arrays(file_stem(ctNode.GetName()), hu, matrix, labels, labelMatrix, names,
                                              what=f"The label map '{labelMapNode.GetName()}'"))
        return generate_ct_depth_dataset(outDir, cts, view, int(cases), seed=seed, placement=placement,
                                         progress=progress)

    def createBoneModels(
        self,
        labelMapNode,
        labelNames: Optional[Mapping[int, str]] = None,
        smoothing: float = 0.5,
        progress: Optional[ProgressCallback] = None,
    ) -> Tuple[object, Dict[str, object]]:
        """Segmentation + {name: model node}, one per label (or per entry of ``labelNames``)."""
        if labelMapNode is None:
            raise ValueError("Select a bone label map.")
        names = dict(labelNames) if labelNames else self.labelNames(labelMapNode)
        if not names:
            raise InputError("The label map is empty: it has no non-zero labels.")
        with rollback_on_error(labelMapNode.GetScene()):
            segmentation = segmentation_from_labels(
                labelMapNode, names, name=f"{labelMapNode.GetName()} bones", smoothing=smoothing, progress=progress
            )
            models = export_models(segmentation, MODELS_FOLDER)
            segmentation.GetDisplayNode().SetVisibility3D(False)
        return segmentation, models
