"""Writing a result to a case folder: the six standard outputs, and the extras.

``labels.nii.gz``, ``instances.nii.gz``, ``uncertainty.nii.gz``, ``segmentation.seg.nrrd``,
``instances.csv`` and ``provenance.json`` (and ``overview.png``, ``report.html`` when asked).
Every image keeps the input's geometry.

Nothing the user had is lost or mixed:

- a folder that holds results is refused unless ``overwrite`` is set; a folder that holds
  anything else (the user's own files, the run's own inputs) is refused whatever the flags;
- the whole case is written into a temporary folder beside the final one and swapped in with
  one rename; an earlier result is moved aside first and deleted only once the new one is in
  place, so a kill at any moment leaves the old case or the new one, complete, never a mix
  (and no result of an earlier run, such as a report, survives into the new one);
- a lock beside the folder (held for the whole run, released by the system if the process
  dies) stops a second run writing the same folder; temporaries a killed run left are removed
  by the next run that takes the lock.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence


from ..core.errors import InputError, ResourceError, first_line
from ..core.result import SegmentationResult
from ..core.stages import timed

OUTPUT_FILES = (
    "labels.nii.gz",
    "instances.nii.gz",
    "uncertainty.nii.gz",
    "segmentation.seg.nrrd",
    "instances.csv",
    "provenance.json",
)


#: Files a run may write into a case folder.
CASE_FILES = OUTPUT_FILES + ("overview.png", "report.html")


def check_output_folder(folder: Path, overwrite: bool, inputs: Sequence = ()) -> None:
    """Refuse (InputError) a case folder a run must not write: a file, a folder that holds
    results while ``overwrite`` is off, one that holds files that are not MedSegAI outputs or
    one of the run's ``inputs``, or one whose parent cannot be written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"the output '{folder}' exists and is not a folder")
    for item in inputs:
        path = Path(item)
        if path.exists() and folder.is_dir() and path.resolve().parent == folder.resolve():
            raise InputError(f"the input '{path}' lies in the output folder '{folder}'; choose another output folder")
    if folder.is_dir():
        present = sorted(p.name for p in folder.iterdir())
        foreign = [n for n in present if n not in CASE_FILES]
        if foreign:
            raise InputError(
                f"the output folder '{folder}' holds files that are not MedSegAI outputs ({foreign[0]}); "
                "choose a new or empty folder (a run replaces the whole case folder)"
            )
        if present and not overwrite:
            raise InputError(f"the output folder '{folder}' already holds results ({present[0]}); choose another folder or pass --overwrite")
    parent = _existing_parent(folder)
    try:  # a real write, not os.access: root passes access() on read-only places
        probe = tempfile.mkdtemp(prefix=_temporary_prefix(folder) + "probe-", dir=parent)
        os.rmdir(probe)
    except OSError as exc:
        raise InputError(f"cannot write into '{parent}' ({exc.strerror or exc}); choose another output folder") from None


def _existing_parent(folder: Path) -> Path:
    parent = folder.resolve().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


