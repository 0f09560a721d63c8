"""Atlas benchmark: multi-atlas segmentation of real hippocampus MRI, every fusion rule.

Split (fixed): the 200 cases of ``../shared/data/hippocampus`` sorted by name; the first 40
are targets, the other 160 the atlas library (``--split last40``: the last 40, the deep model's
validation cases, are targets and its 160 training cases the library). For each target the
library is ranked, the best ``k`` atlases are registered ONCE, and the same warped maps are
fused by every rule of MedSegAI and by SimpleITK's ``LabelVoting`` and ``MultiLabelSTAPLE`` (on the atlases' hard
labels), so the rules differ only in fusion. Dice per class against the reference labels;
seconds per target = ranking + registration + the fusion rule's own time.

Writes ``docs/benchmarks/atlas.json`` and ``docs/benchmarks/atlas.md`` and prints the table.

    nice -n 10 python Testing/benchmarks/atlas_benchmark.py [--targets 40] [--k 25]
    nice -n 10 python Testing/benchmarks/atlas_benchmark.py --full-library-timing 2
    python Testing/benchmarks/atlas_benchmark.py --split last40 --threads 2 \
        --machine-note "no other job running" --out docs/benchmarks/atlas_deep_split
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_paths import HIPPOCAMPUS, REPO  # noqa: E402

sys.path.insert(0, str(REPO))

from MedSegAILib.methods.atlas.fusion import fuse  # noqa: E402
from MedSegAILib.methods.atlas.library import load_atlas_library  # noqa: E402
from MedSegAILib.methods.atlas.segmentation import DEFAULTS, multi_atlas_segmentation  # noqa: E402

DATA = HIPPOCAMPUS
RULES = ("majority", "staple", "bayesian", "local")
SITK_RULES = ("sitk_LabelVoting", "sitk_MultiLabelSTAPLE")


def dice(pred: np.ndarray, ref: np.ndarray, label: int) -> float:
    a, b = pred == label, ref == label
    den = a.sum() + b.sum()
    return float(2.0 * (a & b).sum() / den) if den else 1.0


def sitk_fusion(rule: str, probabilities, label_values):
    hard = []
    lut = np.asarray([0] + list(label_values), dtype=np.uint16)
    for p in probabilities:
        img = sitk.GetImageFromArray(lut[np.argmax(sitk.GetArrayViewFromImage(p), axis=-1)])
        img.CopyInformation(p)
        hard.append(img)
    undecided = int(max(label_values)) + 1
    if rule == "sitk_LabelVoting":
        out = sitk.LabelVoting(hard, undecided)
    else:
        f = sitk.MultiLabelSTAPLEImageFilter()
        f.SetLabelForUndecidedPixels(undecided)
        out = f.Execute(hard)
    arr = sitk.GetArrayFromImage(out)
    arr[arr == undecided] = 0  # undecided voxels count as background
    return arr


def goal_text(summary: dict) -> str:
    """The issue's goal, checked against the measured figures."""
    ours = {r: summary[r] for r in RULES}
    best = max(ours, key=lambda r: ours[r]["dice_mean_over_classes"])
    b = ours[best]
    rivals = max(summary[r]["dice_mean_over_classes"] for r in ("majority", "staple") + SITK_RULES)
    checks = [
        (f"mean Dice >= 0.85 with the best rule ({best}: {b['dice_mean_over_classes']:.3f})", b["dice_mean_over_classes"] >= 0.85),
        (f"ahead of plain voting and STAPLE (best of those: {rivals:.3f})", b["dice_mean_over_classes"] > rivals),
        (f"<= 60 s per target ({b['seconds_per_target']:.1f} s)", b["seconds_per_target"] <= 60),
    ]
    return "Goal of issue 4: " + "; ".join(f"{t}: {'met' if ok else 'NOT met'}" for t, ok in checks) + "."


FULL_LIBRARY_HEADING = "## Time with the 200-case library"


