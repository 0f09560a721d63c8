"""MedSegAI: a Slicer panel over MedSegAILib (classical, atlas and deep segmentation).

The panel is thin on purpose: every decision (which packages a method needs, the command line
of a run, reading results into nodes) lives in ``MedSegAILib.slicer_bridge`` where pytest
covers it. Long work runs in a separate ``PythonSlicer -m MedSegAILib.cli segment`` process,
so Slicer stays responsive and Cancel can stop it without touching the scene.

Only Slicer's own modules are imported at module scope; MedSegAILib and its optional
dependencies (torch, MONAI, PyMaxflow) are imported when first needed.
"""

import json
import logging
import os
import pathlib
import shutil
import sys
import tempfile
from typing import Annotated, Optional

import ctk
import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


def _ensureLibraryOnPath() -> str:
    """Make ``import MedSegAILib`` work; returns the folder that holds MedSegAILib.

    Installed, MedSegAILib sits beside this file (the extension packages it there); in a source
    checkout it is one folder up.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (here, os.path.dirname(here)):
        if os.path.isdir(os.path.join(folder, "MedSegAILib")):
            if folder not in sys.path:
                sys.path.insert(0, folder)
            return folder
    raise RuntimeError(_("MedSegAILib was not found beside the MedSegAI module"))


#
# MedSegAI
#


class MedSegAI(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedSegAI")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []  # PyTorch (for deep methods) is an extension dependency
        self.parent.contributors = ["MedSegAI project"]
        self.parent.helpText = _(
            "Segment images with classical, atlas-based or deep-learning methods. Each run gives a "
            "segmentation with one segment per object (named, coloured, with standard terminology), a "
            "per-voxel uncertainty map and a table of object measurements; surfaces can be exported "
            "as STL or OBJ. Research use only; not a medical device. "
            '<a href="https://github.com/medsegai/MedSegAI#medsegai-in-3d-slicer">Documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "Sample data: Medical Segmentation Decathlon, Task04 Hippocampus (Vanderbilt University "
            "Medical Center), CC-BY-SA 4.0."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Sample data
#


def registerSampleData():
    """Register the bundled hippocampus cases (file URIs with SHA-256 checksums) with Sample Data."""
    import SampleData

    _ensureLibraryOnPath()
    from MedSegAILib.slicer_bridge.module_logic import file_uri, sample_cases

    iconsPath = os.path.join(os.path.dirname(__file__), "Resources", "Icons")
    SampleData.SampleDataLogic.registerCustomSampleDataCategory("MedSegAI", title=_("MedSegAI"))
    for case in sample_cases():
        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category="MedSegAI",
            sampleName=case.name,
            thumbnailFileName=os.path.join(iconsPath, "MedSegAI.png"),
            uris=[file_uri(case.image), file_uri(case.label)],
            fileNames=[case.image.name, case.label.name],
            nodeNames=[case.image.name.split(".")[0], case.label.name.split(".")[0]],
            checksums=[f"SHA256:{case.image_sha256}", f"SHA256:{case.label_sha256}"],
            loadFileTypes=["VolumeFile", "SegmentationFile"],
        )


#
# MedSegAIParameterNode
#


@parameterNodeWrapper
class MedSegAIParameterNode:
    """Everything the panel shows; saved with the scene.

    Fields bound to .ui widgets through their SlicerParameterName property, except those in
    MedSegAIWidget.MANUALLY_BOUND_PARAMETERS (combos filled from the method registry and the
    per-method parameter form).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    extraChannel1: vtkMRMLScalarVolumeNode
    extraChannel2: vtkMRMLScalarVolumeNode
    methodFamily: str = "classical"
    method: str = "otsu"
    methodParameters: str = "{}"
    model: str = ""
    modelFolder: pathlib.Path
    atlasFolder: pathlib.Path
    seedSegmentation: vtkMRMLSegmentationNode
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    minIslandMm3: Annotated[float, WithinRange(0.0, 1.0e6)] = 0.0
    keepLargest: bool = False
    keepFraction: Annotated[float, WithinRange(0.0, 1.0)] = 0.0
    fillHoles: bool = False
    connectivity: Annotated[int, Choice([26, 6])] = 26
    radiomics: bool = True
    outputSegmentation: vtkMRMLSegmentationNode
    surfaceFormat: Annotated[str, Choice(["stl", "obj"])] = "stl"
    surfaceSmoothing: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    surfaceCoordinates: Annotated[str, Choice(["LPS", "RAS"])] = "LPS"
    surfaceFolder: pathlib.Path


