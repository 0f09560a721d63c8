"""Trained MONAI bundles, imported and run without executing the bundle's code.

``config`` reads a bundle's ``configs/inference.json`` (or ``.yaml``) and ``metadata.json``
through ``monai.bundle`` and turns the parts MedSegAI needs (the network definition, the
preprocessing transforms, the inferer, the postprocessing) into a plain description; a part
that is a Python expression (``$...``) or a transform outside the supported set is refused with
its name, so nothing in the bundle is evaluated. ``importer`` rebuilds the network through
``monai.bundle`` from that description, loads ``models/model.pt`` with
``torch.load(weights_only=True)`` and writes a MedSegAI model folder; ``predict`` runs it the
way the bundle's transforms and MONAI's sliding window do, over NumPy and SimpleITK, with ONNX
Runtime or torch.
"""
