"""Registry adapter of the deep family: ``--method deep --model NAME|DIR``.

Which runtime runs the network (torch, or ONNX Runtime without torch) and the check that its
packages are installed are decided in :func:`.inference.segment_with_model`.
"""

from __future__ import annotations

from ...core.result import MethodOutput
from ..registry import MethodRequest


def run(request: MethodRequest) -> MethodOutput:
    from .inference import segment_with_model

    return segment_with_model(request.channels, request.model, device=request.device, progress=request.progress, **request.params)
