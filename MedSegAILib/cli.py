"""``medsegai``: the command line over MedSegAILib.

Every sub-command lives in :mod:`MedSegAILib.commands` and calls the same library functions the
Slicer module and the tests call. Exit codes: 0 success, 2 bad input (one line on stderr, no
traceback), 130 cancelled (Ctrl-C), 1 unexpected failure (one line, ``--debug`` for the
traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from . import __version__
from .core.errors import USER_ERRORS, Cancelled, MedSegAIError

# (module, required): optional commands come from method families that may not be present.
COMMANDS = (
    "segment",
    "demo",
    "evaluate",
    "export_surfaces",
    "radiomics",
    "training_set",
    "train",
    "export_onnx",
    "ensemble",
    "import_model",
    "methods",
)

DESCRIPTION = """\
MedSegAI: medical image segmentation with uncertainty, instances, measurements and provenance.

Typical use:
  medsegai demo --output demo_output              run every method on the bundled sample cases
  medsegai segment scan.nii.gz --output out/      Otsu segmentation of one scan (default method)
  medsegai segment scan.nii.gz --method deep --model hippocampus --output out/
  medsegai segment dicom_folder/ --method graphcut --seeds seeds.nii.gz --output out/
  medsegai evaluate out/labels.nii.gz reference.nii.gz --json
  medsegai export-surfaces out/segmentation.seg.nrrd --output surfaces/ --format stl
  medsegai methods                                list methods and their parameters

Research use only; not a medical device.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: one line, exit 2
        self.print_usage(sys.stderr)
        self.exit(2, f"medsegai: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="medsegai", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"medsegai {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"MedSegAILib.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"MedSegAILib.commands.{name}":
                continue  # a family that is not part of this installation
            raise
        p = sub.add_parser(
            mod.NAME,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except Cancelled:
        print("medsegai: cancelled; nothing was written for the unfinished case", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("\nmedsegai: interrupted; nothing was written for the unfinished case", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        print(f"medsegai: error: {exc}", file=sys.stderr)
        return 2
    except MedSegAIError as exc:
        print(f"medsegai: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # an unexpected failure: one line unless --debug
        if args.debug:
            raise
        print(f"medsegai: internal error: {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
