"""SHA-256 of files, read in 1 MiB pieces (standard library only, cheap to import)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable


def sha256_of_files(paths: Iterable) -> str:
    """One SHA-256 over the bytes of ``paths`` in the order given."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def sha256_of_file(path) -> str:
    return sha256_of_files([Path(path)])
