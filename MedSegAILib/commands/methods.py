"""``medsegai methods``: list the registered methods, what they need and their parameters."""

from __future__ import annotations

from ..methods.registry import available_methods

NAME = "methods"
HELP = "list segmentation methods, what each needs, and their parameters with defaults"


def add_arguments(p) -> None:
    p.add_argument("name", nargs="?", help="show one method only")


def run(args) -> int:
    for spec in available_methods():
        if args.name and spec.name != args.name:
            continue
        needs = f"  (needs --{', --'.join(spec.needs)})" if spec.needs else ""
        print(f"{spec.name} [{spec.family}]{needs}\n    {spec.summary}")
        for k, v in spec.defaults.items():
            print(f"    --param {k}={v}")
        print()
    return 0
