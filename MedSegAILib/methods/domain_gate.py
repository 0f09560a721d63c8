"""The domain gate around a learned method's run (a deep model, an atlas library).

A method compares its input with what it learned from before it runs and its result with
in-domain results after (the verdicts of :mod:`.deep.domain` and :mod:`.atlas.domain`).
Out of domain the run stops with the reasons, nothing written, unless the user allowed it;
then the result carries the verdict and a warning saying it is out of domain.
"""

from __future__ import annotations

from ..core.errors import OUT_OF_DOMAIN_START, OutOfDomainError
from ..core.result import MethodOutput

__all__ = ["OutOfDomainError", "mark_result", "refuse_unless_allowed"]


def refuse_unless_allowed(verdict, allowed: bool, source: str) -> None:
    """Raise OutOfDomainError naming the reasons when ``verdict`` says out of domain and the
    user did not allow it. ``source``: what was learned from ("the model's training data")."""
    if verdict.in_domain is False and not allowed:
        raise OutOfDomainError(
            f"{OUT_OF_DOMAIN_START}{source}: " + "; ".join(verdict.reasons)
            + "; nothing was written (pass --allow-out-of-domain to segment it anyway, marked as out of domain)"
        )


def mark_result(out: MethodOutput, before, after, unchecked: str) -> MethodOutput:
    """Record both verdicts in ``out.extra["domain"]`` and warn when the result is out of
    domain, or, with the warning ``unchecked``, when nothing could be checked."""
    verdicts = (before.in_domain, after.in_domain)
    in_domain = None if verdicts == (None, None) else not (False in verdicts)
    out.extra = dict(out.extra or {})
    out.extra["domain"] = {"in_domain": in_domain, "before": before.to_dict(), "after": after.to_dict()}
    if in_domain is False:
        out.extra.setdefault("warnings", []).append("OUT OF DOMAIN (segmented on request): " + "; ".join(before.reasons + after.reasons))
    elif in_domain is None:
        out.extra.setdefault("warnings", []).append(unchecked)
    return out
