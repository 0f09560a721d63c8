"""Registry adapter of the deep family: ``--method deep --model NAME|DIR``.

Which runtime runs the network (torch, or ONNX Runtime without torch) and the check that its
packages are installed are decided in :func:`.inference.segment_with_model`. Around it, the
domain check (:mod:`.domain`): the input against the model's training data before inference,
the result against its validation results after; out of domain the run stops with the
reasons unless ``allow_out_of_domain`` is set, and then the result says it is out of domain.
"""

from __future__ import annotations

from ...core.errors import InputError
from ...core.result import MethodOutput
from ..registry import MethodRequest


class OutOfDomainError(InputError):
    """The input is unlike the model's training data (one line with the reasons)."""


def run(request: MethodRequest) -> MethodOutput:
    from .domain import check_input, check_output, input_features, output_features
    from .inference import segment_with_model
    from .model_store import read_card, resolve_model_dir

    card = read_card(resolve_model_dir(request.model))
    record = card.get("domain")
    before = check_input(record, input_features(request.channels))
    if before.in_domain is False and not request.allow_out_of_domain:
        raise OutOfDomainError(_refusal(before.reasons))
    out = segment_with_model(request.channels, request.model, device=request.device, progress=request.progress, **request.params)
    names = {str(c.label): c.name for c in out.classes}
    after = check_output(record, output_features(out.labels, out.uncertainty, [c.label for c in out.classes]), names)
    if after.in_domain is False and not request.allow_out_of_domain:
        raise OutOfDomainError(_refusal(after.reasons))
    verdicts = (before.in_domain, after.in_domain)
    in_domain = None if verdicts == (None, None) else not (False in verdicts)
    out.extra = dict(out.extra or {})
    out.extra["domain"] = {"in_domain": in_domain, "before": before.to_dict(), "after": after.to_dict()}
    if in_domain is False:
        out.extra.setdefault("warnings", []).append("OUT OF DOMAIN (segmented on request): " + "; ".join(before.reasons + after.reasons))
    elif in_domain is None:
        out.extra.setdefault("warnings", []).append("the model card records no training domain: the input was not checked against it")
    return out


def _refusal(reasons) -> str:
    return (
        "the input is unlike the model's training data: " + "; ".join(reasons)
        + "; nothing was written (pass --allow-out-of-domain to segment it anyway, marked as out of domain)"
    )
