"""Training from the scene: real volume and segmentation nodes (slicer-core) on real
hippocampus cases are exported to a training set, checked, trained on in a real background
process through the library's TrainingRun, and retrained with an added case."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core is needed (pip install 'medsegai[mrml]')")

from MedSegAILib.core.errors import InputError  # noqa: E402
from MedSegAILib.methods.deep.dataset import read_dataset  # noqa: E402
from MedSegAILib.methods.deep.domain import check_input, input_features  # noqa: E402
from MedSegAILib.methods.deep.training_set import (  # noqa: E402
    case_names,
    check_cases,
    extend_training_set,
    read_training_set,
    write_training_set,
)
from MedSegAILib.runs.subprocess_launcher import EventLoop, SubprocessLauncher  # noqa: E402
from MedSegAILib.runs.training_run import (  # noqa: E402
    TRAINING_SET,
    TrainingRun,
    TrainingSettings,
    check_training_settings,
    new_model_folder,
    training_arguments,
    training_set_of,
    user_model_choices,
)
from MedSegAILib.slicer_bridge import segmentation_node as sn  # noqa: E402
from MedSegAILib.slicer_bridge.training_nodes import case_from_nodes, cases_from_node_pairs  # noqa: E402

SEGMENTS = ["anterior", "posterior"]
LIBRARY_PARENT = str(Path(__file__).resolve().parents[1])


def _names(shared_data, n, skip=0):
    return sorted(p.name[: -len(".nii.gz")] for p in (shared_data / "hippocampus" / "imagesTr").glob("*.nii.gz"))[skip : skip + n]


def _read(shared_data, name):
    d = shared_data / "hippocampus"
    return sitk.ReadImage(str(d / "imagesTr" / f"{name}.nii.gz")), sitk.ReadImage(str(d / "labelsTr" / f"{name}.nii.gz"))


def _pairs(scene, shared_data, names, segments=SEGMENTS):
    pairs = []
    for n in names:
        image, labels = _read(shared_data, n)
        volume = sn.sitk_to_volume_node(image, scene, n)
        pairs.append((volume, sn.segmentation_node_from_labels(labels, segments, scene, f"{n} seg", volume)))
    return pairs


def test_nodes_export_to_a_training_set_that_training_reads(shared_data, tmp_path):
    scene = slicer.vtkMRMLScene()
    names = _names(shared_data, 4)
    pairs = _pairs(scene, shared_data, names)
    # A segment carrying a terminology entry: it goes into dataset.json.
    entry = "Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure~SCT^5976003^Hippocampus~^^~Anatomic codes~^^~"
    pairs[0][1].GetSegmentation().GetSegment(pairs[0][1].GetSegmentation().GetSegmentIdBySegmentName("anterior")).SetTag("TerminologyEntry", entry)
    cases, terms = cases_from_node_pairs(pairs, SEGMENTS)
    assert terms == {"anterior": entry}
    folder = write_training_set(cases, SEGMENTS, tmp_path / "set", terminology=terms)
    ds = read_dataset(folder)
    assert [c.name for c in ds.cases] == names and ds.class_names == {1: "anterior", 2: "posterior"}
    for case, n in zip(ds.cases, names):
        image, labels = _read(shared_data, n)
        written = sitk.ReadImage(str(case.label))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(labels))
        np.testing.assert_allclose(written.GetOrigin(), image.GetOrigin(), atol=1e-6)
        np.testing.assert_allclose(written.GetSpacing(), image.GetSpacing(), atol=1e-6)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(case.images[0]))), sitk.GetArrayFromImage(image))
    meta = read_training_set(folder)["medsegai"]
    assert meta["validation"] == [names[-1]]  # 20 % of 4, at least one: the last case
    assert meta["segments"][0] == {"label": 1, "name": "anterior", "terminology": entry}
    src = meta["cases"][0]
    assert src["volume_id"] == pairs[0][0].GetID() and src["segmentation"] == f"{names[0]} seg"
    assert src["segment_ids"] == {"anterior": "anterior", "posterior": "posterior"}
    # Nothing already there is overwritten.
    with pytest.raises(InputError, match="already holds files"):
        write_training_set(cases, SEGMENTS, folder)
    # A scan is in a training set once: the validation case added again (as to retrain) is refused,
    # and so is one scan listed twice.
    again, _ = case_from_nodes(pairs[-1][0], pairs[-1][1], SEGMENTS, name="new name")
    with pytest.raises(InputError, match=f"same image as case '{names[-1]}' \\(a validation case\\)"):
        extend_training_set(folder, [again], tmp_path / "more")
    assert not (tmp_path / "more").exists()
    with pytest.raises(InputError, match="same image"):
        write_training_set(cases + [again], SEGMENTS, tmp_path / "twice")


def test_a_segmentation_cropped_on_the_volume_lattice_is_placed_where_it_was_drawn(shared_data):
    """Slicer keeps a segment's labelmap cropped to its extent: whole-voxel offsets are fine."""
    scene = slicer.vtkMRMLScene()
    image, labels = _read(shared_data, _names(shared_data, 1)[0])
    volume = sn.sitk_to_volume_node(image, scene, "v")
    cropped = labels[4:-3, 5:-2, 3:-4]  # same spacing and axes, origin moved by whole voxels
    assert (sitk.GetArrayFromImage(cropped) > 0).sum() == (sitk.GetArrayFromImage(labels) > 0).sum()
    node = sn.segmentation_node_from_labels(cropped, SEGMENTS, scene, "cropped")
    case, _ = case_from_nodes(volume, node, SEGMENTS)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(case.label), sitk.GetArrayFromImage(labels))


