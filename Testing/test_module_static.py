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
ALLOWED_TOP_LEVEL = {"codecs", "functools", "importlib", "json", "logging", "os", "pathlib", "shutil", "sys", "tempfile", "time", "typing",
                     "ctk", "qt", "vtk", "slicer"}
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
    # The parameter node class is made by parameterNodeWrapper from MedSegAILib.runs.settings.
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    source = ast.unparse(functions["parameterNodeClass"])
    assert "PANEL_FIELDS" in source and "parameterNodeWrapper(type(" in source


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
                 "outputSegmentationSelector", "atlasFolderPathLineEdit", "modelComboBox", "extraChannel1Selector",
                 "show3DButton", "showTableButton", "logTextEdit", "surfaceSegmentationSelector", "modelDescriptionLabel"):
        assert name in widgets, name
    assert widgets["parametersCollapsibleButton"].get("class") == "ctkCollapsibleButton"
    assert widgets["show3DButton"].get("class") == "qMRMLSegmentationShow3DButton"


def _module_constant(tree, name):
    for n in tree.body:
        if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name) and n.targets[0].id == name:
            return ast.literal_eval(n.value)
    raise AssertionError(name)


def test_parameter_node_fields_match_ui_bindings(tree, ui_root):
    """Every field of the one settings definition is shown: bound by SlicerParameterName, or
    kept in sync by hand (and then not also bound); no binding names an unknown field."""
    from MedSegAILib.runs.settings import PANEL_FIELDS

    fields = [f.name for f in PANEL_FIELDS]
    manual = _module_constant(tree, "MANUALLY_BOUND_PARAMETERS")
    paths = _module_constant(tree, "PATH_WIDGETS")
    bound = _parameter_names(ui_root)
    assert len(set(bound.values())) == len(bound), "two widgets bound to one parameter"
    assert sorted(set(bound.values()) - set(fields)) == []  # every binding names a field
    assert sorted(set(fields) - set(bound.values()) - set(manual)) == []  # every field is shown
    assert not set(manual) & set(bound.values())
    widgets = _ui_widgets(ui_root)
    # Folder paths are str fields bound by hand: the wrapper binds ctkPathLineEdit to Path only,
    # whose empty value shows as ".".
    assert {f.name for f in PANEL_FIELDS if f.kind == "path"} == set(paths) <= set(manual)
    assert all(widgets[w].get("class") == "ctkPathLineEdit" for w in paths.values())
    # Combos bound by the wrapper need a Choice (it fills them from the choices).
    for widget, name in bound.items():
        field = next(f for f in PANEL_FIELDS if f.name == name)
        if widgets[widget].get("class") == "QComboBox":
            assert field.choices, f"{name} is bound to a combo box without choices"
        if widgets[widget].get("class") == "qMRMLNodeComboBox":
            assert field.kind in ("volume", "segmentation"), name


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


# --- what Slicer 5.8 and the extension catalog require ---------------------------------------------


def _ruff():
    import shutil
    import sys

    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert exe, "ruff is part of the test extra"
    return exe