def _pathText(path) -> str:
    text = str(path) if path is not None else ""
    return "" if text in ("", ".") else text


#
# MedSegAIWidget
#


class MedSegAIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    #: Parameter node fields the widget keeps in sync itself (not through SlicerParameterName).
    MANUALLY_BOUND_PARAMETERS = ("methodFamily", "method", "methodParameters", "model")

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._parameterWidgets = {}
        self._updatingGui = False

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedSegAI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = MedSegAILogic()
        self.logic.progressCallback = self.onProgress
        self.logic.finishedCallback = self.onFinished

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self._fillMethodCombos()
        self.ui.methodFamilyComboBox.connect("currentIndexChanged(int)", self.onMethodFamilyChanged)
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self.onMethodChanged)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.exportSurfacesButton.connect("clicked(bool)", self.onExportSurfaces)
        self.ui.deviceInfoLabel.text = self.logic.deviceDescription()

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.logic.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)

    def onSceneStartClose(self, caller, event) -> None:
        self.logic.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode: Optional[MedSegAIParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
            self._updateGui()

    # --- method choice and its parameters ---------------------------------------------------

    def _fillMethodCombos(self) -> None:
        from MedSegAILib.slicer_bridge.module_logic import methods_by_family

        self._methods = methods_by_family()
        self.ui.methodFamilyComboBox.clear()
        for family in self._methods:
            self.ui.methodFamilyComboBox.addItem(_(family.capitalize()), family)
        self.ui.modelComboBox.clear()
        for name in self.logic.shippedModels():
            self.ui.modelComboBox.addItem(name, name)

    def _updateGui(self, caller=None, event=None) -> None:
        """Parameter node -> the manually bound widgets, and the Apply/Export states."""
        if self._parameterNode is None or self._updatingGui:
            return
        self._updatingGui = True
        try:
            p = self._parameterNode
            familyIndex = self.ui.methodFamilyComboBox.findData(p.methodFamily)
            if familyIndex >= 0 and familyIndex != self.ui.methodFamilyComboBox.currentIndex:
                self.ui.methodFamilyComboBox.currentIndex = familyIndex
            self._fillMethodsOfFamily(p.methodFamily)
            methodIndex = self.ui.methodComboBox.findData(p.method)
            if methodIndex >= 0 and methodIndex != self.ui.methodComboBox.currentIndex:
                self.ui.methodComboBox.currentIndex = methodIndex
            modelIndex = self.ui.modelComboBox.findData(p.model)
            if modelIndex >= 0:
                self.ui.modelComboBox.currentIndex = modelIndex
            self._buildParameterForm()
            spec = self._currentSpec()
            needs = spec.needs if spec else ()
            deep = spec is not None and spec.family == "deep"
            self.ui.modelComboBox.enabled = "model" in needs
            self.ui.modelFolderPathLineEdit.enabled = "model" in needs
            self.ui.atlasFolderPathLineEdit.enabled = "atlases" in needs
            self.ui.seedSegmentationSelector.enabled = "seeds" in needs
            self.ui.deviceComboBox.enabled = deep
            self.ui.methodDescriptionLabel.text = spec.summary if spec else ""
        finally:
            self._updatingGui = False
        self._updateButtons()

    def _updateButtons(self) -> None:
        p = self._parameterNode
        running = self.logic.isRunning()
        if running:
            self.ui.applyButton.text = _("Cancel")
            self.ui.applyButton.toolTip = _("Stop the running segmentation; the scene is left as it was.")
            self.ui.applyButton.enabled = True
        else:
            self.ui.applyButton.text = _("Apply")
            ready = bool(p and p.inputVolume)
            self.ui.applyButton.enabled = ready
            self.ui.applyButton.toolTip = _("Run the segmentation in the background.") if ready else _("Select an input volume.")
        self.ui.exportSurfacesButton.enabled = bool(p and self._segmentationToExport() and _pathText(p.surfaceFolder)) and not running

    def _segmentationToExport(self):
        """The chosen output segmentation, else the one the last run created (never reused as output)."""
        if self._parameterNode and self._parameterNode.outputSegmentation:
            return self._parameterNode.outputSegmentation
        last = self.logic.lastNodes.segmentation if self.logic.lastNodes else None
        return last if last is not None and last.GetScene() is not None else None

    def _fillMethodsOfFamily(self, family: str) -> None:
        names = [s.name for s in self._methods.get(family, [])]
        current = [self.ui.methodComboBox.itemData(i) for i in range(self.ui.methodComboBox.count)]
        if names == current:
            return
        wasBlocked = self.ui.methodComboBox.blockSignals(True)
        self.ui.methodComboBox.clear()
        for spec in self._methods.get(family, []):
            self.ui.methodComboBox.addItem(spec.name, spec.name)
        self.ui.methodComboBox.blockSignals(wasBlocked)

    def _currentSpec(self):
        for specs in self._methods.values():
            for spec in specs:
                if self._parameterNode and spec.name == self._parameterNode.method:
                    return spec
        return None

    def onMethodFamilyChanged(self, index: int) -> None:
        if self._updatingGui or self._parameterNode is None or index < 0:
            return
        family = self.ui.methodFamilyComboBox.itemData(index)
        methods = self._methods.get(family, [])
        with slicer.util.NodeModify(self._parameterNode.parameterNode):
            self._parameterNode.methodFamily = family
            if methods and self._parameterNode.method not in [m.name for m in methods]:
                self._parameterNode.method = methods[0].name
                self._parameterNode.methodParameters = "{}"

    def onMethodChanged(self, index: int) -> None:
        if self._updatingGui or self._parameterNode is None or index < 0:
            return
        method = self.ui.methodComboBox.itemData(index)
        if method != self._parameterNode.method:
            with slicer.util.NodeModify(self._parameterNode.parameterNode):
                self._parameterNode.method = method
                self._parameterNode.methodParameters = "{}"

    def onModelChanged(self, index: int) -> None:
        if self._updatingGui or self._parameterNode is None or index < 0:
            return
        self._parameterNode.model = self.ui.modelComboBox.itemData(index)

    def _buildParameterForm(self) -> None:
        """One widget per parameter of the current method (types from the method's defaults)."""
        from MedSegAILib.slicer_bridge.module_logic import parameter_kind, parameter_label, parameters_from_json

        spec = self._currentSpec()
        if spec is None:
            return
        values = parameters_from_json(self._parameterNode.methodParameters, spec.name)
        layout = self.ui.parametersCollapsibleButton.layout()
        if set(self._parameterWidgets) != set(values) or getattr(self, "_formMethod", None) != spec.name:
            while layout.count():
                item = layout.takeAt(0)
                if item.widget():
                    item.widget().deleteLater()
            self._parameterWidgets = {}
            self._formMethod = spec.name
            for name, default in spec.defaults.items():
                widget = self._parameterWidget(parameter_kind(default), name)
                layout.addRow(_(parameter_label(name)) + ":", widget)
                self._parameterWidgets[name] = widget
        for name, widget in self._parameterWidgets.items():
            self._setWidgetValue(widget, values[name])

    def _parameterWidget(self, kind: str, name: str):
        if kind == "bool":
            widget = qt.QCheckBox()
            widget.connect("toggled(bool)", lambda v, n=name: self._onParameterEdited(n, bool(v)))
        elif kind == "int":
            widget = qt.QSpinBox()
            widget.setRange(-1000000, 1000000)
            widget.connect("valueChanged(int)", lambda v, n=name: self._onParameterEdited(n, int(v)))
        elif kind == "float":
            widget = qt.QDoubleSpinBox()
            widget.setRange(-1.0e6, 1.0e6)
            widget.setDecimals(4)
            widget.connect("valueChanged(double)", lambda v, n=name: self._onParameterEdited(n, float(v)))
        else:
            widget = qt.QLineEdit()
            widget.connect("editingFinished()", lambda w=widget, n=name: self._onParameterEdited(n, w.text))
        return widget

    def _setWidgetValue(self, widget, value) -> None:
        wasBlocked = widget.blockSignals(True)
        if isinstance(widget, qt.QCheckBox):
            widget.checked = bool(value)
        elif isinstance(widget, (qt.QSpinBox, qt.QDoubleSpinBox)):
            widget.value = value
        else:
            from MedSegAILib.slicer_bridge.module_logic import format_parameter

            widget.text = format_parameter(value)
        widget.blockSignals(wasBlocked)

    def _onParameterEdited(self, name: str, value) -> None:
        from MedSegAILib.slicer_bridge.module_logic import parameters_from_json, parameters_to_json

        values = parameters_from_json(self._parameterNode.methodParameters, self._parameterNode.method)
        values[name] = value
        self._parameterNode.methodParameters = parameters_to_json(values)

    # --- run ----------------------------------------------------------------------------------

    def onApplyButton(self) -> None:
        if self.logic.isRunning():
            self.logic.cancel()
            self.ui.statusLabel.text = _("Cancelled; the scene is unchanged.")
            self.ui.progressBar.visible = False
            self._updateButtons()
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start the segmentation."), waitCursor=True):
            p = self._parameterNode
            if not self.logic.ensureDependencies(p.method, _pathText(p.modelFolder) or p.model, p.methodParameters, p.device):
                self.ui.statusLabel.text = _("The method's packages are not installed; nothing was run.")
                return
            self.ui.progressBar.value = 0
            self.ui.progressBar.visible = True
            self.ui.statusLabel.text = _("Starting…")
            self.logic.start(self._parameterNode)
        self._updateButtons()

    def onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message

    def onFinished(self, ok: bool, message: str) -> None:
        self.ui.progressBar.visible = False
        self.ui.statusLabel.text = message
        if not ok and message:
            slicer.util.errorDisplay(_("Segmentation failed: {message}").format(message=message))
        self._updateButtons()

    def onExportSurfaces(self) -> None:
        from MedSegAILib.core.errors import InputError

        p = self._parameterNode
        args = (self._segmentationToExport(), _pathText(p.surfaceFolder), p.surfaceFormat, p.surfaceSmoothing, p.surfaceCoordinates)
        with slicer.util.tryWithErrorDisplay(_("Failed to export surfaces."), waitCursor=True):
            try:
                files = self.logic.exportSurfaces(*args)
            except InputError as exc:
                if "already exists" not in str(exc):
                    raise
                if not slicer.util.confirmOkCancelDisplay(_("Surface files already exist in this folder. Replace them?")):
                    return
                files = self.logic.exportSurfaces(*args, overwrite=True)
            self.ui.statusLabel.text = _("Wrote {count} surface files to {folder}.").format(count=len(files), folder=_pathText(p.surfaceFolder))


#
# MedSegAILogic
#


class MedSegAILogic(ScriptedLoadableModuleLogic):
    """Runs MedSegAILib in a background PythonSlicer process and loads the results.

    Usable without the widget: ``logic.start(parameterNode)`` then wait for ``finishedCallback``;
    or run ``medsegai segment`` yourself and call ``loadResults`` (as MedSegAITest does).
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.libraryFolder = _ensureLibraryOnPath()
        self.progressCallback = None
        self.finishedCallback = None
        self._process = None
        self._workFolder = None
        self._outputLines = []
        self._job = None
        self.lastNodes = None

    def getParameterNode(self):
        return MedSegAIParameterNode(super().getParameterNode())

    # --- environment ------------------------------------------------------------------------

    def shippedModels(self):
        from MedSegAILib.resources import models_dir

        folder = models_dir()
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def deviceDescription(self) -> str:
        """The GPU found, without importing torch when it is not installed."""
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return _("Models with an ONNX export run on the CPU with ONNX Runtime; PyTorch is installed on first use of any other deep run.")
        try:
            import torch

            if torch.cuda.is_available():
                return _("GPU found: {name}").format(name=torch.cuda.get_device_name(0))
        except Exception as exc:  # a broken torch must not break the panel
            logging.warning(f"MedSegAI: could not query the GPU: {exc}")
        return _("No GPU found; deep methods run on the CPU.")

    def ensureDependencies(self, method: str, model: str = "", methodParameters: str = "", device: str = "auto") -> bool:
        """Install what this run of ``method`` needs after asking; False if the user declined.
        (A shipped model with an ONNX export needs only onnxruntime, not PyTorch.)"""
        from MedSegAILib.slicer_bridge.module_logic import install_plan, install_question, missing_requirements, parameters_from_json, torch_version_requirement

        def missingNow():
            parameters = parameters_from_json(methodParameters, method)
            return missing_requirements(method, model=model or None, parameters=parameters, device=device)

        missing = missingNow()
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(_(install_question(method, missing))):
            return False
        plan = install_plan(missing)
        if "pytorch" in plan:
            try:
                import PyTorchUtils
            except ImportError:
                raise RuntimeError(_("Deep methods need the PyTorch extension: install 'PyTorch' from the Extensions Manager and restart."))
            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=torch_version_requirement())
            if torch is None:
                return False
        if "pip" in plan:
            try:
                import slicer.packaging

                slicer.packaging.pip_ensure(plan["pip"], requester="MedSegAI", prompt_install=False)
            except (ImportError, AttributeError):
                slicer.util.pip_install(plan["pip"])
        return not missingNow()

    def pythonExecutable(self) -> str:
        return shutil.which("PythonSlicer") or os.path.join(os.path.dirname(sys.executable), "PythonSlicer")

    # --- background run ----------------------------------------------------------------------

    def isRunning(self) -> bool:
        return self._process is not None and self._process.state() != qt.QProcess.NotRunning

    def start(self, p: MedSegAIParameterNode) -> None:
        """Write the inputs to a temporary folder and start ``medsegai segment`` on them."""
        from MedSegAILib.slicer_bridge.module_logic import (
            RunSettings,
            build_segment_arguments,
            python_command,
            seeds_file_for_segmentation,
            subprocess_environment,
            write_volume_for_run,
        )

        if self.isRunning():
            raise RuntimeError(_("A segmentation is already running."))
        if not p.inputVolume:
            raise ValueError(_("Select an input volume."))
        self._workFolder = tempfile.mkdtemp(prefix="MedSegAI-")
        inputs = []
        for i, node in enumerate([p.inputVolume, p.extraChannel1, p.extraChannel2]):
            if node is None:
                continue
            inputs.append(str(write_volume_for_run(node, os.path.join(self._workFolder, f"channel{i}.nrrd"))))
        seeds = None
        if p.seedSegmentation is not None and p.seedSegmentation.GetSegmentation().GetNumberOfSegments():
            seeds = str(seeds_file_for_segmentation(p.seedSegmentation, p.inputVolume, os.path.join(self._workFolder, "seeds.nii.gz")))
        model = _pathText(p.modelFolder) or p.model
        settings = RunSettings(
            method=p.method,
            methodParameters=p.methodParameters,
            model=model,
            atlasFolder=_pathText(p.atlasFolder),
            device=p.device,
            minIslandMm3=p.minIslandMm3,
            keepLargest=p.keepLargest,
            keepFraction=p.keepFraction,
            fillHoles=p.fillHoles,
            connectivity=p.connectivity,
            radiomics=p.radiomics,
        )
        output = os.path.join(self._workFolder, "output")
        args = build_segment_arguments(inputs, output, settings, seeds_file=seeds)
        command = python_command(self.pythonExecutable(), args)
        self._job = {"output": output, "input": p.inputVolume, "outputSegmentation": p.outputSegmentation, "method": p.method}
        self._outputLines = []
        self._process = qt.QProcess()
        env = qt.QProcessEnvironment()
        for key, value in subprocess_environment(dict(os.environ), self.libraryFolder).items():
            env.insert(key, value)
        self._process.setProcessEnvironment(env)
        self._process.setProcessChannelMode(qt.QProcess.MergedChannels)
        self._process.connect("readyReadStandardOutput()", self._onOutput)
        self._process.connect("stateChanged(QProcess::ProcessState)", self._onStateChanged)
        logging.info("MedSegAI: " + " ".join(command))
        self._process.start(command[0], command[1:])

    def _onOutput(self) -> None:
        from MedSegAILib.slicer_bridge.module_logic import parse_progress_line

        if self._process is None:
            return
        text = self._process.readAllStandardOutput().data().decode("utf-8", "replace")
        for line in text.replace("\r", "\n").splitlines():
            if not line.strip():
                continue
            self._outputLines.append(line)
            progress = parse_progress_line(line)
            if progress and self.progressCallback:
                self.progressCallback(*progress)

    def _onStateChanged(self, newState) -> None:
        if newState != qt.QProcess.NotRunning or self._process is None:
            return
        self._onOutput()
        crashed = self._process.exitStatus() == qt.QProcess.CrashExit
        exitCode = -1 if crashed else self._process.exitCode()
        self._onProcessFinished(exitCode)

    def _onProcessFinished(self, exitCode: int) -> None:
        """Load the case folder (exit code 0) or report the CLI's one-line error."""
        from MedSegAILib.slicer_bridge.module_logic import error_from_output

        job, self._job = self._job, None
        self._process = None
        if job is None:  # cancelled: nothing is loaded, the scene stays as it was
            return
        ok, message = False, ""
        try:
            if exitCode == 0:
                nodes = self.loadResults(job["output"], job["input"], job["outputSegmentation"], job["method"])
                self.lastNodes = nodes
                ok, message = True, _("Done: {count} objects.").format(count=nodes.segmentation.GetSegmentation().GetNumberOfSegments())
            else:
                message = error_from_output(self._outputLines, exitCode)
        except Exception as exc:
            logging.exception("MedSegAI: loading the results failed")
            message = str(exc)
        finally:
            self._removeWorkFolder()
        if self.finishedCallback:
            self.finishedCallback(ok, message)

    def cancel(self) -> None:
        """Stop the running process; nothing is added to the scene."""
        self._job = None  # the state-change handler then loads nothing
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.waitForFinished(3000)
        self._removeWorkFolder()

    def _removeWorkFolder(self) -> None:
        if self._workFolder:
            shutil.rmtree(self._workFolder, ignore_errors=True)
            self._workFolder = None

    # --- results --------------------------------------------------------------------------

    def loadResults(self, folder, inputVolume, outputSegmentation=None, method="MedSegAI"):
        """Load a case folder: segmentation (under the input's study), uncertainty overlay, table."""
        from MedSegAILib.slicer_bridge.module_logic import load_case_into_scene

        nodes = load_case_into_scene(
            folder,
            slicer.mrmlScene,
            reference_volume_node=inputVolume,
            segmentation_node=outputSegmentation,
            name=f"{inputVolume.GetName()} {method}",
        )
        self._placeUnderStudy(inputVolume, [nodes.segmentation, nodes.uncertainty, nodes.table])
        self._showResults(inputVolume, nodes)
        return nodes

    def _placeUnderStudy(self, inputVolume, nodes) -> None:
        shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
        if shNode is None:
            return
        parent = shNode.GetItemParent(shNode.GetItemByDataNode(inputVolume))
        for node in nodes:
            shNode.SetItemParent(shNode.GetItemByDataNode(node), parent)

    def _showResults(self, inputVolume, nodes) -> None:
        nodes.segmentation.CreateClosedSurfaceRepresentation()
        slicer.util.setSliceViewerLayers(background=inputVolume, foreground=nodes.uncertainty, foregroundOpacity=0.4)
        try:
            slicer.modules.colors.logic().AddDefaultColorLegendDisplayNode(nodes.uncertainty)
        except AttributeError:
            pass

    def exportSurfaces(self, segmentationNode, folder, fileFormat="stl", smoothing=0.5, coordinateSystem="LPS", overwrite=False):
        """One closed surface file per segment of ``segmentationNode`` (through a .seg.nrrd)."""
        from MedSegAILib.slicer_bridge.surfaces import export_surfaces

        if segmentationNode is None:
            raise ValueError(_("Select the segmentation to export."))
        with tempfile.TemporaryDirectory(prefix="MedSegAI-") as tmp:
            path = os.path.join(tmp, "segmentation.seg.nrrd")
            storage = slicer.vtkMRMLSegmentationStorageNode()
            storage.SetFileName(path)
            if not storage.WriteData(segmentationNode):
                raise RuntimeError(_("Could not save the segmentation for export."))
            return export_surfaces(
                path, folder, file_format=fileFormat, smoothing=smoothing, coordinate_system=coordinateSystem, overwrite=overwrite
            )


#
# MedSegAITest
#


class MedSegAITest(ScriptedLoadableModuleTest):
    """Runs each available method family on the bundled sample data inside Slicer.

    The checks themselves are MedSegAILib functions (check_case_outputs, load_case_into_scene)
    that pytest also runs through slicer-core.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_EachFamilyOnSampleData()
        self.test_SurfaceExport()

    def _runCli(self, method, folder, extra=()):
        import subprocess

        from MedSegAILib.slicer_bridge.module_logic import python_command, subprocess_environment

        logic = MedSegAILogic()
        case = self._sampleCase()
        args = ["segment", str(case.image), "--method", method, "--output", folder, "--overwrite", *extra]
        env = subprocess_environment(dict(os.environ), logic.libraryFolder)
        subprocess.run(python_command(logic.pythonExecutable(), args), check=True, env=env)
        return logic, case

    def _sampleCase(self):
        _ensureLibraryOnPath()
        from MedSegAILib.slicer_bridge.module_logic import sample_cases

        cases = sample_cases()
        self.assertTrue(cases, "no sample data bundled")
        return cases[0]

    def test_EachFamilyOnSampleData(self):
        _ensureLibraryOnPath()
        from MedSegAILib.slicer_bridge.module_logic import check_case_outputs, self_test_runs

        for method, extra in self_test_runs():
            self.delayDisplay(f"{method} on the sample hippocampus case")
            with tempfile.TemporaryDirectory() as folder:
                logic, case = self._runCli(method, folder, extra)
                self.assertEqual(check_case_outputs(folder), [])
                volume = slicer.util.loadVolume(str(case.image))
                nodes = logic.loadResults(folder, volume, method=method)
                count = nodes.segmentation.GetSegmentation().GetNumberOfSegments()
                self.assertGreater(count, 0)
                self.assertEqual(nodes.table.GetNumberOfRows(), count)
        self.delayDisplay("Test passed")

    def test_SurfaceExport(self):
        self.delayDisplay("Surface export")
        from MedSegAILib.slicer_bridge.surfaces import read_surface, surface_is_closed

        with tempfile.TemporaryDirectory() as folder:
            logic, case = self._runCli("otsu", folder, ["--min-island-mm3", "50"])
            volume = slicer.util.loadVolume(str(case.image))
            nodes = logic.loadResults(folder, volume)
            files = logic.exportSurfaces(nodes.segmentation, os.path.join(folder, "surfaces"))
            self.assertEqual(len(files), nodes.segmentation.GetSegmentation().GetNumberOfSegments())
            for f in files:
                self.assertTrue(surface_is_closed(read_surface(f)))
        self.delayDisplay("Test passed")
