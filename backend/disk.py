"""The disk under the work folder: how much is free, whether a write fits, how much the folder holds.

A write that meets a full disk halfway leaves a broken file and a confusing error; asking first
turns it into a sentence that says how much is needed. The check is advice, not a promise (another
process may fill the disk meanwhile), so writers still clean up after a failed write.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from backend.problems import Problem

# Left free after any write we make: the job store's journal, logs and result files still need a
# little room to record that something failed.
RESERVE_BYTES = 8 * 2**20


def human_size(count: float) -> str:
    """1536 -> "1.5 KB"; sizes in the units people read on their file manager (powers of 1000)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the disk holding `path` (or its nearest existing parent); None if unknown."""
    path = Path(path)
    for candidate in (path, *path.parents):
        try:
            stats = os.statvfs(candidate)
        except OSError:
            continue
        return stats.f_bavail * stats.f_frsize
    return None


def space_problem(path: str | Path, needed: int, what: Problem | str) -> Problem | None:
    """A sentence when writing `needed` bytes at `path` would leave less than RESERVE_BYTES free, or
    None when it fits (or the free space cannot be known). `what` names the write ("unpacking the
    upload", "checkpoint step-000040")."""
    free = free_bytes(path)
    if free is None or needed + RESERVE_BYTES <= free:
        return None
    return Problem("disk_space_short", "{what} needs about {needed} on the disk holding {folder}, which has {free} "
                   "free. Free some space, then try again.", what=what, needed=human_size(needed + RESERVE_BYTES),
                   folder=str(path), free=human_size(free))


def tree_size(folder: str | Path) -> int:
    """Bytes the files under `folder` take (symbolic links are not followed; unreadable parts skipped)."""
    total, stack = 0, [str(folder)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                continue
    return total


class FolderSize:
    """A folder's size, measured at most every `max_age_s` seconds (walking a work folder of many
    checkpoints takes a while, and the Train tab asks every two seconds)."""

    def __init__(self, folder: str | Path, max_age_s: float = 15.0) -> None:
        self.folder, self.max_age_s = Path(folder), max_age_s
        self._measured: tuple[float, int] | None = None
        self._lock = threading.Lock()

    def bytes(self) -> int:
        with self._lock:
            if self._measured is None or time.monotonic() - self._measured[0] > self.max_age_s:
                self._measured = (time.monotonic(), tree_size(self.folder))
            return self._measured[1]