def test_bad_pairs_are_refused_naming_the_problem(shared_data):
    scene = slicer.vtkMRMLScene()
    name = _names(shared_data, 1)[0]
    image, labels = _read(shared_data, name)
    volume = sn.sitk_to_volume_node(image, scene, "v")
    good = sn.segmentation_node_from_labels(labels, SEGMENTS, scene, "good", volume)
    with pytest.raises(InputError, match="no segment named 'tail'.*'anterior', 'posterior'"):
        case_from_nodes(volume, good, ["anterior", "tail"])
    # Names match ignoring case and spaces when only one segment does.
    case, _ = case_from_nodes(volume, good, ["Anterior ", "posterior"])
    assert int(sitk.GetArrayFromImage(case.label).max()) == 2
    # Drawn on another grid (a 2 mm resampling of the volume).
    coarse = sitk.Resample(labels, [s // 2 for s in labels.GetSize()], sitk.Transform(), sitk.sitkNearestNeighbor, labels.GetOrigin(), [2.0, 2.0, 2.0], labels.GetDirection())
    with pytest.raises(InputError, match="another grid than the volume 'v'.*spacing"):
        case_from_nodes(volume, sn.segmentation_node_from_labels(coarse, SEGMENTS, scene, "coarse"), SEGMENTS)
    # Shifted by half a voxel.
    shifted = sitk.Image(labels)
    shifted.SetOrigin([o + 0.5 for o in labels.GetOrigin()])
    with pytest.raises(InputError, match="shifted by a fraction of a voxel"):
        case_from_nodes(volume, sn.segmentation_node_from_labels(shifted, SEGMENTS, scene, "shifted"), SEGMENTS)
    # Reaching outside the volume: the volume is a crop that cuts through the structure.
    arr = sitk.GetArrayFromImage(labels)
    z = int(np.nonzero(arr.any(axis=(1, 2)))[0].mean())
    crop = image[:, :, :z]
    with pytest.raises(InputError, match="reaches outside the volume 'crop'"):
        case_from_nodes(sn.sitk_to_volume_node(crop, scene, "crop"), good, SEGMENTS)
    # A segment that is empty in one case.
    only_one = sitk.GetImageFromArray((arr == 1).astype(np.uint8))
    only_one.CopyInformation(labels)
    half, _ = case_from_nodes(volume, sn.segmentation_node_from_labels(only_one, SEGMENTS, scene, "half", volume), SEGMENTS)
    full, _ = case_from_nodes(volume, good, SEGMENTS)
    with pytest.raises(InputError, match="segment 'posterior' is empty or missing"):
        check_cases([full, full, half], SEGMENTS)
    with pytest.raises(InputError, match="training needs at least 3"):
        check_cases([full, full], SEGMENTS)
    with pytest.raises(InputError, match="segment names repeat"):
        check_cases([full, full, full], ["a", "A"])
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    volume.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(InputError, match="is transformed"):
        case_from_nodes(volume, good, SEGMENTS)


def test_names_folders_and_settings():
    assert case_names(["Case 1", "case 1", "x/y", ""]) == ["Case_1", "case_1_2", "x_y", "case"]
    with pytest.raises(InputError, match="name the model"):
        check_training_settings(TrainingSettings(" ", ("a",)))
    with pytest.raises(InputError, match="budget"):
        check_training_settings(TrainingSettings("m", ("a",), budget_min=0.0))
    with pytest.raises(InputError, match="not a model folder"):
        check_training_settings(TrainingSettings("m", ("a",), init_from="/nonexistent"))
    args = training_arguments(TrainingSettings("m", ("a",)), "set", "out")
    assert args[:4] == ["train", "set", "--output", "out"] and args[args.index("--time-budget-min") + 1] == "10"
    assert "--budget-clock" not in args and "--init-from" not in args and "--average-from" in args
    cpu = training_arguments(TrainingSettings("m", ("a",), budget_clock="cpu", init_from="prev"), "set", "out")
    assert cpu[cpu.index("--budget-clock") + 1] == "cpu" and cpu[cpu.index("--init-from") + 1] == "prev"


def test_a_small_record_is_not_used_for_the_domain_check(shared_data):
    image, _ = _read(shared_data, _names(shared_data, 1)[0])
    features = input_features([image])
    record = {"spacing_xyz": [[9, 9, 9], [9, 9, 9]], "n_training_inputs": 4}  # would refuse if used
    verdict = check_input(record, features)
    assert verdict.in_domain is None and "4 training inputs" in verdict.checked


def _train(root, settings, write, on_log=None):
    loop = EventLoop()
    done = []
    run = TrainingRun(settings, SubprocessLauncher(loop), models_root=root, python_executable=sys.executable, library_parent=LIBRARY_PARENT,
                      call_soon=loop.call_soon, on_log=on_log, on_finished=done.append, work_root=str(root.parent / "work"))
    (root.parent / "work").mkdir(exist_ok=True)
    run.start(write)
    return run, loop, done


def _sha(folder):
    return hashlib.sha256((Path(folder) / "model.safetensors").read_bytes()).hexdigest()


def test_train_from_the_scene_then_add_a_case_and_retrain(shared_data, tmp_path):
    """The whole loop through real processes: the model lands in the user's folder with its
    card (sources, validation figures) and curve; the retrain starts from it, keeps its
    validation case, and writes a new model beside it without touching the first."""
    scene = slicer.vtkMRMLScene()
    cases, terms = cases_from_node_pairs(_pairs(scene, shared_data, _names(shared_data, 3)), SEGMENTS)
    root = tmp_path / "models"
    curves = []
    run, loop, done = _train(root, TrainingSettings("hippo", tuple(SEGMENTS), budget_min=0.5, threads=2),
                             lambda f: write_training_set(cases, SEGMENTS, f, terminology=terms))
    run.on_log = lambda line, t: curves.append(run.learning_curve is not None)
    assert loop.run_until(lambda: bool(done), 300)
    outcome = done[0]
    assert outcome.ok, outcome.message + "\n".join(outcome.log_tail)
    first = outcome.output_folder
    assert first == root / "hippo" and run.work_folder is None and not list((tmp_path / "work").iterdir())
    assert any(curves), "the learning curve was drawn while training ran"
    card = json.loads((first / "model.json").read_text())
    assert card["name"] == "hippo" and card["training"]["dataset"] == TRAINING_SET
    assert card["training"]["validation_cases"] == [cases[-1].name] and len(card["training"]["train_cases"]) == 2
    assert card["training"]["source"][0]["volume_id"] == "vtkMRMLScalarVolumeNode1"
    assert card["validation"]["mean_dice"] is not None and card["domain"]["n_training_inputs"] == 2
    for f in ("model.safetensors", "model.onnx", "learning_curves.png", TRAINING_SET):
        assert (first / f).exists(), f
    assert not (first / "checkpoint.safetensors").exists()
    choice = user_model_choices(root)[0]
    assert choice.name == str(first) and choice.text == "hippo (yours)" and "validation Dice" in choice.summary
    before = _sha(first)

    more, _ = cases_from_node_pairs(_pairs(scene, shared_data, _names(shared_data, 1, skip=3)), SEGMENTS)
    run, loop, done = _train(root, TrainingSettings("hippo", tuple(SEGMENTS), budget_min=0.5, threads=2, init_from=str(first)),
                             lambda f: extend_training_set(training_set_of(first), more, f))
    assert loop.run_until(lambda: bool(done), 300)
    assert done[0].ok, done[0].message + "\n".join(done[0].log_tail)
    second = done[0].output_folder
    assert second == root / "hippo-2"
    card2 = json.loads((second / "model.json").read_text())
    assert card2["training"]["initialised_from"]["sha256"] == json.loads((first / "model.json").read_text())["sha256"]
    assert card2["training"]["validation_cases"] == card["training"]["validation_cases"]
    assert len(card2["training"]["train_cases"]) == 3
    assert _sha(first) == before and new_model_folder(root, "hippo") == root / "hippo-3"


def test_cancelled_training_leaves_nothing(shared_data, tmp_path):
    scene = slicer.vtkMRMLScene()
    cases, _ = cases_from_node_pairs(_pairs(scene, shared_data, _names(shared_data, 3)), SEGMENTS)
    root = tmp_path / "models"
    run, loop, done = _train(root, TrainingSettings("hippo", tuple(SEGMENTS), budget_min=5, threads=1), lambda f: write_training_set(cases, SEGMENTS, f))
    seen = []
    run.on_progress = lambda f, m: seen.append(m)
    assert loop.run_until(lambda: any("epoch" in m for m in seen), 120)
    run.cancel()
    assert loop.run_until(lambda: bool(done), 30)
    assert done[0].status == "cancelled" and "no model" in done[0].message
    assert not root.exists() and not list((tmp_path / "work").iterdir())


def _cli(*args):
    import subprocess

    return subprocess.run([sys.executable, "-m", "MedSegAILib.cli", *args], capture_output=True, text=True, cwd=LIBRARY_PARENT)


def test_the_cli_writes_and_extends_a_training_set_from_files(shared_data, tmp_path):
    """Labelmaps and a .seg.nrrd saved by Slicer's storage node give the same checked set."""
    d = shared_data / "hippocampus"
    names = _names(shared_data, 4)
    scene = slicer.vtkMRMLScene()
    image, labels = _read(shared_data, names[0])
    node = sn.segmentation_node_from_labels(labels, SEGMENTS, scene, "s")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "first.seg.nrrd"))
    assert storage.WriteData(node)
    cases = ["--case", str(d / "imagesTr" / f"{names[0]}.nii.gz"), str(tmp_path / "first.seg.nrrd")]
    for n in names[1:3]:
        cases += ["--case", str(d / "imagesTr" / f"{n}.nii.gz"), str(d / "labelsTr" / f"{n}.nii.gz")]
    done = _cli("training-set", *cases, "--segments", "anterior,posterior", "--output", str(tmp_path / "set"))
    assert done.returncode == 0, done.stderr
    ds = read_dataset(tmp_path / "set")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(ds.cases[0].label))), sitk.GetArrayFromImage(labels))
    assert read_training_set(tmp_path / "set")["medsegai"]["cases"][0]["segment_ids"] == {"anterior": "anterior", "posterior": "posterior"}
    # A missing segment in a .seg.nrrd, too few cases, an occupied folder: one line, exit code 2.
    for args, says in (
        (cases + ["--segments", "anterior,tail", "--output", str(tmp_path / "x")], "no segment named 'tail'"),
        (cases[:3] + ["--segments", "anterior,posterior", "--output", str(tmp_path / "y")], "at least 3"),
        (cases + ["--segments", "anterior,posterior", "--output", str(tmp_path / "set")], "already holds files"),
    ):
        bad = _cli("training-set", *args)
        assert bad.returncode == 2 and says in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr
    more = _cli("training-set", "--case", str(d / "imagesTr" / f"{names[3]}.nii.gz"), str(d / "labelsTr" / f"{names[3]}.nii.gz"),
                "--add-to", str(tmp_path / "set"), "--output", str(tmp_path / "set2"))
    assert more.returncode == 0, more.stderr
    meta = read_training_set(tmp_path / "set2")
    assert meta["numTraining"] == 4 and meta["medsegai"]["validation"] == [names[2]]
    assert read_training_set(tmp_path / "set")["numTraining"] == 3  # the source is unchanged
