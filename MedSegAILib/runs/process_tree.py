"""Stop a process together with everything it started.

Slicer's ``PythonSlicer`` is a launcher: it sets up the environment and starts the real Python
as its child, then waits. Killing the launcher alone leaves the child computing (and writing)
on its own, so a cancel kills the whole tree. The tree is listed before anything is killed, so
children that the kill re-parents are still found.

psutil is used where it is installed; otherwise the tree is read from ``/proc`` (Linux),
``ps`` (macOS and other POSIX systems) or killed with ``taskkill /T`` (Windows). psutil is not
a dependency: Slicer does not ship it on every platform.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Dict, List


def _parent_map_proc() -> Dict[int, int]:
    parents: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode("utf-8", "replace")
        except OSError:
            continue
        # "pid (command) state ppid ...": the command may hold spaces and parentheses.
        rest = stat[stat.rfind(")") + 2 :].split()
        if len(rest) > 1:
            parents[int(entry)] = int(rest[1])
    return parents


def _parent_map_ps() -> Dict[int, int]:
    out = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, check=False).stdout
    parents = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            parents[int(parts[0])] = int(parts[1])
    return parents


def descendants(pid: int) -> List[int]:
    """Every process below ``pid`` (children first found first), not ``pid`` itself."""
    try:
        import psutil

        try:
            return [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
    except ImportError:
        pass
    parents = _parent_map_proc() if os.path.isdir("/proc/self") else _parent_map_ps()
    children: Dict[int, List[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found and child != pid:
                found.append(child)
                todo.append(child)
    return found


def is_alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie counts as exited)."""
    if sys.platform == "win32":
        out = subprocess.run(["tasklist", "/FI", f"PID eq {pid}", "/NH"], capture_output=True, text=True, check=False).stdout
        return str(pid) in out
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read().decode("utf-8", "replace")
            return stat[stat.rfind(")") + 2 :].split()[0] != "Z"
        except OSError:
            return False
    return True


def kill_process_tree(pid: int, *, timeout_s: float = 2.0) -> List[int]:
    """Kill ``pid`` and all its descendants; wait up to ``timeout_s`` seconds for them to go.

    Returns the pids that are still alive after the wait (empty when the whole tree is gone).
    """
    tree = descendants(pid) + [pid]
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True, check=False)
    for p in reversed(tree[:-1]):  # deepest first, then the launcher
        _kill(p)
    _kill(pid)
    deadline = time.monotonic() + timeout_s
    alive = [p for p in tree if is_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if is_alive(p)]
    return alive


def _kill(pid: int) -> None:
    if sys.platform == "win32":
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
