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
import vtk
from slicer import vtkMRMLLabelMapVolumeNode
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
from BoneReconLib.widget_helpers import ApplyWithProgressMixin  # noqa: E402


class BiplanarRecon(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Biplanar Recon"
        self.parent.categories = ["BoneRecon"]
        self.parent.dependencies = []
        self.parent.contributors = ["BoneRecon developers"]
        self.parent.helpText = (
            "Lumbar vertebrae L1-L5 from two calibrated radiographs (AP + lateral). "
            "Today the module builds L1-L5 surface models from a CT vertebra label map; "
            "the radiograph reconstruction follows. See the project README."
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


class BiplanarReconWidget(ApplyWithProgressMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BiplanarRecon.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = BiplanarReconLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.loadSampleButton.connect("clicked(bool)", self.onLoadSampleButton)
        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(BiplanarReconParameterNode(self.logic.getParameterNode()))
        if not self._parameterNode.inputLabelMap:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLLabelMapVolumeNode")
            if first:
                self._parameterNode.inputLabelMap = first

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None):
        ready = bool(self._parameterNode and self._parameterNode.inputLabelMap) and not self.isRunning()
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = (
            "Build one surface model per lumbar vertebra (L1-L5)." if ready else "Select a vertebra label map."
        )

    def onLoadSampleButton(self):
        with slicer.util.tryWithErrorDisplay("Could not load the sample case.", waitCursor=True):
            _, labels = self.logic.loadSampleCase()
            self._parameterNode.inputLabelMap = labels
            self._parameterNode.labelTable = "totalsegmentator"

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
