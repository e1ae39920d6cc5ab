"""Base of the modules' GUI-free logic classes: the scene they work on and their parameter node.

A module's settings live in one ``vtkMRMLScriptedModuleNode`` per scene (singleton tag = module
name), the node Slicer's ScriptedLoadableModuleLogic uses, so they are saved with the scene. In
Slicer the widget wraps it in the module's ``@parameterNodeWrapper`` class; headless code reads
and writes it directly. No Qt here.
"""

from __future__ import annotations

from .app_context import get_context


def get_parameter_node(scene, module_name: str):
    """The module's singleton parameter node in ``scene`` (created on first use)."""
    node = scene.GetSingletonNode(module_name, "vtkMRMLScriptedModuleNode")
    if node is not None:
        return node
    node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
    node.UnRegister(None)  # CreateNodeByClass returns an owned reference
    node.SetSingletonTag(module_name)
    node.SetName(scene.GenerateUniqueName(module_name))
    node.SetAttribute("ModuleName", module_name)
    return scene.AddNode(node)


class ModuleLogic:
    """MRML nodes in, MRML nodes out. ``scene`` defaults to the application's (or headless) scene."""

    moduleName = ""

    def __init__(self, scene=None):
        self._scene = scene

    @property
    def scene(self):
        return self._scene if self._scene is not None else get_context().scene

    def getParameterNode(self):
        """The module's singleton parameter node in the scene (created on first use)."""
        return get_parameter_node(self.scene, self.moduleName)
