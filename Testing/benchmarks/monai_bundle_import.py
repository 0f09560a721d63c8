"""Benchmark: a MONAI bundle imported by MedSegAI against the bundle run by MONAI itself.

1. A MONAI U-Net (3D, 2 residual units, batch norm) is trained briefly here on the 160
   training cases of the shared hippocampus split (the last 40 by name are held out), through
   MONAI's transforms (RAS, 1.2 mm, non-zero z-score, random 32^3 crops) and DiceCE loss, for
   ``--train-min`` minutes of wall time on the CPU.
2. It is packed into a bundle with MONAI's own tooling (``monai.bundle.init_bundle``,
   ``Testing/bundle_maker.py``: the model-zoo layout, SlidingWindowInferer 32^3 with overlap
   0.5 and Gaussian blending, Activationsd, Invertd, AsDiscreted, SaveImaged).
3. ``medsegai import-model monai-bundle`` imports it (time, ONNX check).
4. The peer: ``python -m monai.bundle run`` in its own venv (``.venv-peers/monai``: torch
   2.13.0, the same MONAI, nibabel, pytorch-ignite, fire) over the 40 held-out cases, one
   process, timed whole (start-up included).
5. MedSegAI: the imported model over the same 40 cases in one process (``segment_bundle``), once
   with ONNX Runtime and once with torch, timed whole (imports included).
6. Per case: Dice between MedSegAI's and MONAI's label maps (each class), the voxels that
   differ, the largest softmax difference against MONAI's parsed transforms and inferer in this
   process, and each side's Dice against the reference labels.

Prints a table and writes ``docs/benchmarks/monai_bundle_import.json``.
Run: ``.venv/bin/python Testing/benchmarks/monai_bundle_import.py [--train-min 6] [--cases 40] [--setup]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_paths import HIPPOCAMPUS, REPO  # noqa: E402
from bundle_maker import hippocampus_preprocessing, unet_definition, write_bundle  # noqa: E402

sys.path.insert(0, str(REPO))

VENV = REPO / ".venv-peers" / "monai"
WORK = REPO / "Testing" / "benchmarks" / "work" / "monai_bundle"
OUT = REPO / "docs" / "benchmarks" / "monai_bundle_import.json"
PEER_PACKAGES = ["torch==2.13.0", "monai==1.6.1", "nibabel", "pytorch-ignite", "fire"]


def setup() -> None:
    if (VENV / "bin" / "python").exists():
        return
    subprocess.run(["python3.11", "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *PEER_PACKAGES], check=True)


def split():
    names = sorted(p.name for p in (HIPPOCAMPUS / "imagesTr").glob("*.nii.gz"))
    return names[:-40], names[-40:]


def train(minutes: float, seed: int = 0):
    """A MONAI U-Net trained for ``minutes`` of wall time; returns (network, definition, epochs)."""
    import torch
    from monai.data import CacheDataset, DataLoader
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, NormalizeIntensityd, Orientationd, RandFlipd, RandSpatialCropd, Spacingd, SpatialPadd

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    names, _ = split()
    data = [{"image": str(HIPPOCAMPUS / "imagesTr" / n), "label": str(HIPPOCAMPUS / "labelsTr" / n)} for n in names]
    t = Compose([
        LoadImaged(keys=["image", "label"]), EnsureChannelFirstd(keys=["image", "label"]),
        Orientationd(keys=["image", "label"], axcodes="RAS"), Spacingd(keys=["image", "label"], pixdim=(1.2, 1.2, 1.2), mode=("bilinear", "nearest")),
        NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True), SpatialPadd(keys=["image", "label"], spatial_size=(32, 32, 32)),
        # random from here on: CacheDataset keeps the steps above once per case
        RandSpatialCropd(keys=["image", "label"], roi_size=(32, 32, 32), random_size=False), RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=1),
    ])
    cached = CacheDataset(data, t, progress=False)
    definition = unet_definition(channels=(16, 32, 64))
    net = UNet(**{k: v for k, v in definition.items() if k != "_target_"})
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    loader = DataLoader(cached, batch_size=8, shuffle=True, num_workers=0)
    start, epoch = time.time(), 0
    while time.time() - start < minutes * 60:
        net.train()
        total = 0.0
        for batch in loader:
            x, y = batch["image"].float(), batch["label"].float()
            opt.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            total += float(loss)
        epoch += 1
        print(f"epoch {epoch}: loss {total / len(loader):.4f} ({time.time() - start:.0f} s)", flush=True)
    return net.eval(), definition, epoch


def dice(a: np.ndarray, b: np.ndarray, k: int) -> float:
    x, y = a == k, b == k
    return 1.0 if not x.any() and not y.any() else float(2 * (x & y).sum() / (x.sum() + y.sum()))


def monai_softmax(bundle: Path, case: Path, parsed) -> np.ndarray:
    """MONAI's softmax on the input grid (K, z, y, x), by the bundle's parsed components."""
    import torch
    from monai.transforms import Activationsd, Invertd

    pre, net, inferer = parsed
    d = pre({"image": str(case)})
    with torch.no_grad():
        d["pred"] = inferer(d["image"][None], net)[0]
    d = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=False)(Activationsd(keys="pred", softmax=True)(d))
    return d["pred"].numpy().transpose(0, 3, 2, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-min", type=float, default=6.0)
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--setup", action="store_true", help="create the peer venv first")
    ap.add_argument("--json", default=str(OUT))
    args = ap.parse_args(argv)
    if args.setup:
        setup()
    if not (VENV / "bin" / "python").exists():
        print(f"the peer venv {VENV} is missing; run with --setup", file=sys.stderr)
        return 2
    import torch

    from MedSegAILib.methods.deep.monai_bundle.importer import import_monai_bundle
    from MedSegAILib.methods.deep.monai_bundle.predict import segment_bundle

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    net, definition, epochs = train(args.train_min)
    bundle = write_bundle(WORK / "hippocampus_bundle", net, definition, preprocessing=hippocampus_preprocessing())
    t0 = time.time()
    card = import_monai_bundle(bundle, WORK / "imported", log=print)
    import_s = time.time() - t0

    _, held = split()
    held = held[: args.cases]
    data = WORK / "cases"
    data.mkdir()
    for n in held:
        shutil.copy(HIPPOCAMPUS / "imagesTr" / n, data / n)

    t0 = time.time()
    peer = subprocess.run([str(VENV / "bin" / "python"), "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.json"),
                           "--meta_file", str(bundle / "configs" / "metadata.json"), "--dataset_dir", str(data), "--output_dir", str(WORK / "monai")],
                          capture_output=True, text=True)
    peer_s = time.time() - t0
    if peer.returncode != 0:
        print(peer.stderr[-3000:], file=sys.stderr)
        return 1

    timing = {}
    for runtime in ("onnx", "torch"):
        code = ("import sys, time, SimpleITK as sitk; t = time.time(); sys.path.insert(0, sys.argv[1]);"
                "from MedSegAILib.methods.deep.monai_bundle.predict import segment_bundle;"
                "[sitk.WriteImage(segment_bundle([sitk.ReadImage(p)], sys.argv[2], runtime=sys.argv[3]).labels, p.replace('/cases/', f'/ours_{sys.argv[3]}/')) for p in sys.argv[4:]];"
                "print(time.time() - t)")
        (WORK / f"ours_{runtime}").mkdir()
        t0 = time.time()
        subprocess.run([sys.executable, "-c", code, str(REPO), str(WORK / "imported"), runtime, *[str(data / n) for n in held]], check=True, capture_output=True)
        timing[runtime] = time.time() - t0

    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    pre, mnet, inferer = (parser.get_parsed_content(k) for k in ("preprocessing", "network_def", "inferer"))
    mnet.load_state_dict(torch.load(str(bundle / "models" / "model.pt"), weights_only=True))
    parsed = (pre, mnet.eval(), inferer)

    rows = []
    for n in held:
        stem = n[: -len(".nii.gz")]
        theirs = sitk.GetArrayFromImage(sitk.ReadImage(str(WORK / "monai" / f"{stem}_seg.nii.gz")))
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(HIPPOCAMPUS / "labelsTr" / n)))
        row = {"case": stem}
        for runtime in ("onnx", "torch"):
            mine = sitk.GetArrayFromImage(sitk.ReadImage(str(WORK / f"ours_{runtime}" / n)))
            row[runtime] = {"dice_vs_monai": [dice(mine, theirs, k) for k in (1, 2)], "differing_voxels": int((mine != theirs).sum()),
                            "dice_vs_reference": [dice(mine, ref, k) for k in (1, 2)]}
        out = segment_bundle([sitk.ReadImage(str(data / n))], WORK / "imported", runtime="onnx")
        prob = np.moveaxis(sitk.GetArrayFromImage(out.probabilities), -1, 0)
        row["max_softmax_difference_onnx"] = float(np.abs(prob - monai_softmax(bundle, data / n, parsed)).max())
        row["monai_dice_vs_reference"] = [dice(theirs, ref, k) for k in (1, 2)]
        rows.append(row)

    def mean(f):
        return float(np.mean([f(r) for r in rows]))

    summary = {
        "cases": len(rows), "train_minutes": args.train_min, "epochs": epochs, "import_s": round(import_s, 2),
        "onnx_check": card["networks"][0].get("onnx", {}).get("max_relative_logit_difference"),
        "min_dice_vs_monai": {rt: float(min(min(r[rt]["dice_vs_monai"]) for r in rows)) for rt in ("onnx", "torch")},
        "differing_voxels_total": {rt: int(sum(r[rt]["differing_voxels"] for r in rows)) for rt in ("onnx", "torch")},
        "max_softmax_difference_onnx": float(max(r["max_softmax_difference_onnx"] for r in rows)),
        "mean_dice_vs_reference": {"monai": mean(lambda r: np.mean(r["monai_dice_vs_reference"])),
                                   "medsegai_onnx": mean(lambda r: np.mean(r["onnx"]["dice_vs_reference"])),
                                   "medsegai_torch": mean(lambda r: np.mean(r["torch"]["dice_vs_reference"]))},
        "seconds_per_case": {"monai_bundle_run": peer_s / len(rows), "medsegai_onnx": timing["onnx"] / len(rows), "medsegai_torch": timing["torch"] / len(rows)},
        "peer": "python -m monai.bundle run (" + " ".join(PEER_PACKAGES) + "), one process for all cases, start-up included",
        "medsegai": "segment_bundle over the cases in one process, imports included",
    }
    summary["ratio_monai_over_medsegai_onnx"] = summary["seconds_per_case"]["monai_bundle_run"] / summary["seconds_per_case"]["medsegai_onnx"]
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"summary": summary, "cases": rows}, indent=2))
    s = summary
    print("| measure | MedSegAI (ONNX Runtime) | MedSegAI (torch) | monai.bundle run |")
    print("| --- | --- | --- | --- |")
    print(f"| lowest Dice vs MONAI's labels, any case or class | {s['min_dice_vs_monai']['onnx']:.4f} | {s['min_dice_vs_monai']['torch']:.4f} | - |")
    print(f"| voxels differing from MONAI's labels, all {len(rows)} cases | {s['differing_voxels_total']['onnx']} | {s['differing_voxels_total']['torch']} | - |")
    print(f"| largest softmax difference from MONAI's | {s['max_softmax_difference_onnx']:.1e} | | - |")
    md = s["mean_dice_vs_reference"]
    print(f"| mean Dice vs reference labels | {md['medsegai_onnx']:.4f} | {md['medsegai_torch']:.4f} | {md['monai']:.4f} |")
    sp = s["seconds_per_case"]
    print(f"| seconds per case (whole process / cases) | {sp['medsegai_onnx']:.3f} | {sp['medsegai_torch']:.3f} | {sp['monai_bundle_run']:.3f} |")
    print(f"trained {epochs} epochs in {args.train_min} min; import {import_s:.1f} s; MONAI / MedSegAI-ONNX time ratio {s['ratio_monai_over_medsegai_onnx']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
