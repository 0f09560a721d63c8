"""MedSegAI: a Slicer panel over MedSegAILib (classical, atlas and deep segmentation).

The panel is a thin adapter. Every decision lives in MedSegAILib, where pytest drives it with
real processes and real files:

- the settings of a run, their parameter-node fields and their command line come from one
  definition (``MedSegAILib.runs.settings``);
- the run's life cycle (work folder, command, progress, log, cancel of the whole process tree,
  failed start, crash, finish) is ``MedSegAILib.runs.runner.SegmentationRun``; this file only
  supplies a QProcess adapter (:class:`MedSegAIProcess`) and ``QTimer.singleShot`` as its
  event loop, so nothing is done inside a Qt signal;
- which packages a run needs is ``MedSegAILib.runs.requirements``;
- nodes to files and a finished case into the scene is ``MedSegAILib.slicer_bridge.scene_io``;
- training on the user's own cases (nodes to a checked training set, the background training,
  the user's model folder) is ``MedSegAILib.slicer_bridge.training_nodes``,
  ``MedSegAILib.methods.deep.training_set`` and ``MedSegAILib.runs.training_run``.

Only Slicer's own modules are imported at module scope; MedSegAILib and its optional
dependencies are imported when first needed. Everything here parses and runs on Python 3.9
(Slicer 5.8, the oldest supported release).
"""

import codecs
import functools
import importlib
import logging
import os
import shutil
import sys
import tempfile
import time
from typing import Annotated, Optional

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
        # Slicer modules the panel uses; PyTorch (for some deep runs) is an extension dependency.
        self.parent.dependencies = ["Segmentations", "Tables", "Colors", "SampleData"]
        self.parent.contributors = ["MedSegAI project"]
        self.parent.helpText = _(
            "Segment images with classical, atlas-based or deep-learning methods. Each run gives a "
            "segmentation with one segment per object (named, coloured, with standard terminology), a "
            "per-voxel uncertainty map and a table of object measurements; surfaces can be exported "
            "as STL or OBJ. Requires Slicer 5.8 or later. Research use only; not a medical device. "
            '<a href="https://github.com/medsegai/SlicerMedSegAI#medsegai-in-3d-slicer">Documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "Sample data: Medical Segmentation Decathlon, Task04 Hippocampus (Vanderbilt University "
            "Medical Center), CC-BY-SA 4.0."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)
        slicer.app.connect("startupCompleted()", registerEditorEffect)


def registerEditorEffect():
    """Register the Segment Editor's "Graph cut" effect (MedSegAIEffects/SegmentEditorEffect.py),
    as Slicer's ScriptedSegmentEditorEffect template registers its effect."""
    import qSlicerSegmentationsEditorEffectsPythonQt as qSlicerSegmentationsEditorEffects

    instance = qSlicerSegmentationsEditorEffects.qSlicerSegmentEditorScriptedEffect(None)
    effectFilename = os.path.join(os.path.dirname(os.path.abspath(__file__)), "MedSegAIEffects", "SegmentEditorEffect.py")
    instance.setPythonSource(effectFilename.replace("\\", "/"))
    instance.self().register()


#
# Sample data
#


