"""Memory available to a job, for estimates made before heavy work starts.

The smallest of: the system's MemAvailable, what the process's cgroup still allows (v2
``memory.max`` less ``memory.current``; v1 ``memory.limit_in_bytes`` less usage), and what the
address-space limit (``ulimit -v``) leaves beside the process's current size. A container or a
batch job's limit is therefore what estimates are held against, not the host's free memory.
"""

from __future__ import annotations

import os
from typing import List, Optional


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available() -> Optional[int]:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cgroup_room() -> Optional[int]:
    """Bytes the process's cgroup still allows, or None without a limit."""
    room: List[int] = []
    try:
        with open("/proc/self/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, rel = parts[1], parts[2].lstrip("/")
        if controllers == "":  # cgroup v2
            base = os.path.join("/sys/fs/cgroup", rel)
            limit, used = _read_int(os.path.join(base, "memory.max")), _read_int(os.path.join(base, "memory.current"))
            if limit is None:  # the namespace's root: the files sit at the mount point
                limit, used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
        elif "memory" in controllers.split(","):  # cgroup v1
            base = "/sys/fs/cgroup/memory"
            limit = _read_int(os.path.join(base, rel, "memory.limit_in_bytes")) or _read_int(os.path.join(base, "memory.limit_in_bytes"))
            used = _read_int(os.path.join(base, rel, "memory.usage_in_bytes")) or _read_int(os.path.join(base, "memory.usage_in_bytes"))
        else:
            continue
        if limit is not None and limit < (1 << 60):  # v1 writes a huge number for "no limit"
            room.append(max(limit - (used or 0), 0))
    return min(room) if room else None


def _address_space_room() -> Optional[int]:
    """What ``ulimit -v`` (RLIMIT_AS) leaves beside the process's current virtual size."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    size = 0
    try:
        with open("/proc/self/statm") as fh:
            size = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        pass
    return max(soft - size, 0)


def available_memory_bytes(default: int = 8 << 30) -> int:
    """Bytes this process may still allocate: the smallest of MemAvailable, the cgroup's room
    and the address-space limit's room; ``default`` when none can be read."""
    found = [v for v in (_meminfo_available(), _cgroup_room(), _address_space_room()) if v is not None]
    return min(found) if found else default


#: What :func:`require_memory` suggests unless told otherwise.
ADVICE = "crop the volume or use a machine with more memory"


def require_memory(need_bytes: int, what: str, advice: str = ADVICE) -> None:
    """Raise ResourceError (one line, with the figures) when ``need_bytes`` exceeds 80 % of
    :func:`available_memory_bytes`; a run is refused before its work instead of dying in it."""
    from .errors import ResourceError

    have = available_memory_bytes()
    if need_bytes > 0.8 * have:
        raise ResourceError(f"{what} would need about {need_bytes / 2**30:.1f} GiB of memory, {have / 2**30:.1f} GiB are available; {advice}")
