"""DepthRecon: one radiograph -> bone mask + front/back depth maps -> 3D bone surfaces.

Slicer-facing shell only (module description, widget, self-test). All computation is in
``DepthReconLib`` and ``BoneReconLib``, which run without Qt and headless.
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

from DepthReconLib import DepthReconLogic  # noqa: E402,F401  (re-exported: GUI-free logic)
from DepthReconLib.logic import ANATOMIES  # noqa: E402
from BoneReconLib.widget_helpers import BoneReconWidgetMixin  # noqa: E402


class DepthRecon(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Depth Recon"
        self.parent.categories = ["BoneRecon"]
        self.parent.dependencies = []
        self.parent.contributors = ["BoneRecon developers"]
        self.parent.helpText = (
            "Bones from one calibrated radiograph through per-pixel front/back depth maps: the bundled "
            "network (wrist) finds each bone's mask and depths, which are back-projected through the "
            "imaging geometry into one model per bone and a label map. The module also builds one "
            "surface model per bone of a CT label map. See the project README."
        )
        self.parent.acknowledgementText = "Part of the BoneRecon extension."


@parameterNodeWrapper
class DepthReconParameterNode:
    """Module settings, saved with the scene."""

    inputLabelMap: vtkMRMLLabelMapVolumeNode
    smoothing: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    radiograph: vtkMRMLScalarVolumeNode
    anatomy: Annotated[str, Choice(list(ANATOMIES))] = "wrist"
    trainingCT: vtkMRMLScalarVolumeNode
    trainingPlacement: Annotated[str, Choice(["standard", "as-is"])] = "standard"
    trainingCases: Annotated[int, WithinRange(1, 100000)] = 100


class DepthReconWidget(BoneReconWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    parameterNodeClass = DepthReconParameterNode
    applyToolTip = "Build one surface model per label."
    missingInputToolTip = "Select a bone label map."

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.logic = DepthReconLogic()
        self.setupModuleWidget(slicer.util.loadUI(self.resourcePath("UI/DepthRecon.ui")))
        self.ui.reconstructButton.connect("clicked(bool)", self.onReconstructButton)
        self.ui.makeTrainingDataButton.connect("clicked(bool)", self.onMakeTrainingDataButton)

    def _checkCanApply(self, caller=None, event=None):
        super()._checkCanApply(caller, event)
        params = self._parameterNode
        self.ui.reconstructButton.enabled = bool(params and params.radiograph) and self._running is None
        self.ui.makeTrainingDataButton.enabled = bool(
            params and params.trainingCT and params.inputLabelMap) and self._running is None

    def onApplyButton(self):
        params = self._parameterNode
        models = self.runWithProgress(
            lambda progress: self.logic.createBoneModels(
                params.inputLabelMap, smoothing=params.smoothing, progress=progress
            )[1],
            "Failed to build the bone models.",
        )
        if models is not None:
            self.ui.statusLabel.text = "Models: " + ", ".join(models)

    def onReconstructButton(self):
        params = self._parameterNode
        geometry = self.ui.geometryPathLineEdit.currentPath.strip()

        def work(progress):
            if geometry:
                self.logic.setGeometry(params.radiograph, geometry)
            return self.logic.reconstructFromRadiograph(params.radiograph, params.anatomy, progress=progress)

        done = self.runWithProgress(work, "Failed to reconstruct the bones.")
        if done is not None:
            result = done["result"]
            lines = [f"Reconstructed {', '.join(result.prediction.found)} "
                     f"({sum(result.seconds.values()):.1f} s)."]
            if result.prediction.message:
                lines.append(result.prediction.message)
            self.ui.statusLabel.text = "\n".join(lines)

    def onMakeTrainingDataButton(self):
        params = self._parameterNode
        folder = self.ui.trainingFolderPathLineEdit.currentPath.strip()
        geometry = self.ui.geometryPathLineEdit.currentPath.strip()
        if not folder:
            slicer.util.errorDisplay("Choose the output folder of the training data.")
            return
        manifest = self.runWithProgress(
            lambda progress: self.logic.makeTrainingData(
                [(params.trainingCT, params.inputLabelMap)], folder,
                radiographNode=None if geometry else params.radiograph, geometryPath=geometry or None,
                cases=params.trainingCases, placement=params.trainingPlacement, progress=progress),
            "Failed to make the training data.",
            cancelledMessage="Cancelled; the cases written so far are kept: make the training data again with the "
                             "same settings to finish the folder.",
        )
        if manifest is not None:
            self.ui.statusLabel.text = (f"Wrote {len(manifest['cases'])} cases to {folder} "
                                        f"({manifest['cases_per_minute']:.0f} per minute).")


class DepthReconTest(ScriptedLoadableModuleTest):
    """Runs the same self-tests as the headless pytest suite, on Slicer's own scene."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        from DepthReconLib.selftests import SELF_TESTS
        from BoneReconLib.app_context import get_context

        for test in SELF_TESTS:
            self.setUp()
            self.delayDisplay(f"Running {test.__name__}")
            with tempfile.TemporaryDirectory() as tmp:
                test(get_context(), Path(tmp))
        self.delayDisplay("DepthRecon self-tests passed")
