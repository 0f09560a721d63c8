"""Sanity checks of the deep explanation map (occlusion sensitivity), and its cost.

On the first 8 validation cases of ``hippocampus_single`` (ONNX Runtime, default settings:
8 mm cubes every 6 mm): seconds per case; how much of each structure's positive map lies
within 5 mm of the reference structure against the share of the volume that does (a map that
explains a correct segmentation concentrates there); and the model-randomisation test
(Adebayo et al., NeurIPS 2018): the same map from the same network with re-initialised
weights (exported to ONNX likewise), and the Pearson correlation between the two (near 0:
the map depends on what the model learned). Prints a table and writes
docs/benchmarks/explain.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from bench_paths import HIPPOCAMPUS, REPO

sys.path.insert(0, str(REPO))

from MedSegAILib.methods.deep.explain import concentration_near, occlusion_sensitivity  # noqa: E402

MODEL = REPO / "Resources" / "Models" / "hippocampus_single"
OUT_JSON = REPO / "docs" / "benchmarks" / "explain.json"


def randomised_copy(folder: Path) -> Path:
    import torch

    from MedSegAILib.methods.deep.model_store import load_model, save_model
    from MedSegAILib.methods.deep.onnx_export import export_onnx
    from MedSegAILib.methods.deep.plan import Plan

    model = load_model(MODEL)
    torch.manual_seed(0)
    for module in model.network.modules():
        if hasattr(module, "reset_parameters") and module is not model.network:
            module.reset_parameters()
    save_model(folder, model.network.state_dict(), Plan.from_dict(model.card["plan"]), {"name": "randomised"})
    export_onnx(folder)
    return folder


def main() -> int:
    card = json.loads((MODEL / "model.json").read_text())
    cases = card["training"]["validation_cases"][:8]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        random_model = randomised_copy(Path(tmp) / "random")
        for n in cases:
            image = sitk.ReadImage(str(HIPPOCAMPUS / "imagesTr" / f"{n}.nii.gz"), sitk.sitkFloat32)
            ref = sitk.GetArrayFromImage(sitk.ReadImage(str(HIPPOCAMPUS / "labelsTr" / f"{n}.nii.gz")))
            t0 = time.perf_counter()
            a = sitk.GetArrayFromImage(occlusion_sensitivity([image], str(MODEL)))
            seconds = time.perf_counter() - t0
            b = sitk.GetArrayFromImage(occlusion_sensitivity([image], str(random_model)))
            row = {"case": n, "seconds": round(seconds, 2)}
            for k, name in ((0, "anterior"), (1, "posterior")):
                near = concentration_near(a[..., k], ref == k + 1, image.GetSpacing()[::-1])
                r = np.corrcoef(a[..., k].ravel(), b[..., k].ravel())[0, 1] if b[..., k].std() > 0 else 0.0
                row[name] = {"mass_near": round(near["mass_near"], 3), "volume_near": round(near["volume_near"], 3),
                             "randomised_correlation": round(float(r), 3), "randomised_max_drop": round(float(b[..., k].max()), 4), "max_drop": round(float(a[..., k].max()), 4)}
            rows.append(row)
            print(f"{n}: {seconds:.1f} s; anterior {row['anterior']['mass_near']:.2f} of the map within 5 mm (volume {row['anterior']['volume_near']:.2f}), "
                  f"r with random weights {row['anterior']['randomised_correlation']:+.2f}; posterior {row['posterior']['mass_near']:.2f} ({row['posterior']['volume_near']:.2f}), r {row['posterior']['randomised_correlation']:+.2f}", flush=True)
    summary = {k: {m: round(float(np.mean([r[k][m] for r in rows])), 3) for m in ("mass_near", "volume_near", "randomised_correlation")} for k in ("anterior", "posterior")}
    summary["seconds_per_case"] = round(float(np.median([r["seconds"] for r in rows])), 2)
    print(json.dumps(summary, indent=1))
    OUT_JSON.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
