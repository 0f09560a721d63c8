"""MedSegAI's "Graph cut" effect for Slicer's Segment Editor.

Built on Slicer's ``AbstractScriptedSegmentEditorAutoCompleteEffect`` as Grow from seeds is:
the visible segments are the seeds (one of them the background), Initialize computes a
preview, Auto-update recomputes it after every stroke, Apply/Cancel, the editor's masking and
editable-area settings, undo through the editor. The computation is
``MedSegAILib.slicer_bridge.seeded_effect.GraphCutPreview`` (tested with slicer-core), which
keeps a session per image so later strokes reuse what does not depend on the seeds. "Where
next?" moves the slice views to the most uncertain place of the preview.

Registered by the MedSegAI module at start-up (``MedSegAI.registerEditorEffect``), as Slicer's
ScriptedSegmentEditorEffect template does. Parses as Python 3.9 (Slicer 5.8).
"""

import logging
import os
import sys
import time

import qt
import vtk

import slicer
from slicer.i18n import tr as _

from SegmentEditorEffects import AbstractScriptedSegmentEditorAutoCompleteEffect


def _ensureLibraryOnPath():
    """MedSegAILib sits beside this folder when installed, two folders up in a source tree."""
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (os.path.dirname(here), os.path.dirname(os.path.dirname(here))):
        if os.path.isdir(os.path.join(folder, "MedSegAILib")):
            if folder not in sys.path:
                sys.path.insert(0, folder)
            return folder
    raise RuntimeError("MedSegAILib was not found beside the MedSegAI effect")