def test_ruff_passes_on_the_module_and_the_library():
    """pyflakes rules (F) catch what broke every install: `import slicer.packaging` inside a
    function made `slicer` local there (F823, UnboundLocalError at run time)."""
    import subprocess

    out = subprocess.run([_ruff(), "check", "MedSegAI", "MedSegAILib"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_catches_a_shadowed_slicer_name(tmp_path):
    """The rule set in use really catches the defect (the check is not vacuous)."""
    import subprocess

    bad = tmp_path / "bad.py"
    bad.write_text("import slicer\n\n\ndef f():\n    slicer.util.confirmOkCancelDisplay('x')\n    import slicer.packaging\n")
    out = subprocess.run([_ruff(), "check", "--config", str(REPO / "pyproject.toml"), str(bad)], capture_output=True, text=True)
    assert out.returncode == 1 and "F823" in out.stdout


def test_no_function_imports_into_the_slicer_name(tree):
    offenders = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for n in ast.walk(fn):
                if isinstance(n, ast.Import) and any(a.name.split(".")[0] == "slicer" and a.asname is None for a in n.names):
                    offenders.append(fn.name)
    assert offenders == []


def test_everything_slicer_loads_parses_as_python_3_9():
    """Slicer 5.8 runs Python 3.9: the module and every MedSegAILib file must parse as 3.9 and
    use no 3.10 annotation syntax at run time (ruff's FA102 with target py39)."""
    import subprocess

    files = [MODULE, *sorted((REPO / "MedSegAILib").rglob("*.py"))]
    for path in files:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))
    out = subprocess.run(
        [_ruff(), "check", "--isolated", "--target-version", "py39", "--select", "FA102", "MedSegAI", "MedSegAILib"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout
    assert "tomllib" not in "".join(p.read_text() for p in files)


def test_apis_newer_than_5_8_are_guarded(tree):
    """slicer.packaging and registerCustomSampleDataCategory exist from Slicer 5.12 only."""
    text = MODULE.read_text()
    assert 'importlib.import_module("slicer.packaging")' in text and "except ImportError" in text
    assert "slicer.util.pip_install(" in text  # the 5.8 / 5.10 path
    assert 'hasattr(logic, "registerCustomSampleDataCategory")' in text
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    calls = [ast.unparse(n.func) for n in ast.walk(functions["registerSampleData"]) if isinstance(n, ast.Call)]
    assert "logic.registerCustomSampleDataCategory" in calls
    # connectGui returns no tag on 5.8; the module uses connectParametersToGui, which does.
    assert ".connectGui(" not in text and ".connectParametersToGui(" in text


def test_qprocess_is_kept_and_freed_after_its_signals():
    """The QProcess has a parent (PythonQt does not delete it when a reference drops), is
    connected by full signatures, and is freed only with deleteLater when the run releases it;
    the run's reactions go through QTimer.singleShot(0, ...), never inside a signal."""
    text = MODULE.read_text()
    assert "qt.QProcess(self._parent)" in text and "process.deleteLater()" in text
    assert '"finished(int,QProcess::ExitStatus)"' in text and '"errorOccurred(QProcess::ProcessError)"' in text
    assert "stateChanged" not in text
    assert '"call_soon": lambda fn: qt.QTimer.singleShot(0, fn)' in text and text.count("MedSegAIProcess(slicer.app)") == 2 and text.count("**self._runArguments(") == 2
    assert "subprocess.run" not in text  # the self-test goes through the same path as Apply


def test_catalog_entry_passes_the_extension_index_checks():
    """The checks of Slicer/ExtensionsIndex scripts/check_description_files.py that can run
    without the network: repository name, extension name, category, scm_url, CMake fields, licence."""
    top = TOP_CMAKE.read_text()
    catalog_text = CATALOG.read_text()
    assert "\r" not in catalog_text
    catalog = json.loads(catalog_text)
    assert set(catalog) >= {"$schema", "category", "scm_url"}
    repo_name = catalog["scm_url"].rstrip("/").rsplit("/", 1)[1].removesuffix(".git")
    assert repo_name.startswith(("Slicer", "Slicer-", "Slicer_", "SlicerExtension-", "SlicerExtension_")), repo_name
    assert not CATALOG.stem.lower().startswith("slicer")
    assert catalog["scm_url"].split("://")[0] in ("git", "https")
    assert re.search(r"project\s*\(\s*MedSegAI\s*\)", top)
    assert re.search(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', top)
    assert re.search(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', top)
    assert (REPO / "LICENSE").is_file()
    readme = (REPO / "README.md").read_text()
    assert "3d-slicer-extension" in readme  # the GitHub topic the index requires, documented
    assert "Slicer 5.8" in readme and "5.8" in _cmake_set(top, "EXTENSION_DESCRIPTION")


def test_minimum_slicer_check_comes_after_find_package():
    """Slicer_VERSION_MAJOR/MINOR are set by find_package(Slicer): a check before it never runs."""
    top = TOP_CMAKE.read_text()
    assert top.index("find_package(Slicer REQUIRED)") < top.index('VERSION_LESS "5.8"')


def test_segment_editor_effect_follows_slicers_template():
    """Checked against Slicer v5.8.0: Utilities/Templates/Modules/ScriptedSegmentEditorEffect and
    SegmentEditorEffects/AbstractScriptedSegmentEditorAutoCompleteEffect.py (computePreviewLabelmap)."""
    effect = REPO / "MedSegAI" / "MedSegAIEffects" / "SegmentEditorEffect.py"
    tree = ast.parse(effect.read_text(), feature_version=(3, 9))
    classes = _classes(tree)
    assert [ast.unparse(b) for b in classes["SegmentEditorEffect"].bases] == ["AbstractScriptedSegmentEditorAutoCompleteEffect"]
    methods = {n.name: n for n in classes["SegmentEditorEffect"].body if isinstance(n, ast.FunctionDef)}
    assert {"__init__", "clone", "icon", "helpText", "computePreviewLabelmap", "setupOptionsFrame", "reset"} <= set(methods)
    assert [a.arg for a in methods["computePreviewLabelmap"].args.args] == ["self", "mergedImage", "outputLabelmap"]
    assert "GraphCutPreview" in ast.unparse(methods["computePreviewLabelmap"])  # the library computes it
    module = MODULE.read_text()
    assert 'slicer.app.connect("startupCompleted()", registerEditorEffect)' in module
    assert "qSlicerSegmentEditorScriptedEffect(None)" in module and "instance.self().register()" in module
    assert "MedSegAIEffects/SegmentEditorEffect.py" in MODULE_CMAKE.read_text()


def _library_imports():
    """{module: set of MedSegAILib modules it imports} (absolute names), read from the source."""
    root = REPO / "MedSegAILib"
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        package = parts if path.name == "__init__.py" else parts[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.startswith("MedSegAILib"):
                    found.add(target)
        out[name] = found
    return out


def test_no_package_cycles_through_the_slicer_bridge():
    """slicer_bridge is Slicer-only: no method, output, run or core module imports it; and the
    deep runtimes do not import each other in a circle."""
    imports = _library_imports()
    for module, targets in imports.items():
        if module.startswith(("MedSegAILib.methods", "MedSegAILib.outputs", "MedSegAILib.core", "MedSegAILib.runs", "MedSegAILib.io")):
            assert not [t for t in targets if t.startswith("MedSegAILib.slicer_bridge")], module
    assert not [t for t in imports["MedSegAILib.methods.deep.onnx_runtime"] if t.endswith("deep.inference")]
    assert "MedSegAILib.core.terminology" in imports["MedSegAILib.methods.deep.inference"]


def test_closed_surfaces_are_built_on_request_only():
    """Building thousands of closed surfaces on the GUI thread after every run froze Slicer: the
    Show 3D button builds them when the user asks."""
    text = MODULE.read_text()
    assert "CreateClosedSurfaceRepresentation" not in text and "show3DButton.setSegmentationNode" in text
