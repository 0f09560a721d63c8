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
            info = spec.parameter(k)
            bounds = ""
            if info.choices:
                bounds = "one of " + ", ".join(repr(c) if c == "" else str(c) for c in info.choices)
            elif info.minimum is not None or info.maximum is not None:
                bounds = f"{info.minimum:g} to {info.maximum:g}" if info.minimum is not None and info.maximum is not None else ""
            unit = f" {info.unit}" if info.unit else ""
            extra = f"; {bounds}{unit}" if bounds else unit
            print(f"    --param {k}={v}    {info.label}{extra}")
            if info.help:
                print(f"        {info.help}")
        print()
    return 0