class CaseFolderLock:
    """An exclusive lock on a case folder for one run (``<parent>/.<name>.medsegai.lock``).

    POSIX ``flock`` (released by the system when the process dies); elsewhere an exclusively
    created file holding the pid. A second run on the same folder gets InputError at once.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder.parent / f".{self.folder.name}.medsegai.lock"
        self._fh = None

    def __enter__(self) -> "CaseFolderLock":
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # Windows
            fcntl = None
        if fcntl is not None:
            self._fh = open(self.path, "a+")
            try:
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._fh.close()
                self._fh = None
                raise InputError(f"another medsegai run is writing '{self.folder}'; wait for it or choose another output folder") from None
        else:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                raise InputError(f"another medsegai run is writing '{self.folder}' (or one was killed: remove '{self.path}')") from None
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
        remove_stale_temporaries(self.folder)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.path.unlink()
        except OSError:
            pass
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _temporary_prefix(folder: Path) -> str:
    return f".{folder.name}.medsegai-"


def remove_stale_temporaries(folder: Path) -> None:
    """Remove the temporary folders a killed run left beside ``folder`` (call with its lock held)."""
    folder = Path(folder)
    if folder.parent.is_dir():
        for p in folder.parent.glob(_temporary_prefix(folder) + "*"):
            shutil.rmtree(p, ignore_errors=True)


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_instance_csv(result: SegmentationResult, path: Path) -> None:
    rows: List[Dict] = [r.to_row() for r in result.instance_table]
    columns: List[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    if not columns:
        from ..core.result import InstanceRecord

        columns = list(InstanceRecord(0, 0, "", 0, 0.0, [0, 0, 0], [0, 0, 0], [0, 0, 0]).to_row())
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for row in rows:
            w.writerow(row)


def provenance_dict(result: SegmentationResult) -> Dict:
    d = result.provenance.to_dict()
    d["classes"] = [c.to_dict() for c in result.classes]
    d["instances"] = len(result.instance_table)
    return d


def write_case_outputs(
    result: SegmentationResult,
    folder,
    *,
    overwrite: bool = False,
    extras: Optional[Callable[[Path], Dict[str, Path]]] = None,
    inputs: Sequence = (),
) -> Dict[str, Path]:
    """Write one case into ``folder`` as one swap; returns name -> final path.

    ``extras(temporary_folder)`` may write more files (overview, report) into the case before
    it is swapped in, returning name -> path there. Raises InputError (before writing
    anything) when :func:`check_output_folder` refuses the folder. The caller may hold the
    folder's :class:`CaseFolderLock` for the whole run.
    """
    folder = Path(folder)
    check_output_folder(folder, overwrite, inputs)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(folder) + "new-", dir=folder.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would stay on the swapped-in folder
    try:
        names = _write_case(result, tmp, extras, folder)
        _swap_in(tmp, folder)
        return {name: folder / name for name in names}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_case(result: SegmentationResult, tmp: Path, extras, folder: Path) -> List[str]:
    """Every file of the case into ``tmp``; returns their names. A failed write (a full disk, a
    quota, a vanished drive) becomes a one-line error, and the earlier case stays untouched."""
    from .nifti_gz import write_nifti_gz
    from .seg_nrrd import write_seg_nrrd

    stages = result.provenance.stages
    try:
        for name, image in (("labels.nii.gz", result.labels), ("instances.nii.gz", result.instances), ("uncertainty.nii.gz", result.uncertainty)):
            with timed(stages, name):
                write_nifti_gz(image, tmp / name)
        with timed(stages, "segmentation.seg.nrrd"):
            write_seg_nrrd(result, tmp / "segmentation.seg.nrrd")
        write_instance_csv(result, tmp / "instances.csv")
        extra = list(extras(tmp)) if extras is not None else []
        # Last, so that it holds every stage's time.
        with open(tmp / "provenance.json", "w") as fh:
            json.dump(provenance_dict(result), fh, indent=2, default=str)
    except (OSError, RuntimeError) as exc:
        free = shutil.disk_usage(tmp.parent).free
        detail = first_line(exc, type(exc).__name__)
        if free < 64 << 20 or getattr(exc, "errno", None) in (28, 122):  # ENOSPC, EDQUOT
            raise ResourceError(f"could not write the results into '{folder}': the disk is full ({free / 2**20:.1f} MiB free); nothing was changed there") from None
        raise InputError(f"could not write the results into '{folder}' ({detail}); nothing was changed there") from None
    return list(OUTPUT_FILES) + [n for n in extra if n not in OUTPUT_FILES]


def _swap_in(new: Path, folder: Path) -> None:
    """Put the complete case ``new`` at ``folder``: the old case (if any) is renamed aside,
    the new one renamed in, and only then the old one deleted."""
    old = None
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=_temporary_prefix(folder) + "old-", dir=folder.parent))
        os.rmdir(old)
        os.replace(folder, old)
    try:
        os.replace(new, folder)
    except BaseException:
        if old is not None and not folder.exists():
            os.replace(old, folder)  # put the earlier result back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
