"""Registry adapter of the deep family: ``--method deep --model NAME|DIR``.

Which runtime runs the network (torch, or ONNX Runtime without torch) and the check that its
packages are installed are decided in :func:`.inference.segment_with_model`. Around it, the
domain check (:mod:`.domain`): the input against the model's training data before inference,
the result against its validation results after; out of domain the run stops with the
reasons unless ``allow_out_of_domain`` is set, and then the result says it is out of domain.
"""

from __future__ import annotations

from ...core.result import MethodOutput
from ..domain_gate import OutOfDomainError, mark_result, refuse_unless_allowed
from ..registry import MethodRequest

__all__ = ["OutOfDomainError", "run"]


SOURCE = "the model's training data"


def run(request: MethodRequest) -> MethodOutput:
    from .domain import check_input, check_result, input_features
    from .imported_files import MONAI_BUNDLE, NNUNET
    from .inference import segment_with_model
    from .model_store import read_card, resolve_model_dir

    folder = resolve_model_dir(request.model)
    card = read_card(folder)
    record = card.get("domain")
    before = check_input(record, input_features(request.channels))
    refuse_unless_allowed(before, request.allow_out_of_domain, SOURCE)
    if card.get("format") == NNUNET:  # imported from nnU-Net: nnU-Net's own preprocessing and sliding window
        from .nnunet.predict import segment_imported

        out = segment_imported(request.channels, folder, tta=bool(request.params.get("tta", True)),
                               runtime=str(request.params.get("runtime", "auto")), progress=request.progress)
    elif card.get("format") == MONAI_BUNDLE:  # imported MONAI bundle: its transforms and inferer, reproduced
        from .monai_bundle.predict import segment_bundle

        out = segment_bundle(request.channels, folder, runtime=str(request.params.get("runtime", "auto")),
                             progress=request.progress)
    else:
        out = segment_with_model(request.channels, request.model, device=request.device, progress=request.progress,
                                 keep_samples=request.keep_probabilities, **request.params)
    after = check_result(record, out)
    refuse_unless_allowed(after, request.allow_out_of_domain, SOURCE)
    return mark_result(out, before, after, "the model card records no training domain: the input was not checked against it")