class SegmentEditorEffect(AbstractScriptedSegmentEditorAutoCompleteEffect):
    def __init__(self, scriptedEffect):
        AbstractScriptedSegmentEditorAutoCompleteEffect.__init__(self, scriptedEffect)
        scriptedEffect.name = "MedSegAI graph cut"  # not translated: effects are found by name
        scriptedEffect.title = _("Graph cut")
        self.minimumNumberOfSegments = 2  # an object and the background
        self.minimumNumberOfSegmentsWithEditableArea = 2
        self.clippedMasterImageDataRequired = True
        self.clippedMaskImageDataRequired = True
        self.extentGrowthRatio = 0.2  # as Grow from seeds: room around the seeds for the cut to grow
        self._preview = None
        self._uncertaintyNode = None
        self._priorCache = {}  # the model's answer on the whole source volume, kept across resets

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def icon(self):
        iconPath = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Resources", "Icons", "MedSegAI.png")
        return qt.QIcon(iconPath) if os.path.exists(iconPath) else qt.QIcon()

    def helpText(self):
        return "<html>" + _(
            """Segment from a few strokes with MedSegAI's seeded graph cut.<p>
            <ul style="margin: 0">
            <li>Paint each structure as its own segment, and the background as a segment named
            <dfn>background</dfn> (else the last visible segment is the background).
            <li>Click <dfn>Initialize</dfn>; with auto-update on, the preview follows every stroke.
            <li><dfn>Start from model</dfn>: a model's segmentation is the starting point and
            the strokes correct it (segments named after the model's classes, or one segment
            for all of them).
            <li><dfn>Show uncertainty</dfn> overlays where the preview is unsure.
            <li><dfn>Where next?</dfn> moves the views to where the result is least certain: a
            stroke there helps most.
            <li>Click <dfn>Apply</dfn> to keep the preview.
            </ul><p>
            Boundaries follow image edges (contrast-sensitive cut in 3D); intensity models are
            learned from the strokes."""
        )

    def reset(self):
        self._preview = None
        self._removeUncertaintyNode()
        if hasattr(self, "backgroundLabel"):
            self.backgroundLabel.text = ""
        AbstractScriptedSegmentEditorAutoCompleteEffect.reset(self)
        self.updateGUIFromMRML()

    def sourceVolumeNodeChanged(self):
        self._preview = None  # another image on the same grid must not reuse the session
        self._priorCache = {}

    def setupOptionsFrame(self):
        AbstractScriptedSegmentEditorAutoCompleteEffect.setupOptionsFrame(self)
        self.smoothnessSlider = slicer.qMRMLSliderWidget()
        self.smoothnessSlider.setMRMLScene(slicer.mrmlScene)
        self.smoothnessSlider.minimum = 0.0
        self.smoothnessSlider.maximum = 30.0
        self.smoothnessSlider.decimals = 1
        self.smoothnessSlider.singleStep = 0.5
        self.smoothnessSlider.setToolTip(_("Larger values give smoother, more compact segments whose boundaries follow strong image edges."))
        self.scriptedEffect.addLabeledOptionsWidget(_("Smoothness:"), self.smoothnessSlider)
        self.smoothnessSlider.connect("valueChanged(double)", self.onSmoothnessChanged)

        self.priorModelComboBox = qt.QComboBox()
        self.priorModelComboBox.setToolTip(
            _("Start from a model's segmentation of the whole volume (its classes matched to the segments by name); "
              "the strokes then correct it. The model's domain check applies.")
        )
        self.priorModelComboBox.addItem(_("(none: strokes only)"), "")
        _ensureLibraryOnPath()
        from MedSegAILib.runs.model_choices import shipped_model_choices

        try:
            choices = shipped_model_choices()
        except Exception as error:  # a broken model folder must not take the effect's options with it
            logging.warning(f"MedSegAI graph cut: the shipped models could not be listed: {error}")
            choices = []
        for choice in choices:
            self.priorModelComboBox.addItem(choice.text, choice.name)
            self.priorModelComboBox.setItemData(self.priorModelComboBox.count - 1, choice.summary, qt.Qt.ToolTipRole)
        self.scriptedEffect.addLabeledOptionsWidget(_("Start from model:"), self.priorModelComboBox)
        self.priorModelComboBox.connect("currentIndexChanged(int)", self.onPriorModelChanged)

        self.showUncertaintyCheckBox = qt.QCheckBox(_("Show uncertainty"))
        self.showUncertaintyCheckBox.setToolTip(_("Overlay the preview's uncertainty on the slice views (bright: the cut is unsure there)."))
        self.showUncertaintyCheckBox.connect("toggled(bool)", self.onShowUncertaintyToggled)
        self.scriptedEffect.addOptionsWidget(self.showUncertaintyCheckBox)

        self.whereNextButton = qt.QPushButton(_("Where next?"))
        self.whereNextButton.setToolTip(_("Move the slice views to where the preview is least certain: a stroke there helps most."))
        self.whereNextButton.connect("clicked()", self.onWhereNext)
        self.scriptedEffect.addOptionsWidget(self.whereNextButton)
        self.backgroundLabel = qt.QLabel()
        self.scriptedEffect.addOptionsWidget(self.backgroundLabel)

    def setMRMLDefaults(self):
        AbstractScriptedSegmentEditorAutoCompleteEffect.setMRMLDefaults(self)
        self.scriptedEffect.setParameterDefault("MedSegAISmoothness", 6.0)
        self.scriptedEffect.setParameterDefault("MedSegAIPriorModel", "")

    def updateGUIFromMRML(self):
        AbstractScriptedSegmentEditorAutoCompleteEffect.updateGUIFromMRML(self)
        if not hasattr(self, "smoothnessSlider"):
            return
        value = self._smoothness()
        wasBlocked = self.smoothnessSlider.blockSignals(True)
        self.smoothnessSlider.value = value
        self.smoothnessSlider.blockSignals(wasBlocked)
        model = self._priorModel()
        wasBlocked = self.priorModelComboBox.blockSignals(True)
        if model and self.priorModelComboBox.findData(model) < 0:  # a model folder set by a script or a saved scene
            self.priorModelComboBox.addItem(model, model)
        self.priorModelComboBox.currentIndex = max(self.priorModelComboBox.findData(model), 0)
        self.priorModelComboBox.blockSignals(wasBlocked)
        self.whereNextButton.enabled = self._preview is not None and self.getPreviewNode() is not None

    def updateMRMLFromGUI(self):
        AbstractScriptedSegmentEditorAutoCompleteEffect.updateMRMLFromGUI(self)
        self.scriptedEffect.setParameter("MedSegAISmoothness", self.smoothnessSlider.value)
        self.scriptedEffect.setParameter("MedSegAIPriorModel", self.priorModelComboBox.currentData or "")

    def _smoothness(self):
        return self.scriptedEffect.doubleParameter("MedSegAISmoothness") if self.scriptedEffect.parameterDefined("MedSegAISmoothness") else 6.0

    def _priorModel(self):
        """The model the cut starts from ("" for none); a string parameter that is empty is not defined."""
        return self.scriptedEffect.parameter("MedSegAIPriorModel") if self.scriptedEffect.parameterDefined("MedSegAIPriorModel") else ""

    def onSmoothnessChanged(self, value):
        self.updateMRMLFromGUI()
        self._preview = None  # a new smoothness is a new session
        if self.getPreviewNode():
            self.delayedAutoUpdateTimer.start()

    def onPriorModelChanged(self, index):
        self.updateMRMLFromGUI()
        self._preview = None  # another prior is a new session
        self._priorCache = {}
        if self.getPreviewNode():
            self.delayedAutoUpdateTimer.start()

    def _removeUncertaintyNode(self):
        node = getattr(self, "_uncertaintyNode", None)
        self._uncertaintyNode = None
        if node is not None and slicer.mrmlScene.IsNodePresent(node):
            slicer.mrmlScene.RemoveNode(node)

    def _updateUncertaintyOverlay(self):
        if not self.showUncertaintyCheckBox.checked or self._preview is None:
            return
        node = self._uncertaintyNode if self._uncertaintyNode is not None and slicer.mrmlScene.IsNodePresent(self._uncertaintyNode) else None
        self._uncertaintyNode = self._preview.show_uncertainty(slicer.mrmlScene, node)
        if self._uncertaintyNode is not None:
            parent = self.scriptedEffect.parameterSetNode().GetSegmentationNode().GetParentTransformNode()
            self._uncertaintyNode.SetAndObserveTransformNodeID(parent.GetID() if parent else None)  # as the preview node
            slicer.util.setSliceViewerLayers(foreground=self._uncertaintyNode, foregroundOpacity=0.5)

    def onShowUncertaintyToggled(self, checked):
        if checked:
            self._updateUncertaintyOverlay()
        elif self._uncertaintyNode is not None:
            slicer.util.setSliceViewerLayers(foreground=None)

    def onWhereNext(self):
        ras = self._preview.hint_ras() if self._preview is not None else None
        if ras is None:
            slicer.util.showStatusMessage(_("Nothing uncertain left in the preview."), 3000)
            return
        slicer.modules.markups.logic().JumpSlicesToLocation(ras[0], ras[1], ras[2], True)

    def computePreviewLabelmap(self, mergedImage, outputLabelmap):
        _ensureLibraryOnPath()
        from MedSegAILib.runs.requirements import missing_for_run
        from MedSegAILib.runs.settings import RunSettings
        from MedSegAILib.slicer_bridge.seeded_effect import GraphCutPreview, background_value

        model = self._priorModel()
        runs = [RunSettings(method="graphcut")] + ([RunSettings(method="deep", model=model)] if model else [])
        for settings in runs:
            if missing_for_run(settings):
                from MedSegAI import MedSegAILogic  # asks, then installs (PyMaxflow; the model's runtime), as the panel does

                if not MedSegAILogic().ensureDependencies(settings):
                    raise RuntimeError(_("The graph cut cannot run: {method} needs packages that are not installed.").format(method=settings.method))
        mask = self.clippedMaskImageData
        extent = mask.GetExtent() if mask is not None else None
        # With an editable area the background need not surround the object: a wider box (as Grow from seeds).
        self.extentGrowthRatio = 0.5 if extent is not None and extent[0] <= extent[1] and extent[2] <= extent[3] and extent[4] <= extent[5] else 0.2

        segmentation = self.scriptedEffect.parameterSetNode().GetSegmentationNode().GetSegmentation()
        ids = [self.selectedSegmentIds.GetValue(i) for i in range(self.selectedSegmentIds.GetNumberOfValues())]
        names = [segmentation.GetSegment(i).GetName() for i in ids]
        background = background_value(names)
        self.backgroundLabel.text = _("Background segment: {name}").format(name=names[background - 1])
        if self._preview is None:
            self._preview = GraphCutPreview({"lam": self._smoothness()}, model=model or None, prior_cache=self._priorCache)
        start = time.time()
        result = self._preview.compute(
            self.clippedMasterImageData, mergedImage, self.clippedMaskImageData, background=background, segment_names=names,
            full_source=self.scriptedEffect.sourceVolumeImageData() if model else None,
        )
        outputLabelmap.DeepCopy(result)
        imageToWorld = vtk.vtkMatrix4x4()
        mergedImage.GetImageToWorldMatrix(imageToWorld)
        outputLabelmap.SetImageToWorldMatrix(imageToWorld)
        logging.info(f"MedSegAI graph cut on {'x'.join(str(d) for d in mergedImage.GetDimensions())} voxels: {time.time() - start:.2f} s")
        self.whereNextButton.enabled = True
        self._updateUncertaintyOverlay()
