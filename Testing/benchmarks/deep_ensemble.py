"""The shipped hippocampus model as a five-fold ensemble: train the members, assemble them into
one model folder, and measure what can be measured honestly here.

Member k is the deep recipe (``deep_recipe.py``) trained from scratch with fold k of the 200
shared cases as its validation block (``medsegai train --fold k``), seed k, one thread and the
same CPU-time budget each, all five side by side. The kept weights are the mean of the last
epochs (``--average-from``), so no member is chosen by looking at its validation cases.

Every shared case is a validation case of exactly one member and a training case of the other
four, so the ensemble cannot be scored on these cases: the figures here are each member on its
own fold (the cross-validated estimate), and the ensemble's accuracy on new patients is
measured independently. The domain record of the ensemble is built from out-of-fold outputs:
each case as the member that did not train on it sees it.

Usage:
  .venv/bin/python Testing/benchmarks/deep_ensemble.py --train --budget-min 35
  .venv/bin/python Testing/benchmarks/deep_ensemble.py --assemble Resources/Models/hippocampus
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_paths import REPO  # noqa: E402

sys.path.insert(0, str(REPO))

from deep_benchmark import DATA, DOCS, _seconds, class_dice, read_case  # noqa: E402
from deep_crossval import train_folds  # noqa: E402

from MedSegAILib.methods.deep.ensemble import assemble_ensemble  # noqa: E402
from MedSegAILib.methods.deep.inference import segment_with_model  # noqa: E402
from MedSegAILib.methods.deep.model_store import Ensemble  # noqa: E402
from MedSegAILib.methods.deep.onnx_runtime import load_onnx_model  # noqa: E402

WORK = REPO / "Testing" / "benchmarks" / "work" / "ensemble"
SINGLE = REPO / "Resources" / "Models" / "hippocampus_single"  # the single model shipped before: the last member
FOLDS = (0, 1, 2, 3, 4)
MEMBER_OPTIONS = ("--average-from", "0.8", "--val-every", "10", "--name", "hippocampus")
OUT_JSON = DOCS / "deep_ensemble.json"


def members() -> list:
    """The member folders: the five folds, then the single model shipped before."""
    return [WORK / f"fold{k}" for k in FOLDS] + [SINGLE]


def assemble(output: Path) -> None:
    """Build the ensemble folder at ``output`` (the shipped model's place) from the five folds
    and the single model shipped before (``hippocampus_single``, still shipped on its own)."""
    card = assemble_ensemble(members(), output, name="hippocampus", overwrite=True)
    (output / "README.md").write_text(model_readme(card))
    print(f"assembled {output}: {len(card['members'])} members, identity {card['sha256'][:12]}...")


def model_readme(card: dict) -> str:
    """The ensemble folder's README: what it is, how it was made, each member's split and figure."""
    rows = []
    for i, m in enumerate(card["members"]):
        t, v = m["training"], m["validation"]
        cases = t.get("validation_cases", [])
        rows.append(f"| {i} | `{m['source']}` | {cases[0]} ... {cases[-1]} | {t.get('epochs_run')} | {t.get('cpu_time_min')} | {v.get('mean_dice')} | `{m['sha256'][:12]}...` |")
    command = " ".join(a if " " not in a else f'"{a}"' for a in ["medsegai", "train", "../shared/data/hippocampus", "--output", "foldK", "--time-budget-min", "35", "--budget-clock", "cpu", "--threads", "1", "--epochs", "2000", "--batch-size", "2", "--seed", "K", "--class-names", "Anterior hippocampus,Posterior hippocampus", "--fold", "K", "--val-cases", "40", *MEMBER_OPTIONS])
    return f"""# Shipped model: hippocampus (an ensemble of {len(card['members'])} models)

Labels the anterior (1) and posterior (2) hippocampus on T1-weighted MRI crops at 1 mm. Six
residual 3D U-Nets of one plan (MONAI UNet, channels 16-32-64-128, instance norm, dropout 0.1):
the five models of a five-fold cross-validation of the 200 shared cases, and the single model
shipped before (`hippocampus_single`, the same bytes as member 5). A run averages the members'
probabilities, each with the same test-time flips; its uncertainty includes their
disagreement, and the domain check also compares the members' agreement with what it is on
cases they did not train on.

Members 0-4, fold K validating on the K-th block of 40 cases by name (`Testing/benchmarks/deep_ensemble.py --train`,
all five side by side on 2 cores, 35 CPU-minutes each, kept weights the mean of the last fifth
of the schedule, so no epoch was chosen on the validation cases):

    {command}
    medsegai ensemble fold0 fold1 fold2 fold3 fold4 ../Resources/Models/hippocampus_single --output hippocampus

| member | from | validation cases | epochs | CPU-min | validation Dice (no TTA) | SHA-256 |
| --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

Every shared case is a training case of at least four members, so the ensemble has no held-out
figure here; each member's own figure is above, and `docs/benchmarks/deep.md` has the
cross-validated estimate, the one pair of members that can be scored on cases neither trained
on, and the time per case.

- `member<k>.safetensors`: weights (no pickle); `member<k>.onnx`: their ONNX export; `model.json`
  (`members`) and `model.sha256` record the SHA-256 of every file, checked before anything runs.
  The card's `sha256` is the ensemble's identity, the SHA-256 of the members' digests.
- `model.json`: the one model card: plan, classes and colours, each member's split, training
  record and validation figures, the domain record of the check.

Training data: Medical Segmentation Decathlon, Task04_Hippocampus (Vanderbilt University
Medical Center), CC-BY-SA 4.0; Simpson et al., arXiv:1902.09063. Research use only; not a
medical device.
"""


def _dice(labels, ref) -> float:
    return float(np.mean(class_dice(labels, ref)))


def measure(model_dir: Path, repeats: int) -> dict:
    """Member figures on their own validation cases, the held-out pair on fold 4, and time."""
    ens = load_onnx_model(model_dir)
    assert isinstance(ens, Ensemble)
    card = ens.card
    rows = []
    for i, (m, entry) in enumerate(zip(ens.members, card["members"])):
        cases = entry["training"]["validation_cases"]
        dice = [class_dice(segment_with_model([read_case(n)[0]], m, tta=True).labels, read_case(n)[1]) for n in cases]
        a, p = np.mean(dice, axis=0)
        rows.append({"member": i, "source": Path(entry["source"]).name, "validation_range": f"{cases[0]} ... {cases[-1]}", "n": len(cases),
                     "epochs": entry["training"].get("epochs_run"), "cpu_min": entry["training"].get("cpu_time_min"),
                     "dice_tta": [round(float(a), 4), round(float(p), 4)], "mean_tta": round(float((a + p) / 2), 4)})
        print(f"member {i} ({rows[-1]['source']}) on its {len(cases)} validation cases: {rows[-1]['mean_tta']:.4f}", flush=True)
    # Fold 4's cases are held out by two members: fold 4's own and the single model shipped
    # before. Their pair is the one ensemble that can be scored on cases none of it trained on.
    fold4, single = ens.members[FOLDS.index(4)], ens.members[-1]
    pair = Ensemble([fold4, single], ens.plan, card, card["sha256"], ens.folder)
    held = card["members"][-1]["training"]["validation_cases"]
    assert held == card["members"][FOLDS.index(4)]["training"]["validation_cases"]
    from scipy import ndimage

    from MedSegAILib.uncertainty.calibration import error_detection_auroc, expected_calibration_error

    names = ("single model shipped before", "fold 4 member", "the pair")
    scores, auroc, ece = ({k: [] for k in names} for _ in range(3))
    for n in held:
        img, ref = read_case(n)
        r = sitk.GetArrayFromImage(ref)
        for name, model in zip(names, (single, fold4, pair)):
            out = segment_with_model([img], model, tta=True)
            pred = sitk.GetArrayFromImage(out.labels)
            region = ndimage.binary_dilation((pred > 0) | (r > 0), iterations=3)  # the structures and 3 voxels around
            scores[name].append(_dice(out.labels, ref))
            auroc[name].append(error_detection_auroc(sitk.GetArrayFromImage(out.uncertainty), pred != r, mask=region))
            ece[name].append(expected_calibration_error(np.moveaxis(sitk.GetArrayFromImage(out.probabilities), -1, 0), r, mask=region))
    held_out = {k: {"dice": round(float(np.mean(scores[k])), 4), "error_auroc": round(float(np.mean(auroc[k])), 4), "ece_near": round(float(np.mean(ece[k])), 4)} for k in names}
    held_out["pair_better_cases"] = int(sum(p > s for p, s in zip(scores["the pair"], scores["single model shipped before"])))
    print("fold 4, held out by both:", held_out, flush=True)
    timing = time_runs(model_dir, held[:5], repeats)
    return {"members": rows, "cross_validated_mean_tta": round(float(np.mean([r["mean_tta"] for r in rows[: len(FOLDS)]])), 4),
            "held_out_pair_on_fold4": held_out, "timing": timing}


def time_runs(model_dir: Path, cases, repeats: int) -> dict:
    """Seconds per case of the ensemble and of the single model: in process (ONNX Runtime,
    TTA) and as fresh ``medsegai segment`` processes (every output but radiomics)."""
    out = {}
    exe = str(REPO / ".venv" / "bin" / "medsegai")
    for name, folder in (("ensemble", model_dir), ("single", SINGLE)):
        model = load_onnx_model(folder)
        img = read_case(cases[0])[0]
        segment_with_model([img], model)  # warm
        t = []
        for n in cases:
            img = read_case(n)[0]
            t0 = time.perf_counter()
            segment_with_model([img], model)
            t.append(time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as tmp:
            image = str(DATA / "imagesTr" / f"{cases[0]}.nii.gz")
            fresh = [_seconds([exe, "segment", image, "--method", "deep", "--model", str(folder), "-q", "--overwrite", "--no-radiomics", "-o", f"{tmp}/o"]) for _ in range(repeats)]
        out[name] = {"in_process_s": round(statistics.median(t), 3), "fresh_process_s": round(statistics.median(fresh), 3)}
        print(name, out[name], flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", action="store_true", help="train the five members (all at once, one thread each)")
    ap.add_argument("--budget-min", type=float, default=35.0, help="CPU minutes per member (default 35)")
    ap.add_argument("--assemble", metavar="MODEL_DIR", help="assemble the members into this folder (the shipped model's place)")
    ap.add_argument("--measure", metavar="MODEL_DIR", help="measure an assembled ensemble; writes deep_ensemble.json")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if args.train:
        t0 = time.perf_counter()
        train_folds(FOLDS, args.budget_min, 0, WORK, MEMBER_OPTIONS, seed_per_fold=True)
        print(f"trained {len(FOLDS)} members in {(time.perf_counter() - t0) / 60:.1f} wall-min", flush=True)
    if args.assemble:
        assemble(Path(args.assemble))
    if args.measure:
        result = measure(Path(args.measure), args.repeats)
        OUT_JSON.write_text(json.dumps(result, indent=2))
        print(f"wrote {OUT_JSON}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