def registerSampleData():
    """Register the bundled hippocampus cases (file URIs with SHA-256 checksums) with Sample Data.

    ``registerCustomSampleDataCategory`` (a display title) exists from Slicer 5.12; on 5.8 and
    5.10 ``registerCustomSampleDataSource`` creates the category under its own name.
    """
    import SampleData

    _ensureLibraryOnPath()
    from MedSegAILib.resources import file_uri, sample_cases

    logic = SampleData.SampleDataLogic
    if hasattr(logic, "registerCustomSampleDataCategory"):
        logic.registerCustomSampleDataCategory("MedSegAI", _("MedSegAI"))
    iconsPath = os.path.join(os.path.dirname(__file__), "Resources", "Icons")
    for case in sample_cases():
        logic.registerCustomSampleDataSource(
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
# MedSegAIParameterNode: built from the one definition of a run's settings
#


@functools.lru_cache(maxsize=None)
def parameterNodeClass():
    """The ``parameterNodeWrapper`` class of the panel, one field per
    ``MedSegAILib.runs.settings.PANEL_FIELDS`` entry (type, default, range, choices).

    Folder paths are ``str`` fields ("" when unset) bound by hand to their ctkPathLineEdit:
    the wrapper binds that widget to ``pathlib.Path`` only, whose empty value shows as ".".
    """
    _ensureLibraryOnPath()
    from MedSegAILib.runs.settings import PANEL_FIELDS

    basic = {"str": str, "path": str, "int": int, "float": float, "bool": bool}
    annotations, namespace = {}, {}
    for f in PANEL_FIELDS:
        if f.kind == "volume":
            annotations[f.name] = Optional[vtkMRMLScalarVolumeNode]
            namespace[f.name] = None
            continue
        if f.kind == "segmentation":
            annotations[f.name] = Optional[vtkMRMLSegmentationNode]
            namespace[f.name] = None
            continue
        if f.kind in ("volumes", "segmentations"):  # lists of node references (default empty)
            annotations[f.name] = list[vtkMRMLScalarVolumeNode] if f.kind == "volumes" else list[vtkMRMLSegmentationNode]
            continue
        extras = []
        if f.choices:
            extras.append(Choice(list(f.choices)))
        if f.minimum is not None and f.maximum is not None:
            extras.append(WithinRange(f.minimum, f.maximum))
        annotations[f.name] = Annotated[tuple([basic[f.kind], *extras])] if extras else basic[f.kind]
        namespace[f.name] = f.default
    namespace["__annotations__"] = annotations
    namespace["__module__"] = __name__
    namespace["__doc__"] = "Everything the panel shows; saved with the scene (fields from MedSegAILib.runs.settings)."
    return parameterNodeWrapper(type("MedSegAIParameterNode", (), namespace))


#: Fields the widget keeps in sync itself (combos filled from the registry, the parameter form,
#: and the folder paths); every other field is bound through its widget's SlicerParameterName.
MANUALLY_BOUND_PARAMETERS = ("methodFamily", "method", "methodParameters", "model", "modelFolder", "atlasFolder", "surfaceFolder",
                             "trainPairVolumes", "trainPairSegmentations", "trainSegments", "trainModelName")
#: Text fields bound by hand on editingFinished: Slicer 5.8's QLineEdit connector writes the
#: text back on every keystroke, which moves the cursor to the end (fixed in 5.10).
TEXT_WIDGETS = {"trainSegments": "trainSegmentsLineEdit", "trainModelName": "trainModelNameLineEdit"}
PATH_WIDGETS = {"modelFolder": "modelFolderPathLineEdit", "atlasFolder": "atlasFolderPathLineEdit", "surfaceFolder": "surfaceFolderPathLineEdit"}


#
# MedSegAIWidget
#


class MedSegAIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._parameterWidgets = {}
        self._formMethod = None
        self._updatingGui = False
        self._lastNodes = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedSegAI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = MedSegAILogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self._fillMethodCombos()
        self.ui.methodFamilyComboBox.connect("currentIndexChanged(int)", self.onMethodFamilyChanged)
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self.onMethodChanged)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        for name, widget in PATH_WIDGETS.items():
            getattr(self.ui, widget).connect("currentPathChanged(QString)", functools.partial(self.onPathChanged, name))
        for name, widget in TEXT_WIDGETS.items():
            getattr(self.ui, widget).connect("editingFinished()", functools.partial(self.onTextEdited, name))
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.exportSurfacesButton.connect("clicked(bool)", self.onExportSurfaces)
        self.ui.showTableButton.connect("clicked(bool)", self.onShowTable)
        self.ui.outputSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.ui.show3DButton.setSegmentationNode)
        self.ui.deviceInfoLabel.text = _(self.logic.deviceDescription())
        self.ui.progressBar.visible = False
        self.ui.addModelButton.connect("clicked(bool)", self.onAddModel)
        self.ui.addTrainPairButton.connect("clicked(bool)", self.onAddTrainPair)
        self.ui.removeTrainPairButton.connect("clicked(bool)", self.onRemoveTrainPair)
        self.ui.trainButton.connect("clicked(bool)", self.onTrainButton)
        self.ui.retrainButton.connect("clicked(bool)", self.onRetrainButton)
        self.ui.trainProgressBar.visible = False
        self._curveShown = None
        self._listedPairs = None

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.logic.cancel()
        self.logic.cancelTraining()
        self._disconnectParameterNode()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self._disconnectParameterNode()

    def onSceneStartClose(self, caller, event) -> None:
        # A training goes on: it reads only the files it exported before it started.
        self.logic.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        p = self._parameterNode
        if not p.inputVolume:
            # Not a labelmap (a subclass the selector does not show).
            volumes = slicer.mrmlScene.GetNodesByClass("vtkMRMLScalarVolumeNode")
            for i in range(volumes.GetNumberOfItems()):
                node = volumes.GetItemAsObject(i)
                if not node.IsA("vtkMRMLLabelMapVolumeNode"):
                    p.inputVolume = node
                    break
        # A combo the user never touches still decides the run: write its value into the node.
        models = [self.ui.modelComboBox.itemData(i) for i in range(self.ui.modelComboBox.count)]
        if models and p.model not in models:
            p.model = models[0]

    def _widgetsBoundByName(self):
        """{field: widget} for every .ui widget with a SlicerParameterName property."""
        out = {}
        for widget in vars(self.ui).values():
            name = widget.property("SlicerParameterName") if hasattr(widget, "property") else None
            if name:
                out[str(name)] = widget
        return out

    def _disconnectParameterNode(self) -> None:
        if self._parameterNode:
            if self._parameterNodeGuiTag is not None:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            if self.hasObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui):
                self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)

    def setParameterNode(self, inputParameterNode) -> None:
        self._disconnectParameterNode()
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # connectParametersToGui returns its tag on every release (connectGui only from 5.10).
            self._parameterNodeGuiTag = self._parameterNode.connectParametersToGui(self._widgetsBoundByName())
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
            self._updateGui()

    # --- method choice and its parameters ---------------------------------------------------

    def _fillMethodCombos(self) -> None:
        from MedSegAILib.runs.requirements import methods_by_family

        self._methods = methods_by_family()
        self.ui.methodFamilyComboBox.clear()
        for family in self._methods:
            self.ui.methodFamilyComboBox.addItem(_(family.capitalize()), family)
        self._fillModelCombo()

    def _fillModelCombo(self) -> None:
        """The shipped models, then the user's own (trained here), newest first."""
        from MedSegAILib.runs.model_choices import shipped_model_choices
        from MedSegAILib.runs.training_run import user_model_choices

        self._modelSummaries = {}
        wasBlocked = self.ui.modelComboBox.blockSignals(True)
        self.ui.modelComboBox.clear()
        for choice in shipped_model_choices() + user_model_choices(self.logic.userModelsFolder()):
            self.ui.modelComboBox.addItem(choice.text, choice.name)
            self.ui.modelComboBox.setItemData(self.ui.modelComboBox.count - 1, choice.summary, qt.Qt.ToolTipRole)
            self._modelSummaries[choice.name] = choice.summary
        self.ui.modelComboBox.blockSignals(wasBlocked)

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
            if modelIndex >= 0 and modelIndex != self.ui.modelComboBox.currentIndex:
                self.ui.modelComboBox.currentIndex = modelIndex
            for name, widget in PATH_WIDGETS.items():
                edit = getattr(self.ui, widget)
                if edit.currentPath != getattr(p, name):
                    edit.currentPath = getattr(p, name)
            for name, widget in TEXT_WIDGETS.items():
                edit = getattr(self.ui, widget)
                if edit.text != getattr(p, name):
                    edit.text = getattr(p, name)
            self._buildParameterForm()
            spec = self._currentSpec()
            needs = spec.needs if spec else ()
            self.ui.modelComboBox.enabled = "model" in needs
            self.ui.modelFolderPathLineEdit.enabled = "model" in needs
            self.ui.modelDescriptionLabel.visible = "model" in needs
            self.ui.modelDescriptionLabel.text = (
                _("Own model folder: {folder}").format(folder=p.modelFolder) if p.modelFolder else self._modelSummaries.get(p.model, "")
            )
            self.ui.atlasFolderPathLineEdit.enabled = "atlases" in needs
            self.ui.seedSegmentationSelector.enabled = "seeds" in needs
            self.ui.deviceComboBox.enabled = spec is not None and spec.family == "deep"
            self.ui.methodDescriptionLabel.text = spec.summary if spec else ""
            self._fillTrainPairsList()
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
        self.ui.exportSurfacesButton.enabled = bool(p and p.surfaceSegmentation and p.surfaceFolder) and not running
        self.ui.showTableButton.enabled = bool(self._lastNodes and self._lastNodes.table and self._lastNodes.table.GetScene())
        self._updateTrainButtons()

    def _updateTrainButtons(self) -> None:
        from MedSegAILib.runs.training_run import has_training_set

        p = self._parameterNode
        training = self.logic.isTraining()
        self.ui.retrainButton.enabled = False
        if training:
            self.ui.trainButton.text = _("Cancel training")
            self.ui.trainButton.toolTip = _("Stop the training; no model is added.")
            self.ui.trainButton.enabled = True
            return
        self.ui.trainButton.text = _("Train")
        pairs = list(p.trainPairVolumes) if p else []
        self.ui.trainButton.enabled = bool(pairs)
        self.ui.trainButton.toolTip = _("Train a model on the listed cases in the background.") if pairs else _("Add volume and segmentation pairs first.")
        model = self.logic.settingsFor(p).model if p else ""
        self.ui.retrainButton.enabled = bool(p and p.trainVolume and p.trainSegmentation and has_training_set(model))

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
        from MedSegAILib.runs.settings import FAMILY_DEFAULT_METHODS

        if self._updatingGui or self._parameterNode is None or index < 0:
            return
        family = self.ui.methodFamilyComboBox.itemData(index)
        names = [m.name for m in self._methods.get(family, [])]
        with slicer.util.NodeModify(self._parameterNode.parameterNode):
            self._parameterNode.methodFamily = family
            if names and self._parameterNode.method not in names:
                default = FAMILY_DEFAULT_METHODS.get(family)
                self._parameterNode.method = default if default in names else names[0]
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

    def onPathChanged(self, name: str, path) -> None:
        if self._updatingGui or self._parameterNode is None:
            return
        setattr(self._parameterNode, name, str(path or "").strip())

    def onTextEdited(self, name: str) -> None:
        if self._updatingGui or self._parameterNode is None:
            return
        setattr(self._parameterNode, name, getattr(self.ui, TEXT_WIDGETS[name]).text)

    def _buildParameterForm(self) -> None:
        """One labelled widget per parameter of the current method, with the method's own
        label, unit, tooltip, range and choices (``MethodSpec.parameter``)."""
        from MedSegAILib.runs.settings import parameters_from_json

        spec = self._currentSpec()
        if spec is None:
            return
        values = parameters_from_json(self._parameterNode.methodParameters, spec.name)
        layout = self.ui.parametersCollapsibleButton.layout()
        if self._formMethod != spec.name:
            while layout.rowCount():
                layout.removeRow(0)  # deletes the row's label and widget (takeAt would leak the items)
            self._parameterWidgets = {}
            self._formMethod = spec.name
            for name, default in spec.defaults.items():
                info = spec.parameter(name)
                widget = self._parameterWidget(name, default, info)
                widget.toolTip = _(info.help)
                label = _(info.label) + (f" ({info.unit})" if info.unit else "") + ":"
                layout.addRow(label, widget)
                self._parameterWidgets[name] = widget
        for name, widget in self._parameterWidgets.items():
            self._setWidgetValue(widget, values[name])

    def _parameterWidget(self, name: str, default, info):
        if isinstance(default, bool):
            widget = qt.QCheckBox()
            widget.connect("toggled(bool)", lambda v, n=name: self._onParameterEdited(n, bool(v)))
        elif info.choices:
            widget = qt.QComboBox()
            for choice in info.choices:
                widget.addItem(str(choice) if choice != "" else _("(none)"), str(choice))
            widget.connect("currentIndexChanged(int)", lambda i, n=name, w=widget: self._onParameterEdited(n, w.itemData(i)))
        elif isinstance(default, int):
            widget = qt.QSpinBox()
            widget.setRange(int(info.minimum if info.minimum is not None else 0), int(info.maximum if info.maximum is not None else 1000000))
            widget.connect("valueChanged(int)", lambda v, n=name: self._onParameterEdited(n, int(v)))
        elif isinstance(default, float):
            widget = qt.QDoubleSpinBox()
            widget.setRange(float(info.minimum if info.minimum is not None else 0.0), float(info.maximum if info.maximum is not None else 1.0e6))
            widget.setDecimals(3)
            widget.setSingleStep(float(info.step or 0.1))
            widget.connect("valueChanged(double)", lambda v, n=name: self._onParameterEdited(n, float(v)))
        else:
            widget = qt.QLineEdit()
            widget.connect("editingFinished()", lambda w=widget, n=name: self._onParameterEdited(n, w.text))
        return widget

    def _setWidgetValue(self, widget, value) -> None:
        from MedSegAILib.runs.settings import format_parameter

        wasBlocked = widget.blockSignals(True)
        if isinstance(widget, qt.QCheckBox):
            widget.checked = bool(value)
        elif isinstance(widget, qt.QComboBox):
            widget.currentIndex = max(0, widget.findData(str(value)))
        elif isinstance(widget, (qt.QSpinBox, qt.QDoubleSpinBox)):
            widget.value = value
        else:
            widget.text = format_parameter(value)
        widget.blockSignals(wasBlocked)

    def _onParameterEdited(self, name: str, value) -> None:
        from MedSegAILib.runs.settings import parameters_from_json, parameters_to_json

        values = parameters_from_json(self._parameterNode.methodParameters, self._parameterNode.method)
        values[name] = value
        self._parameterNode.methodParameters = parameters_to_json(values)

    # --- run ----------------------------------------------------------------------------------

    def onApplyButton(self) -> None:
        if self.logic.isRunning():
            self.logic.cancel()  # the run's outcome ("cancelled") arrives through onFinished
            return
        self.ui.logTextEdit.clear()
        p = self._parameterNode
        # Asked (and installed) before the wait cursor: the question and pip's dialog need a normal one.
        with slicer.util.tryWithErrorDisplay(_("The method's packages could not be installed.")):
            if not self.logic.ensureDependencies(self.logic.settingsFor(p)):
                self.ui.statusLabel.text = _("The method's packages are not installed; nothing was run.")
                return
        with slicer.util.tryWithErrorDisplay(_("Failed to start the segmentation."), waitCursor=True):
            self._startInBackground(
                self.ui.progressBar, self.ui.statusLabel, _("Starting…"),
                lambda: self.logic.startRun(p, onProgress=self.onProgress, onLog=self.onLog, onFinished=self.onFinished),
            )

    def _startInBackground(self, progressBar, statusLabel, startingText, start, runningText=None) -> None:
        """Show ``progressBar`` at 0 and ``startingText``, call ``start()``; if it raises,
        hide the bar, say "Not started." and re-raise. The buttons follow either way."""
        progressBar.value = 0
        progressBar.visible = True
        statusLabel.text = startingText
        try:
            start()
            if runningText:
                statusLabel.text = runningText
        except Exception:
            progressBar.visible = False
            statusLabel.text = _("Not started.")
            raise
        finally:
            self._updateButtons()

    @staticmethod
    def _showProgress(progressBar, statusLabel, fraction: float, message: str) -> None:
        progressBar.value = int(round(100 * fraction))
        statusLabel.text = message

    def onProgress(self, fraction: float, message: str) -> None:
        self._showProgress(self.ui.progressBar, self.ui.statusLabel, fraction, message)

    def onLog(self, line: str, elapsed: float) -> None:
        self.ui.logTextEdit.appendPlainText(f"[{elapsed:7.1f} s] {line}")

    def onFinished(self, outcome, nodes, loadError) -> None:
        """Runs after the process's signals have returned (from the run's event loop)."""
        self.ui.progressBar.visible = False
        if outcome.ok and loadError is None:
            self._lastNodes = nodes
            count = nodes.segmentation.GetSegmentation().GetNumberOfSegments()
            self.ui.statusLabel.text = _("Done in {seconds:.1f} s: {count} segments.").format(seconds=outcome.elapsed_s, count=count)
            # The result becomes the output: the next Apply replaces its segments.
            self._parameterNode.outputSegmentation = nodes.segmentation
            if not self._parameterNode.surfaceSegmentation:
                self._parameterNode.surfaceSegmentation = nodes.segmentation
            self.ui.show3DButton.setSegmentationNode(nodes.segmentation)
            warning = self.logic.segmentCountWarning(count)
            if warning:
                slicer.util.warningDisplay(_(warning), windowTitle=_("Many segments"))
        elif outcome.status == "cancelled":
            self.ui.statusLabel.text = _("Cancelled; the scene is unchanged.")
        elif self._isDomainRefusal(outcome.message) and not self._parameterNode.allowOutOfDomain:
            # The same message as the command line, and the choice, before any result is loaded.
            self.ui.statusLabel.text = _("Not segmented: the input is unlike what the method learned from.")
            if slicer.util.confirmOkCancelDisplay(
                _("{message}\n\nSegment it anyway? The result will be marked as out of domain.").format(message=outcome.message),
                windowTitle=_("Out of domain"),
            ):
                self._parameterNode.allowOutOfDomain = True
                try:
                    self.onApplyButton()
                finally:
                    self._parameterNode.allowOutOfDomain = False
                return
        else:
            message = loadError or outcome.message
            self.ui.statusLabel.text = _("Failed: {message}").format(message=message)
            self.ui.logCollapsibleButton.collapsed = False
            slicer.util.errorDisplay(
                _("Segmentation failed: {message}").format(message=message), detailedText="\n".join(outcome.log_tail)
            )
        self._updateButtons()

    @staticmethod
    def _isDomainRefusal(message: str) -> bool:
        """Whether a failed run was the domain check's refusal (a deep model or an atlas library)."""
        from MedSegAILib.core.errors import OUT_OF_DOMAIN_START

        return message.startswith(OUT_OF_DOMAIN_START)

    def _selectNewModel(self, model: str) -> None:
        """List the user's models again and choose ``model`` (a folder) for the next Apply."""
        self._fillModelCombo()
        with slicer.util.NodeModify(self._parameterNode.parameterNode):
            self._parameterNode.methodFamily = "deep"
            self._parameterNode.method = "deep"
            self._parameterNode.methodParameters = "{}"
            self._parameterNode.modelFolder = ""
            self._parameterNode.model = model

    def onAddModel(self) -> None:
        """Import an nnU-Net v2 results folder or a MONAI bundle into the user's model folder and select it."""
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Choose an nnU-Net v2 results folder or a MONAI bundle folder"))
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay(_("The import needs PyTorch, which could not be installed.")):
            if not self.logic.ensureImportDependencies():
                return
        from MedSegAILib.methods.deep.model_import import describe

        with slicer.util.tryWithErrorDisplay(_("The model could not be imported."), waitCursor=True):
            model, card = self.logic.importModel(folder)
            self._selectNewModel(model)
            self.ui.statusLabel.text = _("Imported {description}; it is selected.").format(description=describe(card))

    # --- training -----------------------------------------------------------------------------

    def _fillTrainPairsList(self) -> None:
        """The training cases of the parameter node, by node name; refilled only when they
        changed, so a selected row stays selected."""
        p = self._parameterNode
        listed = [
            (volume.GetName() if volume else _("(removed volume)"), segmentation.GetName() if segmentation else _("(removed segmentation)"))
            for volume, segmentation in zip(p.trainPairVolumes, p.trainPairSegmentations)
        ]
        if listed == self._listedPairs:
            return
        row = self.ui.trainPairsList.currentRow
        self.ui.trainPairsList.clear()
        for volumeName, segmentationName in listed:
            self.ui.trainPairsList.addItem(f"{volumeName}  +  {segmentationName}")
        self.ui.trainPairsList.currentRow = min(row, len(listed) - 1)
        self._listedPairs = listed

    def onAddTrainPair(self) -> None:
        from MedSegAILib.slicer_bridge.training_nodes import segment_names_of

        p = self._parameterNode
        if not (p.trainVolume and p.trainSegmentation):
            slicer.util.errorDisplay(_("Select a volume and the segmentation drawn on it."))
            return
        pairs = list(zip(p.trainPairVolumes, p.trainPairSegmentations))
        if (p.trainVolume, p.trainSegmentation) in pairs:
            return
        with slicer.util.NodeModify(p.parameterNode):
            self._setTrainPairs(pairs + [(p.trainVolume, p.trainSegmentation)])
            if not p.trainSegments.strip():
                p.trainSegments = ", ".join(segment_names_of(p.trainSegmentation))

    def onRemoveTrainPair(self) -> None:
        p = self._parameterNode
        row = self.ui.trainPairsList.currentRow
        if row < 0:
            slicer.util.errorDisplay(_("Select the case to remove in the list."))
            return
        pairs = list(zip(p.trainPairVolumes, p.trainPairSegmentations))
        if row < len(pairs):
            del pairs[row]
            self._setTrainPairs(pairs)

    def _setTrainPairs(self, pairs) -> None:
        """Store (volume, segmentation) pairs as the parameter node's two node lists."""
        p = self._parameterNode
        with slicer.util.NodeModify(p.parameterNode):
            p.trainPairVolumes = [v for v, _s in pairs]
            p.trainPairSegmentations = [s for _v, s in pairs]

    def onTrainButton(self) -> None:
        if self.logic.isTraining():
            self.logic.cancelTraining()  # the outcome ("cancelled") arrives through onTrainFinished
            return
        self._startTraining(retrain=False)

    def onRetrainButton(self) -> None:
        self._startTraining(retrain=True)

    def _startTraining(self, retrain: bool) -> None:
        with slicer.util.tryWithErrorDisplay(_("The training packages could not be installed.")):
            if not self.logic.ensureTrainingDependencies():
                self.ui.trainStatusLabel.text = _("The training packages are not installed; nothing was started.")
                return
        with slicer.util.tryWithErrorDisplay(_("Failed to start the training."), waitCursor=True):
            self._startInBackground(
                self.ui.trainProgressBar, self.ui.trainStatusLabel, _("Checking and exporting the cases…"),
                lambda: self.logic.startTraining(
                    self._parameterNode, retrain=retrain, onProgress=self.onTrainProgress, onLog=self.onTrainLog, onFinished=self.onTrainFinished
                ),
                _("Training in the background…"),
            )

    def onTrainProgress(self, fraction: float, message: str) -> None:
        self._showProgress(self.ui.trainProgressBar, self.ui.trainStatusLabel, fraction, message)

    def onTrainLog(self, line: str, elapsed: float) -> None:
        self.ui.logTextEdit.appendPlainText(f"[training {elapsed:7.1f} s] {line}")
        self._showLearningCurve(self.logic.learningCurvePath())

    def _showLearningCurve(self, path) -> None:
        """Show the learning-curve PNG when it is new or was redrawn since it was last shown."""
        if not path or not os.path.isfile(str(path)):
            return
        stamp = (str(path), os.path.getmtime(str(path)))
        if stamp == self._curveShown:
            return
        pixmap = qt.QPixmap(str(path))
        if pixmap.isNull():
            return
        width = max(200, self.ui.trainCollapsibleButton.width - 30)
        self.ui.learningCurveLabel.setPixmap(pixmap.scaledToWidth(width, qt.Qt.SmoothTransformation))
        self._curveShown = stamp

    def onTrainFinished(self, outcome) -> None:
        """Runs after the process's signals have returned; on success the new model is in the
        model list and chosen for the next Apply."""
        from MedSegAILib.methods.deep.model_store import read_card

        self.ui.trainProgressBar.visible = False
        if outcome.ok:
            card = read_card(outcome.output_folder)
            self._showLearningCurve(os.path.join(str(outcome.output_folder), "learning_curves.png"))
            self._selectNewModel(str(outcome.output_folder))
            self.ui.trainStatusLabel.text = _(
                "Trained '{name}' in {minutes:.1f} min on {n} cases: validation Dice {dice}. It is selected for the next Apply."
            ).format(
                name=card.get("name"), minutes=outcome.elapsed_s / 60, n=len(card["training"]["train_cases"]) + len(card["training"]["validation_cases"]),
                dice=card["validation"].get("mean_dice"),
            )
        elif outcome.status == "cancelled":
            self.ui.trainStatusLabel.text = _("Training cancelled; no model was added.")
        else:
            self.ui.trainStatusLabel.text = _("Training failed: {message}").format(message=outcome.message)
            self.ui.logCollapsibleButton.collapsed = False
            slicer.util.errorDisplay(_("Training failed: {message}").format(message=outcome.message), detailedText="\n".join(outcome.log_tail))
        self._updateButtons()

    def onShowTable(self) -> None:
        if self._lastNodes is not None:
            self.logic.showTable(self._lastNodes.table)

    def onExportSurfaces(self) -> None:
        from MedSegAILib.core.errors import InputError

        p = self._parameterNode
        args = (p.surfaceSegmentation, p.surfaceFolder, p.surfaceFormat, p.surfaceSmoothing, p.surfaceCoordinates)
        with slicer.util.tryWithErrorDisplay(_("Failed to export surfaces."), waitCursor=True):
            try:
                files = self.logic.exportSurfaces(*args)
            except InputError as exc:
                if "already exists" not in str(exc):
                    raise
                if not slicer.util.confirmOkCancelDisplay(_("Surface files already exist in this folder. Replace them?")):
                    return
                files = self.logic.exportSurfaces(*args, overwrite=True)
            self.ui.statusLabel.text = _("Wrote {count} surface files to {folder}.").format(count=len(files), folder=p.surfaceFolder)


