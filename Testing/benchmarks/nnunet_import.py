"""Benchmark: an nnU-Net v2 model imported by MedSegAI against nnU-Net's own predictor.

A results folder trained by nnU-Net (``<trainer>__<plans>__3d_fullres`` with ``fold_K/``) is
imported with ``medsegai import-model nnunet``; the validation cases (the last 40 of the
shared hippocampus cases by name, which the shared split keeps out of training) are predicted by
``nnUNetv2_predict_from_modelfolder`` in the nnU-Net peer venv (``.venv-peers/nnunet``, one
process, ``--save_probabilities``) and by the imported model (``segment_imported``, in this
process, torch on the CPU, then ONNX Runtime on the import's exports), with the same folds and
the same mirroring. Reported per case: the
Dice between the two label maps (each class), the voxels that differ, the largest difference of
the softmax probabilities, and the seconds a case of each side (nnU-Net: its whole command,
start-up included, divided by the cases; MedSegAI: in process).

Prints a table and writes ``docs/benchmarks/nnunet_import.json``.
Run: ``.venv/bin/python Testing/benchmarks/nnunet_import.py --results DIR [--folds 0,1] [--no-tta] [--cases 40]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_paths import HIPPOCAMPUS, REPO  # noqa: E402

sys.path.insert(0, str(REPO))
from MedSegAILib.methods.deep.nnunet.importer import import_nnunet  # noqa: E402
from MedSegAILib.methods.deep.nnunet.predict import segment_imported  # noqa: E402

VENV = REPO / ".venv-peers" / "nnunet"
OUT = REPO / "docs" / "benchmarks" / "nnunet_import.json"


def dice(a: np.ndarray, b: np.ndarray, k: int) -> float:
    x, y = a == k, b == k
    return 1.0 if not x.any() and not y.any() else float(2 * (x & y).sum() / (x.sum() + y.sum()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True, help="nnU-Net results folder (trained by nnU-Net)")
    ap.add_argument("--folds", default="0")
    ap.add_argument("--no-tta", action="store_true", help="both sides without mirroring")
    ap.add_argument("--cases", type=int, default=40, help="the last N shared cases by name")
    ap.add_argument("--output", default=str(OUT))
    args = ap.parse_args(argv)
    folds = [int(f) for f in args.folds.split(",")]
    names = sorted(p.name[: -len(".nii.gz")] for p in (HIPPOCAMPUS / "imagesTr").glob("*.nii.gz"))[-args.cases:]
    version = subprocess.run([str(VENV / "bin" / "python"), "-c", "import importlib.metadata as m, torch; print(m.version('nnunetv2'), torch.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="medsegai-nnunet-import-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        card = import_nnunet(args.results, tmp / "model", folds=folds, log=lambda m: None)
        import_s = time.perf_counter() - t0
        (tmp / "in").mkdir()
        for n in names:
            shutil.copy(HIPPOCAMPUS / "imagesTr" / f"{n}.nii.gz", tmp / "in" / f"{n}_0000.nii.gz")
        cmd = [str(VENV / "bin" / "nnUNetv2_predict_from_modelfolder"), "-i", str(tmp / "in"), "-o", str(tmp / "ref"), "-m", str(args.results),
               "-f", *map(str, folds), "-device", "cpu", "-npp", "1", "-nps", "1", "--save_probabilities"] + (["--disable_tta"] if args.no_tta else [])
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        nnunet_s = time.perf_counter() - t0
        rows, ours_s, onnx_s = [], 0.0, 0.0
        for n in names:
            image = sitk.ReadImage(str(HIPPOCAMPUS / "imagesTr" / f"{n}.nii.gz"))
            t0 = time.perf_counter()
            out = segment_imported([image], tmp / "model", tta=not args.no_tta, runtime="torch")
            ours_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            onnx = segment_imported([image], tmp / "model", tta=not args.no_tta, runtime="onnx")
            onnx_s += time.perf_counter() - t0
            mine, ref = sitk.GetArrayFromImage(out.labels), sitk.GetArrayFromImage(sitk.ReadImage(str(tmp / "ref" / f"{n}.nii.gz")))
            mine_onnx = sitk.GetArrayFromImage(onnx.labels)
            ref_prob = np.load(tmp / "ref" / f"{n}.npz")["probabilities"]  # (K, z, y, x) on the input array
            my_prob = np.moveaxis(sitk.GetArrayFromImage(out.probabilities), -1, 0)
            onnx_prob = np.moveaxis(sitk.GetArrayFromImage(onnx.probabilities), -1, 0)
            rows.append({"case": n, "dice_anterior": dice(mine, ref, 1), "dice_posterior": dice(mine, ref, 2),
                         "differing_voxels": int((mine != ref).sum()), "voxels": int(mine.size),
                         "max_probability_difference": float(np.abs(my_prob - ref_prob).max()),
                         "onnx_dice_vs_nnunet": [dice(mine_onnx, ref, 1), dice(mine_onnx, ref, 2)], "onnx_differing_voxels": int((mine_onnx != ref).sum()),
                         "onnx_vs_torch_max_probability_difference": float(np.abs(onnx_prob - my_prob).max())})
    worst = min(min(r["dice_anterior"], r["dice_posterior"]) for r in rows)
    result = {
        "protocol": __doc__.split("\n\n")[1].replace("\n", " "), "results_folder": str(args.results), "nnunet_and_torch": version,
        "trainer": card["import"]["trainer"], "folds": folds, "mirroring": not args.no_tta, "cases": len(rows),
        "import_s": round(import_s, 2), "nnunet_s_per_case": round(nnunet_s / len(rows), 3), "medsegai_s_per_case": round(ours_s / len(rows), 3),
        "time_ratio": round(ours_s / nnunet_s, 3), "min_dice_between_label_maps": worst,
        "medsegai_onnx_s_per_case": round(onnx_s / len(rows), 3), "onnx_time_ratio": round(onnx_s / nnunet_s, 3),
        "onnx_min_dice_between_label_maps": min(min(r["onnx_dice_vs_nnunet"]) for r in rows),
        "onnx_cases_with_differing_voxels": sum(r["onnx_differing_voxels"] > 0 for r in rows),
        "onnx_vs_torch_max_probability_difference": max(r["onnx_vs_torch_max_probability_difference"] for r in rows),
        "cases_with_differing_voxels": sum(r["differing_voxels"] > 0 for r in rows),
        "max_probability_difference": max(r["max_probability_difference"] for r in rows), "rows": rows,
    }
    Path(args.output).write_text(json.dumps(result, indent=1))
    print("| model | folds | mirroring | cases | lowest Dice between label maps | cases with any differing voxel | largest softmax difference | s/case nnUNetv2_predict | s/case MedSegAI | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {Path(args.results).name} ({card['import']['trainer']}) | {','.join(map(str, folds))} | {'yes' if not args.no_tta else 'no'} | {len(rows)} | {worst:.4f} | "
          f"{result['cases_with_differing_voxels']} | {result['max_probability_difference']:.1e} | {result['nnunet_s_per_case']} | {result['medsegai_s_per_case']} | {result['time_ratio']} |")
    print(f"ONNX Runtime: lowest Dice vs nnU-Net {result['onnx_min_dice_between_label_maps']:.4f}, {result['onnx_cases_with_differing_voxels']} case(s) with any differing voxel, "
          f"softmax within {result['onnx_vs_torch_max_probability_difference']:.1e} of torch, {result['medsegai_onnx_s_per_case']} s/case (ratio {result['onnx_time_ratio']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
