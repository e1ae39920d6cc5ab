"""BiplanarRecon logic: MRML nodes in, MRML nodes out; never imports Qt.

Reconstructs L1-L5 from an AP and a lateral radiograph node (each carrying its view), runs the
network alone (per-vertebra images and 2D landmarks), places the mean shapes from the landmarks,
and turns a CT vertebra label map into L1-L5 surface models (the ground-truth side).

Console use (in Slicer or headless)::

    from BiplanarReconLib import BiplanarReconLogic
    logic = BiplanarReconLogic()
    ct, labels = logic.loadSampleCase()
    ap, lat = logic.loadSampleRadiographs()  # DRRs of the sample CT, with their views
    done = logic.reconstruct(ap, lat, preset="balanced")  # models, landmarks, measurement table
    print(done["result"].converged, done["result"].messages, done["result"].measurements["lordosis_deg"])
    segmentation, models = logic.createVertebraModels(labels)
    surface, landmarks = logic.instance("L3", coefficients=[1.5, -0.5], pose=numpy.eye(4))
    found = logic.detectLandmarks(apNode, latNode)  # radiograph nodes with their views
    images, points, detection = found["AP"]; print(detection.found, detection.message)
    placed = logic.initialiseVertebrae(apNode, latNode)  # mean shapes at their initial poses
    leg = logic.reconstructLeg(apNode, latNode, side="right")  # femur + tibia (either node may be None)
    print(leg["result"].bones["femur"].measurements, leg["result"].messages)
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

from BoneReconLib import sample_data
from BoneReconLib.mrml_io import load_volume
from BoneReconLib.module_logic import ModuleLogic
from BoneReconLib.progress import ProgressCallback, as_progress
from BoneReconLib.scene_transaction import rollback_on_error
from BoneReconLib.shape_model_library import load_models
from BoneReconLib.shape_model_nodes import show_shape_model, update_instance
from BoneReconLib.spine_alignment import LEVELS
from BoneReconLib.vertebra_models import create_vertebra_models

LABEL_TABLES = ("totalsegmentator", "verse")


class BiplanarReconLogic(ModuleLogic):
    moduleName = "BiplanarRecon"

    def loadSampleCase(self) -> Tuple[object, object]:
        """Load the bundled sample CT and its vertebra label map; returns (ct, labelMap)."""
        with rollback_on_error(self.scene):
            ct = load_volume(self.scene, sample_data.SAMPLE_CT, name="Sample CT", what="CT")
            labels = load_volume(
                self.scene, sample_data.SAMPLE_VERTEBRA_LABELS, name="Sample vertebra labels",
                labelmap=True, what="label map",
            )
        return ct, labels

    def renderSampleRadiographs(self, seed: int = 0, withLabels: bool = False):
        """The sample CT (and labels) loaded, plus AP + lateral DRR nodes of its lumbar spine through a
        random biplanar rig (``seed``); with ``withLabels`` also each level's own DRR. Returns the
        ``drr_nodes.RenderedNodes``."""
        import numpy as np

        from BoneReconLib.drr_nodes import render_to_nodes
        from BoneReconLib.lumbar_dataset import sample_biplanar_views
        from BoneReconLib.lumbar_radiograph import SpineCT
        from BoneReconLib.vertebra_labels import BUILTIN_TABLES, LUMBAR_LEVELS

        with rollback_on_error(self.scene):
            ct, labels = self.loadSampleCase()
            spine = SpineCT.from_files(sample_data.SAMPLE_CT, sample_data.SAMPLE_VERTEBRA_LABELS)
            length = float(np.linalg.norm(spine.centroids["L1"] - spine.centroids["L5"])) + 30.0
            views = sample_biplanar_views(np.random.default_rng(seed), spine.spine_frame(), length)
            levels = {value: name for value, name in BUILTIN_TABLES["totalsegmentator"].items()
                      if name in LUMBAR_LEVELS}
            return render_to_nodes(ct, views, labels if withLabels else None, levels if withLabels else None)

    def loadSampleRadiographs(self, seed: int = 0) -> Tuple[object, object]:
        """(AP, lateral) radiograph nodes: DRRs of the bundled sample CT, to try the reconstruction on."""
        rendered = self.renderSampleRadiographs(seed)
        return rendered.radiographs["AP"], rendered.radiographs["LAT"]

    def reconstruct(self, apNode, latNode, preset: str = "balanced", levels: Sequence[str] = LEVELS, weights=None,
                    checkRoles: bool = True, progress: Optional[ProgressCallback] = None) -> Dict[str, object]:
        """AP + lateral radiograph nodes (each with its view) -> L1-L5. Returns {"result": BiplanarResult,
        "models": {level: model node}, "landmarks": 3D markups node, "table": measurement table node or
        None}. Levels that did not converge are kept (named so, semi-transparent) and listed in
        ``result.messages``. Raises InputError with nothing added to the scene for unusable inputs
        (image and view disagree, views parallel or not overlapping, AP and lateral swapped);
        progress(fraction, message) may raise Cancelled to stop."""
        from BoneReconLib.biplanar_pipeline import reconstruct_biplanar
        from BoneReconLib.biplanar_result_nodes import add_result_nodes
        from BoneReconLib.radiograph_file import displayed
        from BoneReconLib.radiograph_node import get_view, image_of

        if apNode is None or latNode is None:
            raise ValueError("Select both the AP and the lateral radiograph.")
        nodes = (apNode, latNode)
        views = [get_view(node) for node in nodes]
        images = [displayed(image_of(node), what=f"'{node.GetName()}'") for node in nodes]
        models = self.shapeModels()
        result = reconstruct_biplanar(self.network(weights), models, images, views, levels=levels, preset=preset,
                                      check_roles=checkRoles, progress=progress)
        with rollback_on_error(self.scene):
            added = add_result_nodes(self.scene, result, models)
        return dict(result=result, **added)

    def reconstructLeg(self, apNode=None, latNode=None, side: str = "right", bones: Sequence[str] = ("femur", "tibia"),
                       points: Optional[Mapping[str, list]] = None, detector=None,
                       progress: Optional[ProgressCallback] = None) -> Dict[str, object]:
        """Leg radiograph nodes (each with its view; AP, lateral or both: one view is one-view mode) ->
        femur and tibia. Feature points from the leg detector (``detector``: weights, default bundled)
        unless ``points`` ({"AP": [...], "LAT": [...]} as ``bonerecon biplanar --anatomy leg --points``
        reads them). Returns {"result": LegReconstruction, "models": {bone: model node}, "landmarks":
        3D markups node, "table": measurement table node}; nothing is added to the scene on error."""
        from BoneReconLib.biplanar_result_nodes import add_measurement_table
        from BoneReconLib.depth_result_nodes import add_bone_models
        from BoneReconLib.leg_command import find_points, leg_measurements, measurement_rows
        from BoneReconLib.leg_pipeline import SURFACES, reconstruct_leg
        from BoneReconLib.radiograph_file import displayed
        from BoneReconLib.radiograph_node import get_view, image_of
        from BoneReconLib.shape_model_library import load_leg_models

        report = as_progress(progress)
        chosen = [(role, node) for role, node in (("AP", apNode), ("LAT", latNode)) if node is not None]
        if not chosen:
            raise ValueError("Select the leg's AP radiograph, its lateral one, or both.")
        views = [get_view(node) for _, node in chosen]
        images = [displayed(image_of(node), what=f"'{node.GetName()}'") for _, node in chosen]
        if points is None:
            report(0.0, "Finding the feature points")
            found, _ = find_points(images, views, [role for role, _ in chosen], detector)
        else:
            found = [list(points.get(role, [])) for role, _ in chosen]
        models = load_leg_models(bones=bones)
        result = reconstruct_leg(models, views, images, found, side=side, bones=bones,
                                 progress=lambda f, m: report(0.05 + 0.95 * f, m))
        with rollback_on_error(self.scene):
            added = add_bone_models(self.scene, result.surfaces(), SURFACES, prefix="Leg ")
            landmarks = self.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Leg feature points")
            for bone, found_bone in result.bones.items():
                for name, position in found_bone.landmarks.items():
                    landmarks.AddControlPoint(*[float(c) for c in position], f"{bone}: {name}")
            table = add_measurement_table(self.scene, measurement_rows(leg_measurements(result)), "Leg measurements")
        return dict(result=result, models=added, landmarks=landmarks, table=table)

    def registerToRadiographs(self, ctNode, radiographNodes: Sequence, labelMapNode=None,
                              labelTable: str = "totalsegmentator", initial=None,
                              progress: Optional[ProgressCallback] = None) -> Dict[str, object]:
        """Ground truth for radiographs: the rigid pose of ``ctNode`` whose DRRs match the radiograph nodes
        (each carrying its view), then with ``labelMapNode`` each labelled lumbar vertebra's own pose.
        Adds a linear transform node per result ("CT to radiographs", "L3 to radiographs", ...) and, with
        labels, each level's surface model under its transform. ``initial``: a 4x4 starting pose of the
        CT (default identity). Returns {"results": {name: RigidResult}, "transforms": {name: node},
        "models": {level: node}}; nothing is added on error or cancel."""
        import numpy as np
        import slicer.util

        from BoneReconLib.radiograph_file import displayed
        from BoneReconLib.radiograph_node import get_view, image_of
        from BoneReconLib.rigid_registration import register_ct
        from BoneReconLib.vertebra_labels import load_label_table, select_levels
        from BoneReconLib.volume_node import attenuation_volume, volume_array

        if ctNode is None or not radiographNodes:
            raise ValueError("Select the CT and at least one radiograph.")
        views = [get_view(node) for node in radiographNodes]
        images = [displayed(image_of(node), what=f"'{node.GetName()}'") for node in radiographNodes]
        labels = matrix = names = None
        if labelMapNode is not None:
            labels, matrix = volume_array(labelMapNode)
            names = select_levels(np.unique(labels), load_label_table(labelTable))
        results = register_ct(attenuation_volume(ctNode), views, images, labels, matrix, names, initial=initial,
                              progress=progress)
        transforms, models = {}, {}
        with rollback_on_error(self.scene):
            for name, result in results.items():
                label = "CT" if name == "volume" else name
                node = self.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", f"{label} to radiographs")
                node.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(result.pose))
                node.SetDescription(f"image agreement (NCC per view) {', '.join(f'{c:.3f}' for c in result.ncc)}; "
                                    f"{'converged' if result.converged else 'did not converge'}")
                transforms[name] = node
            if labelMapNode is not None:
                _, built = create_vertebra_models(labelMapNode, labelTable)
                for level, model in built.items():
                    if level in transforms:
                        model.SetAndObserveTransformNodeID(transforms[level].GetID())
                        models[level] = model
        return dict(results=results, transforms=transforms, models=models)

    def createVertebraModels(
        self,
        labelMapNode,
        labelTable: Union[str, Mapping[int, str]] = "totalsegmentator",
        smoothing: float = 0.5,
        progress: Optional[ProgressCallback] = None,
    ) -> Tuple[object, Dict[str, object]]:
        """Segmentation (segments L1..L5) and {level: model node} from a vertebra label map.

        Raises InputError (nothing added to the scene) when the map holds no L1-L5 label under
        ``labelTable``; progress(fraction, message) may raise Cancelled to stop.
        """
        if labelMapNode is None:
            raise ValueError("Select a vertebra label map.")
        with rollback_on_error(labelMapNode.GetScene()):
            return create_vertebra_models(labelMapNode, labelTable, smoothing=smoothing, progress=progress)

    def network(self, weights=None):
        """The BiplanarRecon network (default: the bundled one, hash checked); cached per weights file."""
        from BoneReconLib.biplanar_network import load_network

        cache = self.__dict__.setdefault("_networks", {})
        key = str(weights)
        if key not in cache:
            cache[key] = load_network(weights)
        return cache[key]

    def detectLandmarks(self, apNode=None, latNode=None, weights=None,
                        progress: Optional[ProgressCallback] = None) -> Dict[str, tuple]:
        """Run the network on the AP and/or lateral radiograph node (each carrying its view): per view
        (L1..L5 image nodes on its detector plane, locked landmarks markups node, the Detection with
        ``found`` vertebrae and a ``message`` when some are missing). Raises InputError with nothing
        added to the scene when an input is unusable; progress may raise Cancelled."""
        from BoneReconLib.biplanar_nodes import detect_in_scene

        report = as_progress(progress)
        pairs = [(view, node) for view, node in (("AP", apNode), ("LAT", latNode)) if node is not None]
        if not pairs:
            raise ValueError("Select an AP and/or a lateral radiograph.")
        model = self.network(weights)
        names = self.shapeModels()["L1"].landmark_names
        results = {}
        with rollback_on_error(self.scene):
            for k, (view, node) in enumerate(pairs):
                report(k / len(pairs), f"Finding the landmarks in the {view} radiograph")
                results[view] = detect_in_scene(self.scene, model, node, view, names)
            report(1.0, "Landmarks found")
        return results

    def initialiseVertebrae(self, apNode, latNode, found: Optional[Dict[str, tuple]] = None, weights=None,
                            progress: Optional[ProgressCallback] = None) -> Dict[str, object]:
        """Both radiograph nodes -> landmarks (``found``: an earlier ``detectLandmarks`` result, else
        run now) -> triangulated 3D landmarks (a markups node) and every level's mean shape placed by
        its initial pose (model + landmark nodes, coloured per level). Returns {"models": {level:
        model node}, "landmarks": markups node, "initialisation": SpineInitialisation}; levels that
        could not be placed are named in ``initialisation.messages``."""
        import numpy as np

        from BoneReconLib.radiograph_node import get_view
        from BoneReconLib.spine_alignment import LEVELS
        from BoneReconLib.spine_initialisation import initialise_spine, mean_landmarks
        from BoneReconLib.vertebra_labels import LEVEL_COLORS

        if apNode is None or latNode is None:
            raise ValueError("Select both the AP and the lateral radiograph.")
        report = as_progress(progress)
        models = self.shapeModels()
        with rollback_on_error(self.scene):
            if found is None:
                found = self.detectLandmarks(apNode, latNode, weights, progress=lambda f, m: report(0.8 * f, m))
            views = [get_view(apNode), get_view(latNode)]
            means = mean_landmarks(models, LEVELS)
            report(0.85, "Triangulating the landmarks")
            result = initialise_spine(views, [found["AP"][2].landmarks, found["LAT"][2].landmarks], means, LEVELS)
            points = self.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Landmarks 3D (triangulated)")
            points.CreateDefaultDisplayNodes()
            names = models["L1"].landmark_names
            for k in np.nonzero(result.triangulated.used)[0]:
                label = f"{LEVELS[k // len(names)]} {names[k % len(names)]}"
                index = points.AddControlPoint(*result.triangulated.points[k].tolist(), label)
                points.SetNthControlPointLocked(index, True)
            placed = {}
            for level, pose in result.poses.items():
                if pose is None:
                    continue
                rigid = np.eye(4)
                rigid[:3, :3], rigid[:3, 3] = pose.rotation, pose.translation
                node, _ = self.instance(level, pose=rigid, scale=pose.scale)
                node.SetName(f"{level} initial")
                node.GetDisplayNode().SetColor(*LEVEL_COLORS[level])
                placed[level] = node
            report(1.0, "Initial poses found")
        return dict(models=placed, landmarks=points, initialisation=result)

    def shapeModels(self, folder=None) -> Dict[str, object]:
        """{level: ShapeModel} from a model folder (default: the bundled models); hashes checked, cached."""
        key = str(folder)
        cache = self.__dict__.setdefault("_shapeModels", {})
        if key not in cache:
            cache[key] = load_models(folder)
        return cache[key]

    def instance(self, level: str, coefficients: Optional[Sequence[float]] = None, pose=None, scale: float = 1.0,
                 modelNode=None, landmarksNode=None, folder=None, freeFormWeights=None) -> Tuple[object, object]:
        """Show a shape-model instance of ``level`` (coefficients in standard deviations, 4x4 pose, scale,
        optionally free-form weights (R, 3) of ``freeForm(level)``) in a model node and a landmark point
        list; new nodes unless given. Returns (model, landmarks)."""
        model = self._shapeModel(level, folder)
        displacements = None
        if freeFormWeights is not None:
            displacements = self.freeForm(level, folder).displacements(freeFormWeights).numpy()[0]
        with rollback_on_error(self.scene):
            if modelNode is None:
                modelNode, created = show_shape_model(self.scene, model)
                landmarksNode = landmarksNode or created
            update_instance(model, modelNode, landmarksNode, coefficients, pose, scale, displacements)
        return modelNode, landmarksNode

    def freeForm(self, level: str, folder=None):
        """The free-form refinement term (SmoothDeformation, default kernel) on ``level``'s mean; cached."""
        from BoneReconLib.shape_refinement import SmoothDeformation

        cache = self.__dict__.setdefault("_freeForm", {})
        key = (level, str(folder))
        if key not in cache:
            cache[key] = SmoothDeformation.on_points(self._shapeModel(level, folder).mean)
        return cache[key]

    def _shapeModel(self, level: str, folder=None):
        models = self.shapeModels(folder)
        if level not in models:
            raise ValueError(f"No shape model for {level} (available: {', '.join(models)}).")
        return models[level]
