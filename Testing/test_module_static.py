"""Static checks of the Slicer module, its .ui and the extension packaging (Slicer cannot run here).

The module file is parsed (ast), never imported: it needs Slicer's application modules.
"""

from __future__ import annotations

import ast
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "MedSegAI" / "MedSegAI.py"
UI = REPO / "MedSegAI" / "Resources" / "UI" / "MedSegAI.ui"
TOP_CMAKE = REPO / "CMakeLists.txt"
MODULE_CMAKE = REPO / "MedSegAI" / "CMakeLists.txt"
CATALOG = REPO / "MedSegAI.json"

#: Modules the Slicer module may import at module scope: the standard library and Slicer's own.
ALLOWED_TOP_LEVEL = {"json", "logging", "os", "pathlib", "shutil", "sys", "tempfile", "typing", "ctk", "qt", "vtk", "slicer"}
HEAVY = ("torch", "monai", "maxflow", "SimpleITK", "numpy", "scipy", "MedSegAILib", "PyTorchUtils", "SampleData")


@pytest.fixture(scope="module")
def tree():
    return ast.parse(MODULE.read_text(), filename=str(MODULE))


@pytest.fixture(scope="module")
def ui_root():
    return ET.parse(UI).getroot()


def _classes(tree):
    return {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}


def _ui_widgets(ui_root):
    return {w.get("name"): w for w in ui_root.iter("widget")}


def _parameter_names(ui_root):
    out = {}
    for w in ui_root.iter("widget"):
        for p in w.findall("property"):
            if p.get("name") == "SlicerParameterName":
                out[w.get("name")] = p.find("string").text
    return out


def test_module_has_the_four_classes(tree):
    classes = _classes(tree)
    bases = {name: [ast.unparse(b) for b in c.bases] for name, c in classes.items()}
    assert "ScriptedLoadableModule" in bases["MedSegAI"]
    assert "ScriptedLoadableModuleWidget" in bases["MedSegAIWidget"]
    assert "ScriptedLoadableModuleLogic" in bases["MedSegAILogic"]
    assert "ScriptedLoadableModuleTest" in bases["MedSegAITest"]
    decorators = [ast.unparse(d) for d in classes["MedSegAIParameterNode"].decorator_list]
    assert decorators == ["parameterNodeWrapper"]


def test_nothing_heavy_at_module_scope(tree):
    imported = []
    for node in tree.body:  # only statements that run on import
        if isinstance(node, ast.Import):
            imported += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            imported.append(node.module)
    roots = {m.split(".")[0] for m in imported}
    assert roots <= ALLOWED_TOP_LEVEL, roots - ALLOWED_TOP_LEVEL
    assert not [m for m in imported if m.split(".")[0] in HEAVY]
    # MedSegAILib is imported inside functions, and the heavy packages nowhere in the module
    # except through the installer (PyTorchUtils) and the GPU query (torch, guarded).
    inner = [
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in (n.names if isinstance(n, ast.Import) else [None])
    ]
    assert any(m and m.startswith("MedSegAILib") for m in inner)
    assert not [m for m in inner if m and m.split(".")[0] in ("monai", "maxflow", "SimpleITK")]


def test_every_ui_widget_the_code_uses_exists(tree, ui_root):
    used = {
        n.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and n.value.attr == "ui"
        and isinstance(n.value.value, ast.Name) and n.value.value.id == "self"
    }
    widgets = _ui_widgets(ui_root)
    assert used, "the module uses no widget?"
    assert sorted(used - set(widgets)) == []
    for name in ("applyButton", "progressBar", "statusLabel", "exportSurfacesButton", "parametersCollapsibleButton",
                 "methodFamilyComboBox", "methodComboBox", "deviceComboBox", "seedSegmentationSelector",
                 "outputSegmentationSelector", "atlasFolderPathLineEdit", "modelComboBox", "extraChannel1Selector"):
        assert name in widgets, name
    assert widgets["parametersCollapsibleButton"].get("class") == "ctkCollapsibleButton"


def test_parameter_node_fields_match_ui_bindings(tree, ui_root):
    classes = _classes(tree)
    fields = [n.target.id for n in classes["MedSegAIParameterNode"].body if isinstance(n, ast.AnnAssign)]
    manual = None
    for n in classes["MedSegAIWidget"].body:
        if isinstance(n, ast.Assign) and n.targets[0].id == "MANUALLY_BOUND_PARAMETERS":
            manual = ast.literal_eval(n.value)
    assert manual is not None
    bound = _parameter_names(ui_root)
    assert len(set(bound.values())) == len(bound), "two widgets bound to one parameter"
    assert sorted(set(bound.values()) - set(fields)) == []  # every binding names a field
    assert sorted(set(fields) - set(bound.values()) - set(manual)) == []  # every field is shown
    assert not set(manual) & set(bound.values())


def test_parameter_node_and_run_settings_agree(tree):
    """The wrapper's run fields are the RunSettings the MedSegAILib logic builds a command from."""
    from MedSegAILib.slicer_bridge.module_logic import RunSettings

    fields = {n.target.id for n in _classes(tree)["MedSegAIParameterNode"].body if isinstance(n, ast.AnnAssign)}
    run_fields = set(RunSettings.__dataclass_fields__) - {"model"}  # model = modelFolder or the shipped model
    assert run_fields <= fields, run_fields - fields


