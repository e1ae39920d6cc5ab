"""Static checks that the Slicer extension is complete and consistent (no Slicer build needed)."""

import ast
import re
from pathlib import Path

import pytest
from static_checks import cmake_list, files_under, parameter_node_fields, ui_problems, ui_references

REPO = Path(__file__).resolve().parents[1]
MODULES = ["BiplanarRecon", "DepthRecon"]
GUI_MODULES = ("qt", "ctk", "PythonQt")
LIBRARIES = [REPO / "BoneReconLib", REPO / "BiplanarRecon" / "BiplanarReconLib", REPO / "DepthRecon" / "DepthReconLib"]


def module_source(module):
    return (REPO / module / f"{module}.py").read_text()


def widget_sources(module):
    """The widget's own file plus the shared widget mixin it inherits from (both use self.ui)."""
    return [module_source(module), (REPO / "BoneReconLib" / "widget_helpers.py").read_text()]


def module_ui(module):
    return (REPO / module / "Resources" / "UI" / f"{module}.ui").read_text()


@pytest.mark.parametrize("module", MODULES)
def test_widget_code_matches_ui_and_parameter_node(module):
    for source in widget_sources(module):
        assert ui_problems(source, module_ui(module), parameter_source=module_source(module)) == []
    used = set().union(*(ui_references(s) for s in widget_sources(module)))
    assert {"applyButton", "cancelButton", "progressBar", "statusLabel"} <= used  # the check saw the code
    fields = parameter_node_fields(module_source(module))[f"{module}ParameterNode"]
    assert "inputLabelMap" in fields and "smoothing" in fields


def test_ui_check_catches_mistakes():
    source, ui = module_source("BiplanarRecon"), module_ui("BiplanarRecon")
    broken_code = source.replace("self.ui.loadSampleButton.connect", "self.ui.loadSampleButon.connect")
    assert ui_problems(broken_code, ui) == [
        "self.ui.loadSampleButon is used but the .ui defines no widget named 'loadSampleButon'"]
    broken_ui = ui.replace("<string>smoothing</string>", "<string>smoothingFactor</string>")
    assert ui_problems(source, broken_ui) == [
        "widget 'smoothingSliderWidget' is bound to SlicerParameterName 'smoothingFactor' "
        "which the parameter node class does not define"]
    wrong_type = source.replace('labelTable: Annotated[str, Choice(list(LABEL_TABLES))] = "totalsegmentator"',
                                'labelTable: str = "totalsegmentator"')
    assert ui_problems(wrong_type, ui) == [
        "widget 'labelTableComboBox' (QComboBox) needs a value with a Choice(...) annotation, "
        "but 'labelTable' is annotated str"]
    no_wrapper = source.replace("@parameterNodeWrapper", "")
    assert "expected one @parameterNodeWrapper class, found 0" in ui_problems(no_wrapper, ui)


@pytest.mark.parametrize("module", MODULES)
def test_module_file_has_the_four_classes(module):
    tree = ast.parse(module_source(module))
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    bases = lambda name: {b.id if isinstance(b, ast.Name) else b.attr for b in classes[name].bases}  # noqa: E731
    assert "ScriptedLoadableModule" in bases(module)
    assert "ScriptedLoadableModuleWidget" in bases(f"{module}Widget")
    assert "ScriptedLoadableModuleTest" in bases(f"{module}Test")
    imports = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == f"{module}Lib"]
    assert any(alias.name == f"{module}Logic" for n in imports for alias in n.names), "XLogic must be re-exported"
    test_source = ast.get_source_segment(module_source(module), classes[f"{module}Test"])
    assert "SELF_TESTS" in test_source and "runTest" in test_source


@pytest.mark.parametrize("module", MODULES)
def test_module_cmake_lists_every_file(module):
    cmake = (REPO / module / "CMakeLists.txt").read_text()
    subs = {"MODULE_NAME": module}
    listed = cmake_list(cmake, "MODULE_PYTHON_SCRIPTS", subs) + cmake_list(cmake, "MODULE_PYTHON_RESOURCES", subs)
    assert sorted(listed) == sorted(files_under(REPO / module))
    assert re.search(r"slicerMacroBuildScriptedModule\(.*WITH_GENERIC_TESTS.*\)", cmake, re.S)
    assert f"Resources/UI/{module}.ui" in listed and f"Resources/Icons/{module}.png" in listed


def test_top_level_cmake():
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r"set\(EXTENSION_DEPENDS\s+PyTorch\)", cmake)
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_DESCRIPTION", "EXTENSION_CATEGORY", "EXTENSION_ICONURL"):
        assert re.search(r"set\(" + key + r'\s+"[^"]+"\)', cmake), key
    assert re.findall(r"add_subdirectory\((\w+)\)", cmake) == MODULES
    listed = cmake_list(cmake, "BoneReconLib_PYTHON_SCRIPTS", {})
    listed += cmake_list(cmake, "BoneReconLib_PYTHON_RESOURCES", {})
    assert sorted(listed) == sorted(f"BoneReconLib/{f}" for f in files_under(REPO / "BoneReconLib"))


@pytest.mark.parametrize("module", MODULES)
def test_icon_is_a_128_px_png(module):
    data = (REPO / module / "Resources" / "Icons" / f"{module}.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (128, 128)


def _imports(path):
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("library", LIBRARIES, ids=lambda p: p.name)
def test_libraries_never_import_qt(library):
    for path in library.rglob("*.py"):
        gui = {n for n in _imports(path) if n.split(".")[0] in GUI_MODULES or n == "slicer.ScriptedLoadableModule"}
        assert not gui, f"{path.relative_to(REPO)} imports {gui}: logic and core must run without Qt"


def test_data_flows_one_way():
    """BoneReconLib is below the modules: it never imports their packages."""
    for path in (REPO / "BoneReconLib").rglob("*.py"):
        upward = {n for n in _imports(path) if n.split(".")[0] in ("BiplanarReconLib", "DepthReconLib", *MODULES)}
        assert not upward, f"{path.relative_to(REPO)} reaches up into {upward}"
