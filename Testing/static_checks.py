"""Static checks of the Slicer-facing files (no Slicer needed): .ui <-> widget code <-> parameter node."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path


def ui_object_names(ui_text: str) -> set[str]:
    """Names that slicer.util.childWidgetVariables() exposes as self.ui.<name> (widgets and layouts)."""
    root = ET.fromstring(ui_text)
    return {el.get("name") for el in root.iter() if el.tag in ("widget", "layout") and el.get("name")}


def ui_parameter_names(ui_text: str) -> dict[str, tuple[str, str]]:
    """{widget name: (widget class, SlicerParameterName)} for widgets bound to the parameter node."""
    root = ET.fromstring(ui_text)
    bound = {}
    for widget in root.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[widget.get("name")] = (widget.get("class"), (prop.findtext("string") or "").strip())
    return bound


# What Slicer's parameterNodeWrapper GUI connectors accept for each widget class (from
# slicer/parameterNodeWrapper/guiConnectors.py): a test on the field's annotation text.
CONNECTOR_RULES = {
    "qMRMLNodeComboBox": ("a vtkMRML... node type", lambda a: re.search(r"\bvtkMRML\w+Node\b", a) is not None),
    "ctkSliderWidget": ("a bounded float (WithinRange)", lambda a: "float" in a and "WithinRange(" in a),
    "QDoubleSpinBox": ("a float", lambda a: "float" in a),
    "QComboBox": ("a value with a Choice(...) annotation", lambda a: "Choice(" in a),
    "QCheckBox": ("a bool", lambda a: "bool" in a),
    "QSpinBox": ("an int", lambda a: "int" in a),
}


def ui_references(module_source: str) -> set[str]:
    """Every <name> in an expression self.ui.<name> in the module file."""
    names = set()
    for node in ast.walk(ast.parse(module_source)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and node.value.attr == "ui" and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "self"):
            names.add(node.attr)
    return names


def parameter_node_fields(module_source: str) -> dict[str, dict[str, str]]:
    """{class name: {field name: annotation source}} for classes decorated with @parameterNodeWrapper."""
    classes = {}
    for node in ast.walk(ast.parse(module_source)):
        if isinstance(node, ast.ClassDef) and any(
            (isinstance(d, ast.Name) and d.id == "parameterNodeWrapper")
            or (isinstance(d, ast.Attribute) and d.attr == "parameterNodeWrapper")
            for d in node.decorator_list
        ):
            classes[node.name] = {
                s.target.id: ast.unparse(s.annotation)
                for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            }
    return classes


def ui_problems(widget_source: str, ui_text: str, parameter_source: str | None = None) -> list[str]:
    """Everything that would break at run time in Slicer between widget code and its .ui.

    ``parameter_source`` is the file holding the @parameterNodeWrapper class (default: the widget's).
    """
    problems = []
    defined = ui_object_names(ui_text)
    for name in sorted(ui_references(widget_source) - defined):
        problems.append(f"self.ui.{name} is used but the .ui defines no widget named '{name}'")
    wrappers = parameter_node_fields(parameter_source or widget_source)
    if len(wrappers) != 1:
        problems.append(f"expected one @parameterNodeWrapper class, found {len(wrappers)}")
    fields = {name: annotation for fields in wrappers.values() for name, annotation in fields.items()}
    for widget, (widget_class, parameter) in sorted(ui_parameter_names(ui_text).items()):
        if parameter not in fields:
            problems.append(f"widget '{widget}' is bound to SlicerParameterName '{parameter}' "
                            "which the parameter node class does not define")
        elif widget_class not in CONNECTOR_RULES:
            problems.append(f"widget '{widget}' is a {widget_class}, which no parameter connector handles here")
        elif not CONNECTOR_RULES[widget_class][1](fields[parameter]):
            problems.append(f"widget '{widget}' ({widget_class}) needs {CONNECTOR_RULES[widget_class][0]}, "
                            f"but '{parameter}' is annotated {fields[parameter]}")
    return problems


def cmake_list(cmake_text: str, variable: str, substitutions: dict[str, str]) -> list[str]:
    """Items of set(<variable> ...) in a CMakeLists.txt, with ${VAR} substituted."""
    match = re.search(r"set\(\s*" + re.escape(variable) + r"\s+(.*?)\)", cmake_text, re.S)
    if not match:
        return []
    items = match.group(1).split()
    for key, value in substitutions.items():
        items = [item.replace("${" + key + "}", value) for item in items]
    return items


def files_under(folder: Path) -> set[str]:
    """Files a build must list: everything but CMakeLists.txt and Python caches."""
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != "CMakeLists.txt" and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
