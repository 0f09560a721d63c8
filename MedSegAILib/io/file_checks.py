"""Checks of an image file against its own header, made before the voxels are read.

SimpleITK fills the missing part of a NIfTI or NRRD file that was cut short with zeros and
reads it without complaint, and it allocates whatever a header claims (a 50 KB ``.nii.gz``
can claim 1000³ float voxels). So before reading, the header's data size is compared with
what the file holds, and with the memory the process may use:

- raw data (``.nii``, NRRD ``raw``): the file must be at least header + data bytes long;
- gzip data (``.nii.gz``, NRRD ``gzip``): the gzip trailer's ISIZE (decoded length modulo
  2³²) must match the header; when it does not (a cut file, or a multi-member stream), the
  stream is decoded once to count its length.

Only NIfTI-1/2 and attached NRRD data are checked; other formats go to SimpleITK unchanged.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Optional, Tuple

from ..core.errors import InputError, ResourceError
from ..core.memory import available_memory_bytes

#: Bytes per voxel of the NRRD types.
_NRRD_TYPES = {
    "signed char": 1, "int8": 1, "int8_t": 1, "uchar": 1, "unsigned char": 1, "uint8": 1, "uint8_t": 1,
    "short": 2, "short int": 2, "signed short": 2, "signed short int": 2, "int16": 2, "int16_t": 2,
    "ushort": 2, "unsigned short": 2, "unsigned short int": 2, "uint16": 2, "uint16_t": 2,
    "int": 4, "signed int": 4, "int32": 4, "int32_t": 4, "uint": 4, "unsigned int": 4, "uint32": 4, "uint32_t": 4,
    "longlong": 8, "long long": 8, "long long int": 8, "signed long long": 8, "signed long long int": 8, "int64": 8, "int64_t": 8,
    "ulonglong": 8, "unsigned long long": 8, "unsigned long long int": 8, "uint64": 8, "uint64_t": 8,
    "float": 4, "double": 8,
}


def check_image_file(path: Path, *, memory_bytes: Optional[int] = None) -> None:
    """Refuse (InputError) a NIfTI or NRRD file shorter than its header says, and (ResourceError)
    one whose decoded voxels would not fit in memory; return quietly otherwise."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        found = _nifti_layout(path)
    elif name.endswith(".nrrd"):
        found = _nrrd_layout(path)
    else:
        return
    if found is None:
        return
    offset, data_bytes, compressed, what = found
    limit = available_memory_bytes() if memory_bytes is None else memory_bytes
    if data_bytes > limit:
        raise ResourceError(
            f"the header of '{path}' describes {what} ({data_bytes / 2**30:.1f} GiB of voxels), more than the "
            f"{limit / 2**30:.1f} GiB of memory available; is the header damaged?"
        )
    if compressed and name.endswith(".nii.gz"):  # the whole file is one gzip stream: header + data
        need = offset + data_bytes
        have = _gzip_length(path, 0, need)
    elif compressed:  # NRRD: a plain-text header, then the gzip data
        need = data_bytes
        have = _gzip_length(path, offset, need)
    else:
        have, need = path.stat().st_size, offset + data_bytes
    if have < need:
        raise InputError(
            f"the file '{path}' is cut short: its header describes {what} ({need} bytes) but it holds {have}; "
            "the copy or download was interrupted"
        )


def _nifti_layout(path: Path) -> Optional[Tuple[int, int, bool, str]]:
    """(data offset in the decoded stream, data bytes, gzip?, description) from a NIfTI header."""
    compressed = path.name.lower().endswith(".gz")
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as fh:
            head = fh.read(540)
    except (OSError, EOFError, zlib.error):
        raise InputError(f"the file '{path}' is not an image SimpleITK can read (a damaged NIfTI file, or not gzip-compressed as its name says)") from None
    for endian in ("<", ">"):
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", head[16:80])
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            offset = int(struct.unpack(endian + "q", head[168:176])[0])
            break
    else:
        return None  # not NIfTI: SimpleITK says what it is
    ndim = int(dims[0])
    if not 1 <= ndim <= 7 or bitpix <= 0 or any(int(d) < 0 for d in dims[1 : ndim + 1]):
        raise InputError(f"the NIfTI header of '{path}' is damaged (dimensions {list(dims[: ndim + 1])}, {bitpix} bits per voxel)")
    voxels = 1
    for d in dims[1 : ndim + 1]:
        voxels *= max(int(d), 1)
    data_bytes = voxels * bitpix // 8
    shape = " x ".join(str(int(d)) for d in dims[1 : ndim + 1])
    return max(offset, 348), data_bytes, compressed, f"{shape} voxels of {bitpix} bits"


def _nrrd_layout(path: Path) -> Optional[Tuple[int, int, bool, str]]:
    """(header length, data bytes, gzip?, description) for a NRRD file with attached data."""
    with open(path, "rb") as fh:
        raw = fh.read(1 << 16)
    if not raw.startswith(b"NRRD"):
        return None
    end = raw.find(b"\n\n")
    if end < 0:
        return None
    fields = {}
    for line in raw[:end].decode("latin-1").splitlines()[1:]:
        if line.startswith("#") or ":" not in line or ":=" in line:
            continue
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
    if "data file" in fields or "datafile" in fields:
        return None  # detached data: SimpleITK reads the other file
    encoding = fields.get("encoding", "raw").lower()
    if encoding not in ("raw", "gzip", "gz"):
        return None
    size = _NRRD_TYPES.get(fields.get("type", "").lower())
    try:
        sizes = [int(s) for s in fields.get("sizes", "").split()]
    except ValueError:
        raise InputError(f"the NRRD header of '{path}' has unreadable sizes '{fields.get('sizes')}'") from None
    if size is None or not sizes or any(s < 0 for s in sizes):
        return None
    voxels = 1
    for s in sizes:
        voxels *= s
    return end + 2, voxels * size, encoding != "raw", f"{' x '.join(map(str, sizes))} voxels of {fields.get('type')}"


def _gzip_length(path: Path, start: int, expected: int) -> int:
    """Decoded length of the gzip stream that begins ``start`` bytes into the file, counted up
    to ``expected`` + 1. The trailer's ISIZE (length modulo 2³²) answers at once when it matches;
    otherwise (a cut file, several gzip members) the stream is decoded and counted, and a stream
    that ends early counts what it held."""
    size = path.stat().st_size
    if size - start >= 18:
        with open(path, "rb") as fh:
            fh.seek(size - 4)
            isize = struct.unpack("<I", fh.read(4))[0]
        if isize == expected % (1 << 32):
            return expected
    count = 0
    with open(path, "rb") as raw:
        raw.seek(start)
        try:
            with gzip.GzipFile(fileobj=raw) as fh:
                while count <= expected:
                    chunk = fh.read(1 << 16)
                    if not chunk:
                        break
                    count += len(chunk)
        except (EOFError, OSError, zlib.error):
            pass  # the stream stops early or is damaged: it holds what was decoded
    return count
