"""Bad inputs and faults, one row each: the promise is a one-line error naming the problem,
exit code 2, and nothing the user had lost, changed or mixed.

Each row builds its input here (from a real sample case or the shipped model), runs the real
command line in a fresh process, and checks the exit code, a fragment of the message, and that
the files it names are byte for byte as before.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings, strategies as st

from MedSegAILib.core.errors import InputError, ResourceError
from MedSegAILib.io.file_checks import check_image_file
from MedSegAILib.outputs.case_folder import check_case_outputs
from MedSegAILib.resources import models_dir, sample_cases

REPO = Path(__file__).resolve().parents[1]
CASE = sample_cases()[0]


def run_cli(*args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "MedSegAILib.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
    )


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def expect_refusal(proc, fragment: str, code: int = 2):
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert lines and lines[-1].startswith("medsegai: error:"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert fragment in lines[-1], lines[-1]


# --- 1. model files outside the folder, unusable cards ---------------------------------------


def _model_copy(tmp_path, edit):
    folder = tmp_path / "model"
    shutil.copytree(models_dir() / "hippocampus_single", folder)
    card = json.loads((folder / "model.json").read_text())
    edit(card, folder)
    (folder / "model.json").write_text(json.dumps(card))
    return folder


def _outside_onnx(card, folder):
    elsewhere = folder.parent / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(folder / "model.onnx", elsewhere / "model.onnx")
    card["onnx"]["file"] = "../elsewhere/model.onnx"


def _absolute_onnx(card, folder):
    card["onnx"]["file"] = str((folder / "model.onnx").resolve())


def _symlinked_onnx(card, folder):
    target = folder.parent / "other.onnx"
    shutil.copy(folder / "model.onnx", target)
    (folder / "model.onnx").unlink()
    (folder / "model.onnx").symlink_to(target)


def _set_plan(key, value):
    def edit(card, folder):
        card["plan"][key] = value

    return edit


MODEL_ROWS = {
    "onnx file outside the folder": (_outside_onnx, "outside the model folder"),
    "absolute onnx file": (_absolute_onnx, "outside the model folder"),
    "onnx file is a link out of the folder": (_symlinked_onnx, "leads outside the model folder"),
    "class count differs from the network": (_set_plan("num_classes", 5), "output channels"),
    "class name beyond the classes": (_set_plan("class_names", {"1": "a", "7": "b"}), "names class 7"),
    "no plan": (lambda c, f: c.pop("plan"), "has no plan"),
    "patch of 0": (_set_plan("patch_size_zyx", [0, 48, 32]), "patch_size_zyx"),
    "negative patch": (_set_plan("patch_size_zyx", [-8, 48, 32]), "patch_size_zyx"),
    "patch as text": (_set_plan("patch_size_zyx", ["a", "b", "c"]), "patch_size_zyx"),
    "spacing 0.01 mm": (_set_plan("target_spacing_xyz", [0.01, 0.01, 0.01]), "target_spacing_xyz"),
    "colour named red": (_set_plan("class_colors", {"1": "red"}), "class colour 1"),
    "a million classes": (_set_plan("num_classes", 10**6), "num_classes"),
    "weights under another name": (lambda c, f: c.update(weights="../model.safetensors"), "keep their weights in model.safetensors"),
}


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
@pytest.mark.parametrize("row", sorted(MODEL_ROWS))
def test_unusable_model_folders_are_refused(row, runtime, tmp_path):
    edit, fragment = MODEL_ROWS[row]
    if runtime == "torch" and "onnx" in row:
        pytest.skip("the torch runtime does not read the ONNX export")
    if runtime == "torch" and row == "class count differs from the network":
        fragment = "do not fit the network"
    folder = _model_copy(tmp_path, edit)
    before = {p.name: digest(p) for p in folder.iterdir() if p.is_file()}
    out = tmp_path / "out"
    proc = run_cli("segment", CASE.image, "-m", "deep", "--model", folder, "--param", f"runtime={runtime}", "--no-radiomics", "-o", out)
    expect_refusal(proc, fragment)
    assert not out.exists()
    assert {p.name: digest(p) for p in folder.iterdir() if p.is_file()} == before


def test_a_card_that_is_not_json_is_refused(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(models_dir() / "hippocampus_single", folder)
    (folder / "model.json").write_text("{not json")
    expect_refusal(run_cli("segment", CASE.image, "-m", "deep", "--model", folder, "-o", tmp_path / "o"), "is not valid JSON")


# --- 2. files cut short, headers that claim too much ----------------------------------------


def _cut(tmp_path, name, fraction=0.5):
    image = sitk.ReadImage(str(CASE.image))
    full = tmp_path / f"full{name}"
    sitk.WriteImage(image, str(full), useCompression=name != ".nii")
    data = full.read_bytes()
    cut = tmp_path / f"cut{name}"
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


@pytest.mark.parametrize("name", [".nii.gz", ".nii", ".nrrd"])
def test_a_file_cut_short_is_refused(name, tmp_path):
    cut = _cut(tmp_path, name)
    expect_refusal(run_cli("segment", cut, "-o", tmp_path / "o"), "is cut short")
    assert not (tmp_path / "o").exists()


def test_a_header_claiming_more_than_memory_is_refused_before_reading(tmp_path):
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, 1000, 1000, 1000, 1, 1, 1, 1)
    struct.pack_into("<hh", header, 70, 16, 32)  # float32
    struct.pack_into("<f", header, 108, 352.0)
    struct.pack_into("<4s", header, 344, b"n+1\0")
    path = tmp_path / "claims_1000_cubed.nii.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(bytes(header) + b"\0" * 4 + b"\0" * 50_000)
    with pytest.raises(ResourceError, match="1000 x 1000 x 1000 voxels"):
        check_image_file(path, memory_bytes=2 << 30)
    # Under a 3 GB address-space limit the command refuses it at once, by the figures.
    proc = subprocess.run(
        ["bash", "-c", f"ulimit -v 3000000; exec {sys.executable} -m MedSegAILib.cli segment {path} -o {tmp_path / 'o'}"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    expect_refusal(proc, "more than the")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_headers_and_truncations_give_one_line_errors(tmp_path, data):
    """Random damage to real NIfTI and NRRD files: the reader either reads a consistent image or
    refuses with InputError / ResourceError; nothing else escapes."""
    from MedSegAILib.io.images import read_image

    name = data.draw(st.sampled_from([".nii.gz", ".nii", ".nrrd"]))
    source = tmp_path / f"src{name}"
    if not source.exists():
        sitk.WriteImage(sitk.ReadImage(str(CASE.image))[:20, :20, :10], str(source), useCompression=name != ".nii")
    raw = bytearray(source.read_bytes())
    for _ in range(data.draw(st.integers(0, 4))):
        i = data.draw(st.integers(0, min(len(raw) - 1, 600)))
        raw[i] = data.draw(st.integers(0, 255))
    keep = data.draw(st.integers(0, len(raw)))
    path = tmp_path / f"fuzz{name}"
    path.write_bytes(bytes(raw[:keep]))
    try:
        image = read_image(path)
    except (InputError, ResourceError) as exc:
        assert "\n" not in str(exc)
        return
    arr = sitk.GetArrayViewFromImage(image)
    assert arr.size == int(np.prod(image.GetSize())) * image.GetNumberOfComponentsPerPixel()


# --- 3. seed labels that would wrap ---------------------------------------------------------


@pytest.mark.parametrize(
    "value,fragment", [(-1, "the label -1"), (70000, "the label 70000"), (1.5, "the value 1.5"), (float("nan"), "NaN")]
)
def test_seed_labels_that_would_wrap_are_refused(value, fragment, tmp_path):
    image = sitk.ReadImage(str(CASE.image))
    arr = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.float32)
    arr[10, 10, 10] = 1
    arr[12, 12, 12] = value
    seeds = sitk.GetImageFromArray(arr)
    seeds.CopyInformation(image)
    path = tmp_path / "seeds.nrrd"
    sitk.WriteImage(seeds, str(path))
    expect_refusal(run_cli("segment", CASE.image, "-m", "graphcut", "--seeds", path, "-o", tmp_path / "o"), fragment)


def test_rgb_seeds_are_refused(tmp_path):
    image = sitk.ReadImage(str(CASE.image))
    rgb = sitk.Compose([sitk.Cast(image > 50, sitk.sitkUInt8)] * 3)
    path = tmp_path / "seeds.nrrd"
    sitk.WriteImage(rgb, str(path))
    expect_refusal(run_cli("segment", CASE.image, "-m", "graphcut", "--seeds", path, "-o", tmp_path / "o"), "values per voxel")


# --- 4. parameters that hang, eat memory or give wrong results ------------------------------


@pytest.mark.parametrize(
    "method,param,fragment",
    [
        ("mrf", "beta=nan", "'beta' of 'mrf' must be between"),
        ("crf", "lam=nan", "'lam' of 'crf' must be between"),
        ("otsu", "bins=100000000", "'bins' of 'otsu' must be between"),
        ("mrf", "beta=inf", "'beta' of 'mrf' must be between"),
        ("mrf", "n_classes=10", "'n_classes' of 'mrf' must be between"),
        ("otsu", "smoothing_mm=inf", "'smoothing_mm' of 'otsu' must be between"),
        ("mrf", "mf_iterations=-1", "'mf_iterations' of 'mrf' must be between"),
        ("mrf", "em_iterations=nan", "expects a int"),
        ("mrf", "coarse_voxels=-5", "'coarse_voxels' of 'mrf' must be between"),
        ("mrf", "max_memory_gb=nan", "'max_memory_gb' of 'mrf' must be between"),
        ("mrf", "band_width=-2", "'band_width' of 'mrf' must be between"),
        ("atlas", "local_sigma_mm=nan", "'local_sigma_mm' of 'atlas' must be between"),
        ("atlas", "demons_sigma=-1", "'demons_sigma' of 'atlas' must be between"),
        ("deep", "mc_samples=-2", "'mc_samples' of 'deep' must be between"),
    ],
)
def test_parameters_out_of_range_are_refused_before_work(method, param, fragment, tmp_path):
    extra = {"atlas": ["--atlases", "hippocampus"], "deep": ["--model", "hippocampus"]}.get(method, [])
    t0 = time.monotonic()
    expect_refusal(run_cli("segment", CASE.image, "-m", method, "--param", param, *extra, "-o", tmp_path / "o"), fragment)
    assert time.monotonic() - t0 < 30  # refused before the work, not after it
    assert not (tmp_path / "o").exists()


def test_graphcut_geodesic_weight_nan_is_refused(tmp_path):
    seeds = CASE.image.with_name(CASE.image.name.replace(".nii.gz", "_seeds.nii.gz"))
    proc = run_cli("segment", CASE.image, "-m", "graphcut", "--seeds", seeds, "--param", "lam=nan", "-o", tmp_path / "o")
    expect_refusal(proc, "'lam' of 'graphcut' must be between")
    proc = run_cli("segment", CASE.image, "-m", "graphcut", "--seeds", seeds, "--param", "geodesic_weight=-1", "-o", tmp_path / "o")
    expect_refusal(proc, "'geodesic_weight' of 'graphcut' must be between")


@pytest.mark.parametrize("value", ["nan", "-1", "inf"])
def test_min_island_and_tolerance_nan_are_refused(value, tmp_path):
    expect_refusal(run_cli("segment", CASE.image, "--min-island-mm3", value, "-o", tmp_path / "o"), "min_island_mm3 must be a finite volume")
    expect_refusal(run_cli("evaluate", CASE.label, CASE.label, "--tolerance-mm", value), "--tolerance-mm must be a finite distance")


# --- 5. nothing is overwritten without --overwrite, and inputs never ------------------------


def _case_folder(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("segment", CASE.image, "--no-radiomics", "-o", out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_the_users_own_files_in_the_output_folder_are_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "overview.png").write_bytes(b"my own picture")
    (out / "notes.txt").write_text("mine")
    proc = run_cli("segment", CASE.image, "--no-radiomics", "-o", out)
    expect_refusal(proc, "not MedSegAI outputs (notes.txt)")
    (out / "notes.txt").unlink()
    expect_refusal(run_cli("segment", CASE.image, "--no-radiomics", "-o", out), "already holds results (overview.png)")
    assert (out / "overview.png").read_bytes() == b"my own picture"


def test_an_input_in_the_output_folder_is_never_replaced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    own = out / "labels.nii.gz"
    shutil.copy(CASE.image, own)
    before = digest(own)
    expect_refusal(run_cli("segment", own, "--overwrite", "--no-radiomics", "-o", out), "lies in the output folder")
    assert digest(own) == before


def test_evaluate_never_overwrites_without_asking_and_never_an_input(tmp_path):
    ref = tmp_path / "ref.nii.gz"
    shutil.copy(CASE.label, ref)
    before = digest(ref)
    expect_refusal(run_cli("evaluate", CASE.label, ref, "-o", ref, "--overwrite"), "is one of the inputs")
    assert digest(ref) == before
    other = tmp_path / "result.json"
    other.write_text("keep me")
    expect_refusal(run_cli("evaluate", CASE.label, ref, "-o", other), "already exists")
    assert other.read_text() == "keep me"
    assert run_cli("evaluate", CASE.label, ref, "-o", other, "--overwrite").returncode == 0
    assert json.loads(other.read_text())["ref"] == str(ref)


def test_a_rerun_replaces_the_whole_case(tmp_path):
    """A report of an earlier run cannot survive next to new results it does not describe."""
    out = tmp_path / "out"
    assert run_cli("segment", CASE.image, "--no-radiomics", "--report", "-o", out).returncode == 0
    assert (out / "report.html").exists()
    proc = run_cli("segment", CASE.image, "--no-radiomics", "--param", "n_classes=3", "--overwrite", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert not (out / "report.html").exists()
    assert json.loads((out / "provenance.json").read_text())["parameters"]["n_classes"] == 3


def test_two_runs_into_one_folder_do_not_both_succeed(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "MedSegAILib.cli", "segment", str(CASE.image), "-m", "atlas", "--atlases", "hippocampus", "--no-radiomics", "-o", str(out)]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait for the first to take the folder's lock (the file appears just before its flock),
    # however long its start-up takes on a loaded machine; a fixed sleep was not always enough.
    lock = out.parent / f".{out.name}.medsegai.lock"
    deadline = time.monotonic() + 120
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    second = run_cli("segment", CASE.image, "--no-radiomics", "-o", out)
    first.communicate(timeout=300)
    assert first.returncode == 0
    expect_refusal(second, "another medsegai run is writing")
    assert json.loads((out / "provenance.json").read_text())["method"] == "atlas"


def test_a_read_only_output_folder_is_refused_before_the_run(tmp_path):
    if os.geteuid() == 0:
        # root ignores permission bits; a place no one can write stands in: /proc.
        expect_refusal(run_cli("segment", CASE.image, "-o", "/proc/medsegai_out"), "cannot write into")
    else:
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o500)
        expect_refusal(run_cli("segment", CASE.image, "-o", parent / "out"), "cannot write into")


# --- 6. the case appears whole or not at all ------------------------------------------------


@pytest.mark.parametrize("delay", [0.6, 1.2, 1.8, 2.6])
def test_a_kill_at_any_moment_leaves_the_old_case_or_the_new_one(delay, tmp_path):
    out = _case_folder(tmp_path)
    old = json.loads((out / "provenance.json").read_text())
    cmd = [sys.executable, "-m", "MedSegAILib.cli", "segment", str(CASE.image), "--param", "n_classes=3", "--report", "--overwrite", "-o", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert out.is_dir(), "the earlier result was lost"
    assert check_case_outputs(out) == []
    now = json.loads((out / "provenance.json").read_text())
    if now["parameters"].get("n_classes") == 3:  # the new case, complete with its extras
        assert (out / "report.html").exists() and (out / "overview.png").stat().st_size > 1000
    else:
        assert now == old and not (out / "report.html").exists()
    # A rerun takes the lock, clears what the killed run left, and succeeds.
    proc = run_cli("segment", CASE.image, "--no-radiomics", "--overwrite", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")) == []


# --- the code stays free of what runs other people's code ------------------------------------


def test_no_pickle_eval_or_shell_anywhere():
    """Read as code (AST), not text: no pickle-family import, no torch.load (except with
    weights_only=True, which refuses every object but tensors: nnU-Net checkpoints) / numpy pickles /
    yaml.load, no builtin eval or exec, no shell=True, in the library or the module."""
    import ast

    found = []
    for path in [*(REPO / "MedSegAILib").rglob("*.py"), REPO / "MedSegAI" / "MedSegAI.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                if any(n.split(".")[0] in ("pickle", "cPickle", "dill", "marshal", "shelve", "joblib", "cloudpickle") for n in names):
                    found.append(f"{where} imports {names}")
            elif isinstance(node, ast.Call):
                func = ast.unparse(node.func)
                safe_torch_load = func == "torch.load" and any(kw.arg == "weights_only" and isinstance(kw.value, ast.Constant) and kw.value.value is True for kw in node.keywords)
                if func in ("eval", "exec", "torch.load", "yaml.load", "np.load", "numpy.load", "pickle.loads") and not safe_torch_load:
                    found.append(f"{where} calls {func}")
                for kw in node.keywords:
                    if kw.arg in ("shell", "allow_pickle") and isinstance(kw.value, ast.Constant) and kw.value.value is True:
                        found.append(f"{where} passes {kw.arg}=True")
    assert found == []


# --- 7. memory: estimates on every path, held against the process's real limit ---------------


@pytest.fixture(scope="module")
def large_volume(tmp_path_factory):
    """A 300³ float32 volume (108 MB raw NRRD) and graph-cut seeds for it."""
    folder = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(0)
    arr = rng.normal(100, 20, size=(300, 300, 300)).astype(np.float32)
    arr[100:200, 100:200, 100:200] += 80
    image = sitk.GetImageFromArray(arr)
    sitk.WriteImage(image, str(folder / "large.nrrd"), useCompression=False)
    seeds = np.zeros(arr.shape, np.uint8)
    seeds[150, 150, 150] = 1
    seeds[10, 10, 10] = 2
    seed_img = sitk.GetImageFromArray(seeds)
    sitk.WriteImage(seed_img, str(folder / "seeds.nrrd"), useCompression=True)
    return folder / "large.nrrd", folder / "seeds.nrrd"


def _limited(args, limit_kb, tmp_path):
    command = " ".join([sys.executable, "-m", "MedSegAILib.cli", *map(str, args)])
    return subprocess.run(["bash", "-c", f"ulimit -v {limit_kb}; exec {command}"], capture_output=True, text=True, timeout=300, cwd=REPO)


@pytest.mark.parametrize(
    "args,limit_kb,fragment",
    [
        (["--method", "otsu"], 900_000, "on 27,000,000 voxels would need"),
        (["--method", "graphcut", "--param", "mode=full", "--seeds", "SEEDS"], 2_500_000, "graphcut on 27,000,000 voxels would need"),
        (["--method", "mrf", "--param", "mode=full"], 2_500_000, "use mode=banded"),
        (["--method", "mrf"], 1_500_000, "mrf on 27,000,000 voxels would need"),
    ],
    ids=["otsu", "graphcut-full", "mrf-full", "mrf-banded"],
)
def test_runs_that_would_not_fit_under_ulimit_are_refused_first(large_volume, args, limit_kb, fragment, tmp_path):
    image, seeds = large_volume
    args = [str(seeds) if a == "SEEDS" else a for a in args]
    t0 = time.monotonic()
    proc = _limited(["segment", image, *args, "--no-radiomics", "-o", tmp_path / "o"], limit_kb, tmp_path)
    expect_refusal(proc, fragment)
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "o").exists()


def test_otsu_on_27_million_voxels_runs_in_a_1_2_gb_address_space(large_volume, tmp_path):
    """The 108 MB volume through Otsu with every output under ``ulimit -v`` 1.2 GB (the
    interpreter and libraries included); before the slab-wise rewrite it was refused under
    2.5 GB, needing 21x its input."""
    proc = _limited(["segment", large_volume[0], "--method", "otsu", "--no-radiomics", "-q", "-o", tmp_path / "o"], 1_200_000, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "uncertainty.nii.gz").exists()


def test_radiomics_of_a_huge_intensity_range_does_not_allocate_it():
    from MedSegAILib.measure.radiomics import firstorder_features, glcm_features

    rng = np.random.default_rng(1)
    values = rng.uniform(0, 1e12, size=5000)
    features = firstorder_features(values)
    assert 0 < features["Entropy"] < 13 and np.isfinite(features["Uniformity"])
    mask = np.ones((10, 10, 10), bool)
    levels = np.zeros(mask.shape, np.int64)
    from MedSegAILib.measure.radiomics import discretize

    levels[mask] = discretize(rng.uniform(0, 1e12, size=1000), 25.0)
    assert np.isfinite(glcm_features(levels, mask)["Contrast"])


# --- 8. DICOM series that would be read wrongly ---------------------------------------------


def _dicom_copy(shared_data, tmp_path):
    folder = tmp_path / "series"
    shutil.copytree(shared_data / "hippocampus_dicom" / "study1_hcrop", folder)
    return folder


def test_a_series_with_a_missing_slice_is_refused(shared_data, tmp_path):
    from MedSegAILib.io.images import dicom_series

    folder = _dicom_copy(shared_data, tmp_path)
    _, files, _ = dicom_series(folder)  # in slice order
    Path(files[len(files) // 2]).unlink()
    expect_refusal(run_cli("segment", folder, "-o", tmp_path / "o"), "is not evenly spaced")


def test_the_segmented_series_is_recorded_when_a_folder_holds_several(shared_data, tmp_path):
    folder = _dicom_copy(shared_data, tmp_path)
    scout = sitk.Image([16, 16, 1], sitk.sitkInt16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for key, value in (("0020|000e", "1.2.826.0.1.3680043.2.1125.999.1"), ("0008|0060", "MR"), ("0020|0032", "0\\0\\0"), ("0020|0037", "1\\0\\0\\0\\1\\0")):
        scout.SetMetaData(key, value)
    writer.SetFileName(str(folder / "scout.dcm"))
    import locale

    saved = locale.setlocale(locale.LC_ALL)
    try:
        writer.Execute(scout)
    finally:
        locale.setlocale(locale.LC_ALL, saved)  # GDCM's writer resets the process locale to "C"
    out = tmp_path / "o"
    proc = run_cli("segment", folder, "--no-radiomics", "-o", out)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "provenance.json").read_text())["extra"]["input_dicom_series"][0]
    assert record["slices"] == 32 and record["other_series"] == ["1.2.826.0.1.3680043.2.1125.999.1"]
    assert record["series_instance_uid"].startswith("1.2.826.0.1.3680043.8.498")


# --- 9. failures that used to be "internal error" --------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MB tmpfs (root only: skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_is_a_one_line_error_and_the_earlier_case_survives(tiny_disk):
    out = tiny_disk / "out"
    assert run_cli("segment", CASE.image, "--no-radiomics", "-o", out).returncode == 0
    before = {p.name: digest(p) for p in out.iterdir()}
    free = shutil.disk_usage(tiny_disk).free
    (tiny_disk / "filler").write_bytes(b"\0" * max(free - 8192, 0))
    proc = run_cli("segment", CASE.image, "--no-radiomics", "--param", "n_classes=3", "--overwrite", "-o", out)
    expect_refusal(proc, "the disk is full")
    assert {p.name: digest(p) for p in out.iterdir()} == before
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler", "out"]  # no temporaries left


def test_a_dataset_label_that_would_overflow_is_refused(tmp_path):
    data = tmp_path / "data"
    for sub in ("imagesTr", "labelsTr"):
        (data / sub).mkdir(parents=True)
    shutil.copy(CASE.image, data / "imagesTr" / "case_0000.nii.gz")
    shutil.copy(CASE.label, data / "labelsTr" / "case.nii.gz")
    (data / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "-1": "wrapped", "1": "a"}, "channel_names": {"0": "MRI"}}))
    proc = run_cli("train", data, "--output", tmp_path / "model", "--epochs", "1")
    expect_refusal(proc, "names the label -1")
    assert not (tmp_path / "model").exists()


# --- 10. smaller ones ----------------------------------------------------------------------------


def test_dropped_atlases_are_said_on_the_command_line(tmp_path):
    """A truncated atlas is dropped by the atlas QC (not fused as zeros), and the run says so."""
    from MedSegAILib.resources import atlases_dir

    library = tmp_path / "atlases"
    shutil.copytree(atlases_dir() / "hippocampus", library)
    victim = sorted((library / "imagesTr").iterdir())[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    proc = run_cli("segment", CASE.image, "-m", "atlas", "--atlases", library, "--param", "k=3", "--no-radiomics", "-o", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    note = [ln for ln in proc.stderr.splitlines() if "atlases were dropped" in ln]
    assert note and victim.name.split(".")[0].split("_0000")[0] in note[0] and "cut short" in note[0]
    dropped = json.loads((tmp_path / "o" / "provenance.json").read_text())["extra"]["atlases_dropped"]
    assert any("cut short" in d["reason"] for d in dropped)


def test_a_file_name_with_a_comma_can_be_given(tmp_path):
    odd = tmp_path / "scan, left.nii.gz"
    shutil.copy(CASE.image, odd)
    proc = run_cli("segment", odd, "--no-radiomics", "-o", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "o" / "provenance.json").read_text())["input_files"] == [str(odd)]


def test_export_surfaces_of_an_intensity_image_is_refused_at_once(tmp_path):
    image = sitk.ReadImage(str(CASE.image))
    noisy = sitk.Cast(sitk.AdditiveGaussianNoise(sitk.Cast(image, sitk.sitkFloat32), 200.0), sitk.sitkInt16)
    path = tmp_path / "intensities.nrrd"
    sitk.WriteImage(sitk.Abs(noisy), str(path))
    t0 = time.monotonic()
    expect_refusal(run_cli("export-surfaces", path, "--output", tmp_path / "s"), "is it an intensity image")
    assert time.monotonic() - t0 < 30
