"""BiplanarRecon: AP + lateral radiographs -> L1-L5 vertebra surfaces, landmarks and measurements.

Slicer-facing shell only (module description, widget, self-test). All computation is in
``BiplanarReconLib`` and ``BoneReconLib``, which run without Qt and headless.
"""

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import slicer
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# Developer set-up (module folders added in Application Settings > Modules): the shared
# BoneReconLib package sits beside the module folders, not inside them. An installed extension
# has it next to the module files already.
_repositoryRoot = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_repositoryRoot, "BoneReconLib")) and _repositoryRoot not in sys.path:
    sys.path.append(_repositoryRoot)

from BiplanarReconLib import BiplanarReconLogic  # noqa: E402,F401  (re-exported: GUI-free logic)
from BiplanarReconLib.logic import LABEL_TABLES  # noqa: E402
from BoneReconLib.biplanar_pipeline import PRESETS  # noqa: E402
from BoneReconLib.widget_helpers import BoneReconWidgetMixin  # noqa: E402


class BiplanarRecon(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Biplanar Recon"
        self.parent.categories = ["BoneRecon"]
        self.parent.dependencies = []
        self.parent.contributors = ["BoneRecon developers"]
        self.parent.helpText = (
            "Lumbar vertebrae L1-L5 from two calibrated radiographs (AP + lateral), or (anatomy: leg) the "
            "femur and tibia from one or two radiographs of a leg. "
            "The bundled network finds landmarks and per-vertebra images in each view, the L1-L5 shape "
            "models are placed from the triangulated landmarks and registered to both views, and the spine "
            "is measured (lordosis, segmental angles, Cobb angle, slip, disc and body heights). The module "
            "also builds L1-L5 surface models from a CT vertebra label map. See the project README."
        )
        self.parent.acknowledgementText = (
            "Sample CT and labels: TotalSegmentator test data (Apache-2.0, J. Wasserthal et al.)."
        )


@parameterNodeWrapper
class BiplanarReconParameterNode:
    """Module settings, saved with the scene."""

    inputLabelMap: vtkMRMLLabelMapVolumeNode
    labelTable: Annotated[str, Choice(list(LABEL_TABLES))] = "totalsegmentator"
    smoothing: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    apRadiograph: vtkMRMLScalarVolumeNode
    latRadiograph: vtkMRMLScalarVolumeNode
    preset: Annotated[str, Choice(list(PRESETS))] = "balanced"
    anatomy: Annotated[str, Choice(["spine", "leg"])] = "spine"
    legSide: Annotated[str, Choice(["right", "left"])] = "right"
    inputCT: vtkMRMLScalarVolumeNode


class BiplanarReconWidget(BoneReconWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    parameterNodeClass = BiplanarReconParameterNode
    applyToolTip = "Build one surface model per lumbar vertebra (L1-L5)."
    missingInputToolTip = "Select a vertebra label map (or load the sample case)."

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.logic = BiplanarReconLogic()
        self.setupModuleWidget(slicer.util.loadUI(self.resourcePath("UI/BiplanarRecon.ui")))
        self.ui.loadSampleButton.connect("clicked(bool)", self.onLoadSampleButton)
        self.ui.detectButton.connect("clicked(bool)", self.onDetectButton)
        self.ui.reconstructButton.connect("clicked(bool)", self.onReconstructButton)
        self.ui.loadSampleRadiographsButton.connect("clicked(bool)", self.onLoadSampleRadiographsButton)
        self.ui.registerButton.connect("clicked(bool)", self.onRegisterButton)

    def _checkCanApply(self, caller=None, event=None):
        super()._checkCanApply(caller, event)
        params = self._parameterNode
        hasRadiograph = bool(params and (params.apRadiograph or params.latRadiograph))
        self.ui.detectButton.enabled = hasRadiograph and self._running is None
        hasBoth = bool(params and params.apRadiograph and params.latRadiograph)
        leg = bool(params and params.anatomy == "leg")
        self.ui.reconstructButton.enabled = (hasRadiograph if leg else hasBoth) and self._running is None
        self.ui.legSideComboBox.enabled = leg
        self.ui.registerButton.enabled = bool(params and params.inputCT and hasRadiograph) and self._running is None

    def onLoadSampleButton(self):
        with slicer.util.tryWithErrorDisplay("Could not load the sample case.", waitCursor=True):
            _, labels = self.logic.loadSampleCase()
            self._parameterNode.inputLabelMap = labels
            self._parameterNode.labelTable = "totalsegmentator"

    def onLoadSampleRadiographsButton(self):
        with slicer.util.tryWithErrorDisplay("Could not make the sample radiographs.", waitCursor=True):
            ap, lat = self.logic.loadSampleRadiographs()
            self._parameterNode.apRadiograph = ap
            self._parameterNode.latRadiograph = lat

    def onApplyButton(self):
        params = self._parameterNode
        models = self.runWithProgress(
            lambda progress: self.logic.createVertebraModels(
                params.inputLabelMap, params.labelTable, smoothing=params.smoothing, progress=progress
            )[1],
            "Failed to build the vertebra models.",
        )
        if models is not None:
            self.ui.statusLabel.text = "Models: " + ", ".join(models)


    def onDetectButton(self):
        params = self._parameterNode
        found = self.runWithProgress(
            lambda progress: self.logic.detectLandmarks(params.apRadiograph, params.latRadiograph, progress=progress),
            "Failed to find the landmarks.",
        )
        if found is not None:
            lines = []
            for view, (_, _, detection) in found.items():
                lines.append(f"{view}: found {', '.join(detection.found) or 'no vertebra'}")
                if detection.message:
                    lines.append(f"  {detection.message}")
            self.ui.statusLabel.text = "\n".join(lines)


    def onReconstructButton(self):
        params = self._parameterNode
        if params.anatomy == "leg":
            done = self.runWithProgress(
                lambda progress: self.logic.reconstructLeg(params.apRadiograph, params.latRadiograph,
                                                           side=params.legSide, progress=progress),
                "Failed to reconstruct the leg.",
            )
        else:
            done = self.runWithProgress(
                lambda progress: self.logic.reconstruct(params.apRadiograph, params.latRadiograph,
                                                        preset=params.preset, progress=progress),
                "Failed to reconstruct the spine.",
            )
        if done is not None:
            result = done["result"]
            if params.anatomy == "leg":
                summary = "Reconstructed " + ", ".join(
                    f"{bone} ({'converged' if r.registration.converged else 'did not converge'})"
                    for bone, r in result.bones.items()) + "."
            else:
                summary = (f"Reconstructed {', '.join(result.reconstruction.points) or 'no level'}; converged: "
                           f"{', '.join(result.converged) or 'none'} ({sum(result.seconds.values()):.0f} s).")
            self.ui.statusLabel.text = "\n".join([summary] + list(result.messages))
            self._showTable(done["table"])

    def _showTable(self, table):
        if table is not None:
            slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
            slicer.app.applicationLogic().PropagateTableSelection()


    def onRegisterButton(self):
        params = self._parameterNode
        radiographs = [node for node in (params.apRadiograph, params.latRadiograph) if node is not None]
        done = self.runWithProgress(
            lambda progress: self.logic.registerToRadiographs(params.inputCT, radiographs, params.inputLabelMap,
                                                              params.labelTable, progress=progress),
            "Failed to register the CT to the radiographs.",
        )
        if done is not None:
            self.ui.statusLabel.text = "\n".join(
                f"{'CT' if name == 'volume' else name}: image agreement {', '.join(f'{c:.2f}' for c in r.ncc)}"
                + ("" if r.converged else " (did not converge)") for name, r in done["results"].items())


class BiplanarReconTest(ScriptedLoadableModuleTest):
    """Runs the same self-tests as the headless pytest suite, on Slicer's own scene."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        from BiplanarReconLib.selftests import SELF_TESTS
        from BoneReconLib.app_context import get_context

        for test in SELF_TESTS:
            self.setUp()
            self.delayDisplay(f"Running {test.__name__}")
            with tempfile.TemporaryDirectory() as tmp:
                test(get_context(), Path(tmp))
        self.delayDisplay("BiplanarRecon self-tests passed")
