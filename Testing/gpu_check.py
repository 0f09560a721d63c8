"""What Testing/gpu_check.sh runs: a short CUDA training, CUDA inference (TTA, MC dropout) and
CPU/GPU agreement on the shipped model's validation cases. Not a pytest module."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDSEGAI_SHARED_DATA", REPO.parent / "shared" / "data")) / "hippocampus"


def main() -> int:
    missing = [m for m in ("torch", "monai", "safetensors", "SimpleITK", "numpy", "scipy") if __import__("importlib").util.find_spec(m) is None]
    if missing:
        print(f"gpu_check: missing Python packages: {', '.join(missing)}")
        return 2
    import numpy as np
    import SimpleITK as sitk
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_check: torch {torch.__version__} sees no CUDA device")
        return 2
    from MedSegAILib.methods.deep.inference import segment_with_model
    from MedSegAILib.methods.deep.train import TrainOptions, train

    report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    card = json.loads((REPO / "Resources" / "Models" / "hippocampus" / "model.json").read_text())
    split = card["members"][-1]["training"] if "members" in card else card["training"]
    val = split["validation_cases"][:20]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(DATA, Path(tmp) / "model", TrainOptions(epochs=5, device="cuda", val_cases=40, max_train_cases=160, onnx_export=False, name="gpu_check"))
        report["train_5_epochs_s"] = round(time.perf_counter() - t0, 1)
    model = str(REPO / "Resources" / "Models" / "hippocampus")
    agree, t_gpu, t_cpu, t_mc = [], [], [], []
    for name in val:
        image = sitk.Cast(sitk.ReadImage(str(DATA / "imagesTr" / f"{name}.nii.gz")), sitk.sitkFloat32)
        t0 = time.perf_counter()
        gpu = segment_with_model([image], model, device="cuda", runtime="torch")
        t_gpu.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        cpu = segment_with_model([image], model, device="cpu", runtime="torch")
        t_cpu.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        segment_with_model([image], model, device="cuda", runtime="torch", mc_samples=8)
        t_mc.append(time.perf_counter() - t0)
        a, b = sitk.GetArrayFromImage(gpu.labels), sitk.GetArrayFromImage(cpu.labels)
        agree.append(float((a == b).mean()))
    report.update(
        cases=len(val),
        label_agreement_min=round(min(agree), 6),
        label_agreement_mean=round(float(np.mean(agree)), 6),
        s_per_case_gpu_tta=round(float(np.median(t_gpu)), 3),
        s_per_case_cpu_tta=round(float(np.median(t_cpu)), 3),
        s_per_case_gpu_mc8=round(float(np.median(t_mc)), 3),
    )
    for k, v in report.items():
        print(f"{k:<24} {v}")
    out = Path(os.environ.get("OUT", ".")) / "gpu_check.json"
    out.write_text(json.dumps(report, indent=2))
    return 0 if report["label_agreement_min"] > 0.999 else 1


if __name__ == "__main__":
    sys.exit(main())
