#!/usr/bin/env bash
# The deep family on a GPU, in under 5 minutes on one GPU (run from the repository root):
#   - trains the hippocampus recipe for a few epochs with --device cuda (float16 autocast),
#   - segments the validation cases with the torch runtime on CUDA, with TTA and MC dropout,
#   - checks that CPU and GPU labels agree on those cases, and prints the timings.
# Needs a Python with a CUDA build of torch, MONAI, safetensors, SimpleITK, NumPy and SciPy
# (PYTHON=... to choose it) and the shared data beside the repository (or MEDSEGAI_SHARED_DATA).
# Prints a table and writes gpu_check.json (into $OUT when set, else the current folder).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" Testing/gpu_check.py "$@"
