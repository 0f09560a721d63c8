"""Trained nnU-Net v2 models, imported and run without nnunetv2 (and without pickle).

``plans`` reads and checks a results folder's ``plans.json`` and ``dataset.json``;
``network`` rebuilds the plain-convolution and residual-encoder U-Nets with nnU-Net's own
parameter names; ``checkpoint`` reads ``checkpoint_*.pth`` with ``torch.load(weights_only=True)``;
``preprocess`` and ``predict`` reproduce nnU-Net's inference (transpose, crop to the non-zero
region, normalisation, resampling, Gaussian sliding window, mirroring, fold averaging, back to
the input grid); ``importer`` writes a MedSegAI model folder. Written from nnU-Net's
documentation and file formats; nnunetv2 is only the peer the benchmark compares with.
"""
