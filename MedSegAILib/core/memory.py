"""Memory available to a job, for estimates made before heavy work starts."""

from __future__ import annotations


def available_memory_bytes(default: int = 8 << 30) -> int:
    """MemAvailable from /proc/meminfo (Linux); ``default`` when it cannot be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return default