#
# MedSegAIProcess: the QProcess adapter the library's run uses in Slicer
#


class MedSegAIProcess:
    """``MedSegAILib.runs.runner.ProcessLauncher`` over QProcess.

    The QProcess is created with a parent, so PythonQt leaves its deletion to Qt, and is freed
    with ``deleteLater`` only when the run releases it (after its signals have returned).
    ``finished(int,QProcess::ExitStatus)`` and ``errorOccurred(QProcess::ProcessError)`` are
    connected by their full signatures (the attribute form picks the first overload).
    """

    def __init__(self, parent) -> None:
        self._parent = parent
        self._process = None
        self._events = None
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")  # a character may span two reads

    def start(self, program, arguments, environment, events) -> None:
        process = qt.QProcess(self._parent)
        env = qt.QProcessEnvironment()
        for key, value in environment.items():
            env.insert(key, value)
        process.setProcessEnvironment(env)
        process.setProcessChannelMode(qt.QProcess.MergedChannels)
        self._process, self._events = process, events
        for signal, slot in (
            ("readyReadStandardOutput()", self._onReadyRead),
            ("finished(int,QProcess::ExitStatus)", self._onFinished),
            ("errorOccurred(QProcess::ProcessError)", self._onErrorOccurred),
        ):
            if not process.connect(signal, slot):
                raise RuntimeError(f"could not connect QProcess signal {signal}")
        logging.info("MedSegAI: " + " ".join([program, *arguments]))
        process.start(program, list(arguments))

    def _onReadyRead(self) -> None:
        if self._process is not None:
            self._events.output(self._decoder.decode(self._process.readAllStandardOutput().data()))

    def _onFinished(self, exitCode, exitStatus) -> None:
        if self._process is not None:
            self._onReadyRead()
            self._events.output(self._decoder.decode(b"", final=True))
            self._events.finished(int(exitCode), exitStatus == qt.QProcess.CrashExit)

    def _onErrorOccurred(self, error) -> None:
        # A crash or kill is reported by finished(); only a failed start comes without it.
        if self._process is not None and error == qt.QProcess.FailedToStart:
            self._events.failed_to_start(self._process.errorString())

    def pid(self) -> Optional[int]:
        return int(self._process.processId()) if self._process is not None else None

    def kill(self) -> None:
        if self._process is not None and self._process.state() != qt.QProcess.NotRunning:
            self._process.kill()

    def release(self) -> None:
        """Free the QProcess once it has stopped: deleting a running one makes Qt wait in its
        destructor (after a cancel the killed launcher may not be reaped yet)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.state() == qt.QProcess.NotRunning:
            process.deleteLater()
        else:
            process.connect("finished(int,QProcess::ExitStatus)", process.deleteLater)


#
# MedSegAILogic
#


class MedSegAILogic(ScriptedLoadableModuleLogic):
    """Starts MedSegAILib runs from the parameter node and loads their results.

    Usable without the widget (as MedSegAITest does): ``startRun(parameterNode, onFinished=...)``
    then let the event loop run until ``onFinished(outcome, nodes, loadError)`` is called.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.libraryFolder = _ensureLibraryOnPath()
        self._run = None
        self._trainingRun = None
        self._wrapper = None

    def getParameterNode(self):
        """One wrapper per parameter node: before Slicer 5.12 every wrapper that was connected
        to the GUI keeps an observer for good, so a new one on each visit would pile them up."""
        node = super().getParameterNode()
        if self._wrapper is None or self._wrapper.parameterNode is not node:
            self._wrapper = parameterNodeClass()(node)
        return self._wrapper

    # --- environment ------------------------------------------------------------------------

    def deviceDescription(self) -> str:
        """Where deep runs compute; found without importing torch."""
        from MedSegAILib.runs.requirements import gpu_description

        return gpu_description()

    def settingsFor(self, p):
        """The run the parameter node describes (``MedSegAILib.runs.settings.RunSettings``)."""
        from MedSegAILib.runs.settings import RUN_FIELDS, panel_values_to_settings

        values = {f.name: getattr(p, f.name) for f in RUN_FIELDS}
        values["modelFolder"] = p.modelFolder
        return panel_values_to_settings(values)

    def ensureDependencies(self, settings) -> bool:
        """Install what this run needs, after asking; False if the user declined. A run that
        cannot work at all raises (InputError) before anything is installed."""
        from MedSegAILib.runs.requirements import missing_for_run

        return self._installAfterAsking(settings.method, missing_for_run(settings), lambda: missing_for_run(settings))

    def _installAfterAsking(self, what, missing, stillMissing) -> bool:
        """Ask, then install ``missing`` (torch through the PyTorch extension, the rest with
        pip); True when ``stillMissing()`` is empty afterwards."""
        from MedSegAILib.runs.requirements import install_plan, install_question, torch_version_requirement

        if not missing:
            return True
        if slicer.app.commandOptions().testingEnabled:
            return False  # the question answers itself in testing mode: never install unasked
        if not slicer.util.confirmOkCancelDisplay(_(install_question(what, missing))):
            return False
        plan = install_plan(missing)
        if "pytorch" in plan:
            try:
                PyTorchUtils = importlib.import_module("PyTorchUtils")
            except ImportError as exc:
                raise RuntimeError(_("This run needs the PyTorch extension: install 'PyTorch' from the Extensions Manager and restart.")) from exc
            try:
                torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=torch_version_requirement())
            except Exception as exc:  # installTorch raises when the install fails (None: declined)
                raise RuntimeError(_("PyTorch could not be installed: {error}").format(error=exc)) from exc
            if torch is None:
                return False
        if "pip" in plan:
            self._pipInstall(plan["pip"])
        return not stillMissing()

    @staticmethod
    def _pipInstall(requirements) -> None:
        """``slicer.packaging.pip_install`` from Slicer 5.12; ``slicer.util.pip_install`` (a list,
        one argument per item) on 5.8 and 5.10. The module is looked up, never imported with
        ``import slicer.packaging``, which would make ``slicer`` a local name here."""
        try:
            packaging = importlib.import_module("slicer.packaging")
        except ImportError:
            packaging = None
        if packaging is not None and hasattr(packaging, "pip_install"):
            packaging.pip_install(list(requirements), requester="MedSegAI")
        else:
            slicer.util.pip_install(list(requirements))

    def ensureImportDependencies(self) -> bool:
        """Install what importing a model needs (PyTorch, MONAI, safetensors, the ONNX exporter), after asking."""
        from MedSegAILib.runs.requirements import IMPORT_REQUIREMENTS, missing_for_training

        def missing():
            return missing_for_training(requirements=IMPORT_REQUIREMENTS)

        return self._installAfterAsking("import", missing(), missing)

    def ensureTrainingDependencies(self) -> bool:
        """Install what training needs (the torch stack, the ONNX exporter, matplotlib), after
        asking; False if the user declined."""
        from MedSegAILib.runs.requirements import missing_for_training

        return self._installAfterAsking("training", missing_for_training(), missing_for_training)

    def pythonExecutable(self) -> str:
        name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
        return shutil.which("PythonSlicer") or os.path.join(os.path.dirname(sys.executable), name)

    # --- background run ----------------------------------------------------------------------

    def _runArguments(self, onProgress, onLog, onFinished) -> dict:
        """What every background run (``MedSegAILib.runs.runner.ProcessRun``) takes in Slicer:
        PythonSlicer, the library's folder, and QTimer.singleShot as its event loop."""
        return {
            "python_executable": self.pythonExecutable(),
            "library_parent": self.libraryFolder,
            "call_soon": lambda fn: qt.QTimer.singleShot(0, fn),
            "on_progress": onProgress,
            "on_log": onLog,
            "on_finished": onFinished,
        }

    def isRunning(self) -> bool:
        return self._run is not None and self._run.state == "running"

    def startRun(self, p, onProgress=None, onLog=None, onFinished=None):
        """Write the inputs into the run's work folder and start ``medsegai segment`` on them.

        ``onFinished(outcome, nodes, loadError)`` is called once from the event loop: ``nodes``
        are the loaded results (``outcome.ok``), ``loadError`` a message if loading failed.
        """
        from MedSegAILib.runs.runner import SegmentationRun
        from MedSegAILib.slicer_bridge.scene_io import seeds_file_for_segmentation, write_volume_for_run

        if self.isRunning():
            raise RuntimeError(_("A segmentation is already running."))
        if not p.inputVolume:
            raise ValueError(_("Select an input volume."))
        settings = self.settingsFor(p)
        inputVolume, outputSegmentation, seedNode = p.inputVolume, p.outputSegmentation, p.seedSegmentation
        channels = [n for n in (p.inputVolume, p.extraChannel1, p.extraChannel2) if n is not None]
        hasSeeds = bool(seedNode is not None and seedNode.GetSegmentation().GetNumberOfSegments())

        def writeInputs(folder):
            inputs = [str(write_volume_for_run(node, os.path.join(str(folder), f"channel{i}.nrrd"))) for i, node in enumerate(channels)]
            seeds = None
            if run.needs_seeds and hasSeeds:
                seeds = str(seeds_file_for_segmentation(seedNode, inputVolume, os.path.join(str(folder), "seeds.nii.gz")))
            return inputs, seeds

        def finished(outcome):
            self._run = None
            nodes, loadError = None, None
            if outcome.ok:
                try:
                    name = f"{inputVolume.GetName()} {settings.method}"
                    nodes = self.loadResults(str(outcome.output_folder), inputVolume, outputSegmentation, name)
                except Exception as exc:
                    logging.exception("MedSegAI: loading the results failed")
                    loadError = str(exc)
            if onFinished:
                onFinished(outcome, nodes, loadError)

        run = SegmentationRun(settings, MedSegAIProcess(slicer.app), **self._runArguments(onProgress, onLog, finished))
        run.start(writeInputs, has_seeds=hasSeeds)
        self._run = run
        return run

    def cancel(self) -> None:
        """Stop the running process tree; nothing is added to the scene."""
        if self._run is not None:
            self._run.cancel()

    # --- training -----------------------------------------------------------------------------

    def userModelsFolder(self) -> str:
        """Where models trained here are kept, each with a copy of its training images: a
        data folder in the user's default scene folder (Documents unless changed), not the
        settings folder (roaming on Windows); it survives updates of the extension."""
        return os.path.join(slicer.app.defaultScenePath, "MedSegAI models")

    def importModel(self, folder):
        """Import ``folder`` (an nnU-Net v2 results folder or a MONAI bundle, told by its files)
        into :meth:`userModelsFolder` under a new name; returns (model folder, card). Nothing is
        written when the import is refused."""
        from MedSegAILib.methods.deep.model_import import detect_kind, import_model
        from MedSegAILib.runs.training_run import new_model_folder

        kind = detect_kind(folder)  # before anything is created
        os.makedirs(self.userModelsFolder(), exist_ok=True)
        target = new_model_folder(self.userModelsFolder(), os.path.basename(os.path.normpath(folder)))
        card = import_model(folder, target, kind=kind, log=logging.info)
        return str(target), card

    def isTraining(self) -> bool:
        return self._trainingRun is not None and self._trainingRun.state == "running"

    def learningCurvePath(self):
        """The running training's learning-curve PNG (None before the first is drawn)."""
        return self._trainingRun.learning_curve if self._trainingRun is not None else None

    def trainingPairs(self, p):
        """The parameter node's training cases as (volume node, segmentation node) pairs."""
        pairs = list(zip(p.trainPairVolumes, p.trainPairSegmentations))
        if len(p.trainPairVolumes) != len(p.trainPairSegmentations) or any(v is None or s is None for v, s in pairs):
            raise ValueError(_("A training case refers to a node that was removed from the scene; remove it from the list."))
        return pairs

    def startTraining(self, p, retrain=False, onProgress=None, onLog=None, onFinished=None):
        """Export the training cases (checked) into the run's work folder and start
        ``medsegai train`` on them in the background.

        ``retrain``: the pair chosen above (``trainVolume``, ``trainSegmentation``) joins the
        training set of the selected model (one trained here) and training continues from that
        model. ``onFinished(outcome)`` is called once from the event loop; on success
        ``outcome.output_folder`` is the new model's folder in :meth:`userModelsFolder`.
        """
        from MedSegAILib.methods.deep.model_store import read_card
        from MedSegAILib.methods.deep.training_set import extend_training_set, names_from_text, read_training_set, write_training_set
        from MedSegAILib.runs.training_run import TrainingRun, TrainingSettings, training_set_of
        from MedSegAILib.slicer_bridge.training_nodes import cases_from_node_pairs, segment_names_of

        if self.isTraining():
            raise RuntimeError(_("A training is already running."))
        if retrain:
            model = self.settingsFor(p).model
            source = training_set_of(model)
            segments = [s["name"] for s in read_training_set(source)["medsegai"]["segments"]]
            cases, _terms = cases_from_node_pairs([(p.trainVolume, p.trainSegmentation)], segments)
            settings = TrainingSettings(read_card(model).get("name") or os.path.basename(model), tuple(segments), p.trainBudgetMin, p.device, init_from=model)

            def write(folder):
                extend_training_set(source, cases, folder)
        else:
            pairs = self.trainingPairs(p)
            if not pairs:
                raise ValueError(_("Add volume and segmentation pairs first."))
            segments = names_from_text(p.trainSegments) or segment_names_of(pairs[0][1])
            cases, terms = cases_from_node_pairs(pairs, segments)
            settings = TrainingSettings(p.trainModelName, tuple(segments), p.trainBudgetMin, p.device)

            def write(folder):
                write_training_set(cases, segments, folder, terminology=terms, name=p.trainModelName)

        def finished(outcome):
            if self._trainingRun is run:  # not a newer run started meanwhile
                self._trainingRun = None
            if onFinished:
                onFinished(outcome)

        run = TrainingRun(settings, MedSegAIProcess(slicer.app), models_root=self.userModelsFolder(), **self._runArguments(onProgress, onLog, finished))
        run.start(write)
        self._trainingRun = run
        return run

    def cancelTraining(self) -> None:
        """Stop the training's process tree; no model is added."""
        if self._trainingRun is not None:
            self._trainingRun.cancel()

    # --- results --------------------------------------------------------------------------

    def loadResults(self, folder, inputVolume, outputSegmentation=None, name="MedSegAI"):
        """Load a case folder: segmentation (under the input's study), uncertainty overlay with
        its colour legend, measurement table. A segmentation chosen as output keeps its node
        (its segments are replaced) and the overlay and table of its previous run are replaced."""
        from MedSegAILib.slicer_bridge.scene_io import load_case_into_scene

        if outputSegmentation is not None:
            for role in ("MedSegAI.UncertaintyNodeID", "MedSegAI.TableNodeID"):
                old = slicer.mrmlScene.GetNodeByID(outputSegmentation.GetAttribute(role) or "")
                if old is not None:
                    slicer.mrmlScene.RemoveNode(old)
        nodes = load_case_into_scene(
            folder, slicer.mrmlScene, reference_volume_node=inputVolume, segmentation_node=outputSegmentation, name=name
        )
        nodes.segmentation.SetAttribute("MedSegAI.UncertaintyNodeID", nodes.uncertainty.GetID())
        nodes.segmentation.SetAttribute("MedSegAI.TableNodeID", nodes.table.GetID())
        self._placeUnderStudy(inputVolume, [nodes.segmentation, nodes.uncertainty, nodes.table, *nodes.extra.get("explanation", [])])
        slicer.util.setSliceViewerLayers(background=inputVolume, foreground=nodes.uncertainty, foregroundOpacity=0.5)
        slicer.modules.colors.logic().AddDefaultColorLegendDisplayNode(nodes.uncertainty)  # static in vtkSlicerColorLogic
        return nodes

    def segmentCountWarning(self, count: int) -> Optional[str]:
        from MedSegAILib.slicer_bridge.scene_io import segment_count_warning

        return segment_count_warning(count)

    def _placeUnderStudy(self, inputVolume, nodes) -> None:
        shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
        if shNode is None:
            return
        parent = shNode.GetItemParent(shNode.GetItemByDataNode(inputVolume))
        for node in nodes:
            shNode.SetItemParent(shNode.GetItemByDataNode(node), parent)

    def showTable(self, tableNode) -> None:
        """Switch to a layout with a table view and show ``tableNode`` in it."""
        layoutManager = slicer.app.layoutManager()
        layoutManager.setLayout(slicer.modules.tables.logic().GetLayoutWithTable(layoutManager.layout))
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(tableNode.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()

    def exportSurfaces(self, segmentationNode, folder, fileFormat="stl", smoothing=0.5, coordinateSystem="LPS", overwrite=False):
        """One closed surface file per segment of ``segmentationNode`` (through a .seg.nrrd)."""
        from MedSegAILib.slicer_bridge.scene_io import write_segmentation_for_export
        from MedSegAILib.slicer_bridge.surfaces import export_surfaces

        if segmentationNode is None:
            raise ValueError(_("Select the segmentation to export."))
        if not folder:
            raise ValueError(_("Select a folder for the surface files."))
        with tempfile.TemporaryDirectory(prefix="MedSegAI-") as tmp:
            path = write_segmentation_for_export(segmentationNode, os.path.join(tmp, "segmentation.seg.nrrd"))
            return export_surfaces(
                path, folder, file_format=fileFormat, smoothing=smoothing, coordinate_system=coordinateSystem, overwrite=overwrite
            )


#
# MedSegAITest
#


class MedSegAITest(ScriptedLoadableModuleTest):
    """Runs Apply's own path inside Slicer: MedSegAILogic.startRun with the real QProcess, on
    the bundled sample data, for Otsu, the seeded graph cut with painted seeds and the shipped
    deep model (each when its packages are installed), and a cancel.

    The library's own checks (``check_case_outputs``, the runner with real processes) run in
    pytest as well; this test is what only Slicer can run.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SampleDataDownload()
        self.setUp()
        self.test_ApplyButton()
        self.setUp()
        self.test_ApplyOnSampleData()
        self.setUp()
        self.test_Cancel()
        self.setUp()
        self.test_SurfaceExport()
        self.setUp()
        self.test_TrainAndRetrain()

    def _sample(self):
        _ensureLibraryOnPath()
        from MedSegAILib.resources import sample_cases

        cases = sample_cases()
        self.assertTrue(cases, "no sample data bundled")
        case = cases[0]
        volume = slicer.util.loadVolume(str(case.image))
        return case, volume

    def _parameterNode(self, volume, method, **fields):
        logic = MedSegAILogic()
        p = logic.getParameterNode()
        p.inputVolume = volume
        p.method = method
        p.outputSegmentation = None
        for key, value in fields.items():
            setattr(p, key, value)
        return logic, p

    def _wait(self, done, timeout_s=300.0):
        deadline = time.time() + timeout_s
        while not done() and time.time() < deadline:
            slicer.app.processEvents()
            time.sleep(0.02)
        self.assertTrue(done(), "the run did not finish in time")

    def _apply(self, logic, p):
        from MedSegAILib.runs.requirements import missing_for_run

        if missing_for_run(logic.settingsFor(p)):
            return None  # the self-test installs nothing
        finished = []
        logic.startRun(p, onFinished=lambda outcome, nodes, error: finished.append((outcome, nodes, error)))
        self.assertTrue(logic.isRunning())
        self._wait(lambda: finished)
        outcome, nodes, error = finished[0]
        self.assertTrue(outcome.ok, f"{outcome.message}\n" + "\n".join(outcome.log_tail))
        self.assertIsNone(error)
        self.assertFalse(logic.isRunning())
        return nodes

    def test_SampleDataDownload(self):
        """The registered file:// sources and their SHA-256 checksums load through Sample Data."""
        import SampleData

        registerSampleData()
        case, _ = self._sample()
        nodes = SampleData.SampleDataLogic().downloadSample(case.name)
        self.assertTrue(nodes)
        self.delayDisplay("Test passed")

    def test_ApplyButton(self):
        """The panel's own path: Apply on the widget, the run in the background, the result
        adopted as the output and shown; Otsu needs no package."""
        case, volume = self._sample()
        slicer.util.selectModule("MedSegAI")
        widget = slicer.modules.medsegai.widgetRepresentation().self()
        p = widget._parameterNode
        p.inputVolume = volume
        p.methodFamily, p.method, p.methodParameters = "classical", "otsu", "{}"
        p.outputSegmentation = None
        widget.ui.applyButton.click()
        self.assertTrue(widget.logic.isRunning())
        self.assertEqual(widget.ui.applyButton.text, _("Cancel"))
        self._wait(lambda: not widget.logic.isRunning())
        slicer.app.processEvents()
        self.assertIsNotNone(p.outputSegmentation)
        self.assertGreater(p.outputSegmentation.GetSegmentation().GetNumberOfSegments(), 0)
        self.assertEqual(widget.ui.applyButton.text, _("Apply"))
        self.assertTrue(widget.ui.showTableButton.enabled)
        self.delayDisplay("Test passed")

    def test_ApplyOnSampleData(self):
        from MedSegAILib.resources import default_model_name

        case, volume = self._sample()
        seedsFile = str(case.image).replace(".nii.gz", "_seeds.nii.gz")
        seedLabels = slicer.util.loadLabelVolume(seedsFile)
        seeds = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "painted seeds")
        slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(seedLabels, seeds)
        runs = [
            ("otsu", {"methodParameters": '{"n_classes": 2}'}),
            ("graphcut", {"seedSegmentation": seeds}),
            ("deep", {"model": default_model_name()}),
        ]
        for method, fields in runs:
            self.delayDisplay(f"{method} on the sample hippocampus case")
            logic, p = self._parameterNode(volume, method, **fields)
            before = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
            nodes = self._apply(logic, p)
            if nodes is None:
                self.delayDisplay(f"{method}: packages not installed, skipped")
                continue
            count = nodes.segmentation.GetSegmentation().GetNumberOfSegments()
            self.assertGreater(count, 0)
            self.assertEqual(nodes.table.GetNumberOfRows(), count)
            self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"), before + 1)
            self.assertEqual(nodes.uncertainty.GetDisplayNode().GetApplyThreshold(), 1)
            # Apply again into the same output: the node is reused, not duplicated.
            p.outputSegmentation = nodes.segmentation
            again = self._apply(logic, p)
            self.assertIs(again.segmentation, nodes.segmentation)
            self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"), before + 1)
        self.delayDisplay("Test passed")

    def test_Cancel(self):
        from MedSegAILib.runs.process_tree import descendants, is_alive

        case, volume = self._sample()
        logic, p = self._parameterNode(volume, "atlas", atlasFolder="hippocampus")
        outcomes, progress = [], []
        run = logic.startRun(p, onProgress=lambda f, m: progress.append(f), onFinished=lambda o, n, e: outcomes.append(o))
        self._wait(lambda: progress, 120)
        pid = run.launcher.pid()
        tree = [pid, *descendants(pid)]  # PythonSlicer and the real Python below it
        self.assertGreater(len(tree), 1)
        logic.cancel()
        self._wait(lambda: outcomes, 10)
        self.assertEqual(outcomes[0].status, "cancelled")
        self.assertEqual([q for q in tree if is_alive(q)], [])
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"), 0)
        self.delayDisplay("Test passed")

    def test_SurfaceExport(self):
        from MedSegAILib.slicer_bridge.surfaces import read_surface, surface_is_closed

        case, volume = self._sample()
        logic, p = self._parameterNode(volume, "otsu", minIslandMm3=50.0)
        nodes = self._apply(logic, p)
        with tempfile.TemporaryDirectory() as folder:
            files = logic.exportSurfaces(nodes.segmentation, os.path.join(folder, "surfaces"))
            self.assertEqual(len(files), nodes.segmentation.GetSegmentation().GetNumberOfSegments())
            for f in files:
                self.assertTrue(surface_is_closed(read_surface(f)))
        self.delayDisplay("Test passed")

    def test_TrainAndRetrain(self):
        """The Train section's path: the three sample cases as volume and segmentation nodes
        train a model in the background (half a minute), the model segments a case at once, and
        one case added retrains it from there; nothing is written to the user's model folder."""
        _ensureLibraryOnPath()
        from MedSegAILib.resources import sample_cases
        from MedSegAILib.runs.requirements import missing_for_training

        if missing_for_training():
            return  # the self-test installs nothing
        with tempfile.TemporaryDirectory() as folder:
            logic = MedSegAILogic()
            logic.userModelsFolder = lambda: folder
            p = logic.getParameterNode()
            volumes, segmentations = [], []
            for case in sample_cases():
                volumes.append(slicer.util.loadVolume(str(case.image)))
                segmentations.append(slicer.util.loadSegmentation(str(case.label)))
            p.trainPairVolumes, p.trainPairSegmentations = volumes, segmentations
            p.trainSegments, p.trainModelName, p.trainBudgetMin = "", "MedSegAITest", 0.5
            finished = []
            logic.startTraining(p, onFinished=finished.append)
            self.assertTrue(logic.isTraining())
            self._wait(lambda: finished, 900)
            self.assertTrue(finished[0].ok, f"{finished[0].message}\n" + "\n".join(finished[0].log_tail))
            model = str(finished[0].output_folder)
            self.assertTrue(model.startswith(folder))
            p.inputVolume, p.methodFamily, p.method, p.methodParameters, p.model, p.modelFolder = volumes[0], "deep", "deep", "{}", model, ""
            p.allowOutOfDomain = True  # a three-case model's record is not used, but a test should not depend on it
            nodes = self._apply(logic, p)
            if nodes is not None:
                self.assertGreater(nodes.segmentation.GetSegmentation().GetNumberOfSegments(), 0)
            # A new case (the first one mirrored left-right, image and segments) joins the set.
            case = sample_cases()[0]
            p.trainVolume = slicer.util.loadVolume(str(case.image), properties={"name": "mirrored"})
            voxels = slicer.util.arrayFromVolume(p.trainVolume)
            voxels[:] = voxels[:, :, ::-1].copy()
            slicer.util.arrayFromVolumeModified(p.trainVolume)
            p.trainSegmentation = slicer.util.loadSegmentation(str(case.label))
            segmentation = p.trainSegmentation.GetSegmentation()
            for i in range(segmentation.GetNumberOfSegments()):
                segmentId = segmentation.GetNthSegmentID(i)
                mask = slicer.util.arrayFromSegmentBinaryLabelmap(p.trainSegmentation, segmentId, p.trainVolume)
                slicer.util.updateSegmentBinaryLabelmapFromArray(mask[:, :, ::-1].copy(), p.trainSegmentation, segmentId, p.trainVolume)
            again = []
            logic.startTraining(p, retrain=True, onFinished=again.append)
            self._wait(lambda: again, 900)
            self.assertTrue(again[0].ok, f"{again[0].message}\n" + "\n".join(again[0].log_tail))
            self.assertNotEqual(str(again[0].output_folder), model)
        self.delayDisplay("Test passed")
