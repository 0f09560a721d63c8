"""Registry adapter of the deep family: ``--method deep --model NAME|DIR``."""

from __future__ import annotations

from ...core.errors import MissingDependencyError
from ...core.result import MethodOutput
from ..registry import MethodRequest


def run(request: MethodRequest) -> MethodOutput:
    try:
        import monai  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "torch", "deep", "the deep method") from exc
    from .inference import segment_with_model

    return segment_with_model(request.channels, request.model, device=request.device, progress=request.progress, **request.params)