def full_library_timing(n_targets: int, out: Path, threads: int) -> None:
    """Segment the first ``n_targets`` targets with ALL other 199 cases as the library (default
    parameters, fusion "local"); add seconds and Dice to atlas.json and a section to atlas.md."""
    names = sorted(p.name[: -len(".nii.gz")] for p in (DATA / "imagesTr").glob("*.nii.gz"))
    full = load_atlas_library(DATA)
    rows = []
    for name in names[:n_targets]:
        library = full.subset([n for n in names if n != name])
        image = sitk.ReadImage(str(DATA / "imagesTr" / f"{name}.nii.gz"))
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / "labelsTr" / f"{name}.nii.gz"))).round().astype(np.int64)
        t0 = time.perf_counter()
        res = multi_atlas_segmentation(image, library, threads=threads)
        secs = time.perf_counter() - t0
        pred = sitk.GetArrayFromImage(res.labels)
        rows.append({"target": name, "library_size": len(library), "seconds": round(secs, 1), "seconds_parts": res.extra["seconds"],
                     "dice": {str(l): round(dice(pred, ref, l), 4) for l in library.label_values}})
        print(f"full library: {name} {secs:.1f} s {rows[-1]['dice']}", flush=True)
    data = json.loads((out / "atlas.json").read_text())
    data["full_library_timing"] = rows
    (out / "atlas.json").write_text(json.dumps(data, indent=1))
    md = (out / "atlas.md").read_text().split(FULL_LIBRARY_HEADING)[0].rstrip() + "\n\n"
    md += FULL_LIBRARY_HEADING + "\n\n"
    md += (f"The issue's time budget is for a 200-case library. Measured on {n_targets} target(s), each segmented with "
           "the other 199 cases as the library, default parameters (k = 25, fusion local), same machine. "
           "A target is never in its own library; these Dice values are leave-one-out, not from the fixed split above.\n\n")
    md += "| target | library | seconds (ranking + registration + fusion) | Dice anterior | Dice posterior |\n| --- | --- | --- | --- | --- |\n"
    for r in rows:
        p = r["seconds_parts"]
        md += f"| {r['target']} | {r['library_size']} | {r['seconds']:.1f} ({p['ranking']:.1f} + {p['registration']:.1f} + {p['fusion']:.1f}) | {r['dice']['1']:.3f} | {r['dice']['2']:.3f} |\n"
    (out / "atlas.md").write_text(md)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, default=40, help="how many of the 40 targets to run (first by name)")
    ap.add_argument("--k", type=int, default=DEFAULTS["k"])
    ap.add_argument("--library-size", type=int, default=160, help="use the first N of the 160 library cases")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--param", action="append", default=[], help="extra method parameter key=value")
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--full-library-timing", type=int, default=0, metavar="N",
                    help="instead: time N targets against all 199 other cases and add that to atlas.json/.md")
    ap.add_argument("--machine-note", default="2 cores shared with other jobs; run under nice -n 10",
                    help="how the machine was used during the run, written beside the timings")
    ap.add_argument("--split", choices=("first40", "last40"), default="first40",
                    help="targets: the first 40 cases by name (default), or the last 40, which are the deep model's validation cases; the other 160 form the library")
    args = ap.parse_args(argv)
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(args.threads)
    if args.full_library_timing:
        full_library_timing(args.full_library_timing, Path(args.out), args.threads)
        return 0

    names = sorted(p.name for p in (DATA / "imagesTr").glob("*.nii.gz"))
    if len(names) != 200:
        print(f"expected 200 hippocampus cases in {DATA}, found {len(names)}", file=sys.stderr)
        return 1
    # "last40" targets the deep model's validation cases with its training cases as the library,
    # so the two families are compared on the same patients.
    target_names, library_names = (names[:40], names[40:]) if args.split == "first40" else (names[-40:], names[:-40])
    which = "first" if args.split == "first40" else "last"
    library = load_atlas_library(DATA)
    library = library.subset([n[: -len(".nii.gz")] for n in library_names[: args.library_size]])
    label_values = library.label_values
    extra_params = dict(kv.split("=", 1) for kv in args.param)
    params = dict(DEFAULTS)
    for key, value in extra_params.items():
        params[key] = type(DEFAULTS[key])(value) if not isinstance(DEFAULTS[key], str) else value
    params["k"] = args.k
    params["threads"] = args.threads
    params.pop("fusion")

    per_target = []

    def report(final: bool) -> None:
        summary = {}
        for rule in RULES + SITK_RULES:
            d = {str(l): float(np.mean([r["rules"][rule]["dice"][str(l)] for r in per_target])) for l in label_values}
            sd = {str(l): float(np.std([r["rules"][rule]["dice"][str(l)] for r in per_target])) for l in label_values}
            summary[rule] = {
                "dice_mean": {k: round(v, 4) for k, v in d.items()},
                "dice_std": {k: round(v, 4) for k, v in sd.items()},
                "dice_mean_over_classes": round(float(np.mean(list(d.values()))), 4),
                "seconds_per_target": round(float(np.mean([r["rules"][rule]["seconds"] for r in per_target])), 2),
            }
        # The shared folder has no dataset.json; the shipped library's holds the same labels' names.
        class_names = {c.label: c.name for c in load_atlas_library("hippocampus").classes}
        header = f"| fusion rule | Dice {class_names.get(1, '1')} | Dice {class_names.get(2, '2')} | mean Dice | s / target |"
        lines = [header, "| --- | --- | --- | --- | --- |"]
        for rule, s in summary.items():
            dm, ds = s["dice_mean"], s["dice_std"]
            cells = " | ".join(f"{dm[str(l)]:.3f} ± {ds[str(l)]:.3f}" for l in label_values)
            lines.append(f"| {rule} | {cells} | {s['dice_mean_over_classes']:.3f} | {s['seconds_per_target']:.1f} |")
        table = "\n".join(lines)
        if final:
            print()
            print(table)
            print(goal_text(summary))
        result = {
            "benchmark": "atlas",
            "data": "Medical Segmentation Decathlon Task04_Hippocampus, 200 cases in ../shared/data/hippocampus",
            "split": {"targets": target_names[: len(per_target)], "library": [n for n in library_names[: args.library_size]],
                      "rule": f"cases sorted by name; {which} 40 = targets (the first of them, as many as listed, were run), the other 160 = library", "complete": final},
            "parameters": params,
            "machine": {"cpus": os.cpu_count(), "sitk_threads": args.threads, "platform": platform.platform(), "python": platform.python_version(),
                        "SimpleITK": sitk.Version.VersionString(), "note": args.machine_note},
            "summary": summary,
            "per_target": per_target,
        }
        if not args.no_write:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / "atlas.json").write_text(json.dumps(result, indent=1))
            md = [
                "# Atlas benchmark: multi-atlas hippocampus segmentation",
                "",
                "Produced by `Testing/benchmarks/atlas_benchmark.py`"
                + (f" (`{' '.join(sys.argv[1:])}`)" if sys.argv[1:] else "") + ".",
                "",
                f"Data: MSD Task04_Hippocampus, the 200 cases in `../shared/data/hippocampus` sorted by name. Targets: the first "
                f"{len(per_target)} of the {which} 40 ({target_names[0]} to {target_names[len(per_target) - 1]}); library: the other 160 "
                f"cases{'' if args.library_size >= 160 else f' (first {args.library_size} used)'}.",
                "",
                f"Per target: all {min(args.library_size, 160)} library atlases are ranked by NCC after a quick affine alignment, "
                f"the best k = {params['k']} are registered (affine Mattes MI + symmetric-forces Demons) once, and the same "
                "warped maps are fused by each rule. SimpleITK rows fuse the atlases' hard labels with `sitk.LabelVoting` and "
                "`sitk.MultiLabelSTAPLEImageFilter` (undecided voxels = background). Dice is mean ± SD over targets. "
                "Seconds per target = ranking + registration + that rule's fusion, on this 2-core machine "
                f"({args.machine_note}; SimpleITK threads = {args.threads}).",
                "",
                table,
                "",
                f"Atlases dropped by quality control: {sum(len(r['dropped']) for r in per_target)} over {len(per_target)} targets.",
                "",
                goal_text(summary),
                "",
                "Per-target figures are in `atlas.json`." + ("" if final else f" PARTIAL: {len(per_target)} of {args.targets} targets run when this was written."),
                "",
            ]
            (out / "atlas.md").write_text("\n".join(md))


    for n_done, name in enumerate(target_names[: args.targets], start=1):
        image = sitk.ReadImage(str(DATA / "imagesTr" / name))
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / "labelsTr" / name))).round().astype(np.int64)
        t0 = time.perf_counter()
        out = multi_atlas_segmentation(image, library, fusion="majority", keep_atlas_maps=True, **params)
        base = out.extra["seconds"]["ranking"] + out.extra["seconds"]["registration"]
        maps = out.extra.pop("_atlas_maps")
        record = {"target": name, "atlases_fused": len(out.extra["atlases_fused"]), "dropped": out.extra["atlases_dropped"],
                  "seconds_ranking": out.extra["seconds"]["ranking"], "seconds_registration": out.extra["seconds"]["registration"], "rules": {}}
        for rule in RULES + SITK_RULES:
            t1 = time.perf_counter()
            if rule in RULES:
                kw = {"warped_images": maps["warped_images"], "target": maps["target"], "sigma_mm": params["local_sigma_mm"], "gain": params["local_gain"]} if rule == "local" else {}
                pred = sitk.GetArrayFromImage(fuse(rule, maps["probabilities"], label_values, **kw).labels)
            else:
                pred = sitk_fusion(rule, maps["probabilities"], label_values)
            secs = time.perf_counter() - t1
            record["rules"][rule] = {"dice": {str(l): round(dice(pred, ref, l), 4) for l in label_values}, "seconds": round(base + secs, 2)}
        per_target.append(record)
        line = "  ".join(f"{r}:{np.mean(list(v['dice'].values())):.3f}" for r, v in record["rules"].items())
        print(f"[{n_done}/{args.targets}] {name} ({time.perf_counter() - t0:.1f} s, {record['atlases_fused']} fused) {line}", flush=True)
        if n_done < args.targets:
            report(final=False)


    report(final=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
