"""Module parameter nodes without Qt: the same singleton node Slicer's ScriptedLoadableModuleLogic uses.

A module's settings live in one ``vtkMRMLScriptedModuleNode`` per scene (singleton tag = module
name), so they are saved with the scene. In Slicer the widget wraps this node with its
``@parameterNodeWrapper`` class; headless code reads/writes it directly.
"""


def get_parameter_node(scene, module_name: str):
    node = scene.GetSingletonNode(module_name, "vtkMRMLScriptedModuleNode")
    if node is not None:
        return node
    node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
    node.UnRegister(None)  # CreateNodeByClass returns an owned reference
    node.SetSingletonTag(module_name)
    node.SetName(scene.GenerateUniqueName(module_name))
    node.SetAttribute("ModuleName", module_name)
    return scene.AddNode(node)