def test_ui_is_valid_designer_xml(ui_root):
    assert ui_root.tag == "ui" and ui_root.find("class").text == "MedSegAI"
    top = ui_root.find("widget")
    assert top.get("class") == "qMRMLWidget"
    custom = {c.find("class").text for c in ui_root.iter("customwidget")}
    used = {w.get("class") for w in ui_root.iter("widget")}
    assert {c for c in used if c.startswith(("qMRML", "ctk"))} <= custom
    # Every MRML widget gets the scene through mrmlSceneChanged -> setMRMLScene.
    mrml = {w.get("name") for w in ui_root.iter("widget") if w.get("class") == "qMRMLNodeComboBox"}
    receivers = {c.find("receiver").text for c in ui_root.iter("connection") if c.find("slot").text == "setMRMLScene(vtkMRMLScene*)"}
    assert mrml == receivers
    names = [w.get("name") for w in ui_root.iter("widget")]
    assert len(names) == len(set(names))


def test_user_strings_are_translatable(tree):
    """Text given to widgets and dialogs goes through _() (Slicer's translation function)."""
    untranslated = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str) and n.value.value:
            target = ast.unparse(n.targets[0])
            if target.startswith("self.ui.") and target.endswith((".text", ".toolTip")):
                untranslated.append(target)
        if isinstance(n, ast.Call) and ast.unparse(n.func) in ("slicer.util.errorDisplay", "slicer.util.confirmOkCancelDisplay"):
            arg = n.args[0]
            if not (isinstance(arg, ast.Call) and (ast.unparse(arg.func) == "_" or ast.unparse(arg.func).endswith(".format"))):
                untranslated.append(ast.unparse(n))
    assert untranslated == []
    assert "from slicer.i18n import tr as _" in MODULE.read_text()


def test_every_medsegailib_file_is_packaged():
    cmake = MODULE_CMAKE.read_text()
    assert "slicerMacroBuildScriptedModule" in cmake and "${MODULE_NAME}.py" in cmake
    assert "Resources/UI/${MODULE_NAME}.ui" in cmake and "Resources/Icons/${MODULE_NAME}.png" in cmake
    assert (REPO / "MedSegAI" / "Resources" / "Icons" / "MedSegAI.png").exists()
    # The glob packages every .py under MedSegAILib (source dir = project root) and Resources/.
    glob = re.search(r"file\(GLOB_RECURSE MEDSEGAILIB_PYTHON_SCRIPTS(.*?)\)", cmake, re.S).group(1)
    assert "${PROJECT_SOURCE_DIR}/MedSegAILib/*.py" in glob and "RELATIVE ${PROJECT_SOURCE_DIR}" in glob
    assert "${PROJECT_SOURCE_DIR}/Resources/*" in cmake
    assert re.search(r"SOURCE_DIR \$\{PROJECT_SOURCE_DIR\}", cmake)
    py_files = list((REPO / "MedSegAILib").rglob("*.py"))
    assert len(py_files) > 20 and all(p.resolve().is_relative_to((REPO / "MedSegAILib").resolve()) for p in py_files)
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in cmake


def _cmake_set(text: str, name: str) -> str:
    m = re.search(rf'set\({name}\s+"([^"]*)"\)', text)
    assert m, name
    return m.group(1)


def test_extension_metadata_is_consistent():
    top = TOP_CMAKE.read_text()
    assert re.search(r"project\(MedSegAI\)", top)
    assert "add_subdirectory(MedSegAI)" in top
    assert _cmake_set(top, "EXTENSION_CATEGORY") == "Segmentation"
    assert _cmake_set(top, "EXTENSION_CONTRIBUTORS") == "MedSegAI project"
    assert _cmake_set(top, "EXTENSION_DEPENDS") == "PyTorch"
    assert len(_cmake_set(top, "EXTENSION_DESCRIPTION")) > 80
    icon = _cmake_set(top, "EXTENSION_ICONURL")
    shot = _cmake_set(top, "EXTENSION_SCREENSHOTURLS")
    assert icon.endswith("/MedSegAI.png") and (REPO / "MedSegAI.png").exists()
    assert shot.endswith("/docs/images/screenshot.png") and (REPO / "docs" / "images" / "screenshot.png").exists()
    catalog = json.loads(CATALOG.read_text())
    assert catalog["$schema"].startswith("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema")
    assert catalog["category"] == _cmake_set(top, "EXTENSION_CATEGORY")
    assert catalog["build_dependencies"] == _cmake_set(top, "EXTENSION_DEPENDS").split()
    assert catalog["scm_revision"] and catalog["scm_url"].endswith(".git")
    repo_url = catalog["scm_url"][: -len(".git")]
    assert _cmake_set(top, "EXTENSION_HOMEPAGE").startswith(repo_url)
    owner_repo = repo_url.split("github.com/")[1]
    assert f"raw.githubusercontent.com/{owner_repo}/" in icon and f"raw.githubusercontent.com/{owner_repo}/" in shot
    assert set(catalog) <= {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                            "build_subdirectory", "enabled", "tier"}


def test_icons_are_real_pictures():
    import struct

    for path, size in ((REPO / "MedSegAI.png", (128, 128)), (REPO / "MedSegAI" / "Resources" / "Icons" / "MedSegAI.png", (128, 128))):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", data[16:24]) == size
        assert len(data) > 5000  # a rendering, not a flat placeholder


def test_license_and_docs():
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0" in text
    assert "PyMaxflow" in text and "GPL-3.0" in text and "not bundled" in text.replace("NOT bundled", "not bundled")
    docs = (REPO / "docs" / "SLICER.md").read_text()
    assert "images/screenshot.png" in docs and "hippocampus" in docs.lower() and "cite" in docs.lower()
