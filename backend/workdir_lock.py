"""One app per work folder: the first takes a lock, a second one is refused before it touches anything.

Two apps on one folder would each start a training worker and write the same caches and uploads.
The lock is fcntl.flock on <workdir>/app.lock, held by an open file for the life of the process: the
kernel drops it when the process ends in any way (SIGKILL included), so a stale lock cannot exist.
The file also says who holds it (pid, address), only to make the refusal a useful sentence.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO

LOCK_NAME = "app.lock"


class WorkdirBusy(RuntimeError):
    """Another app holds the work folder; the message says which one."""


class WorkdirUnusable(RuntimeError):
    """The work folder cannot be made or written (a file of that name, no permission, a read-only disk)."""


def hold(workdir: Path, address: str) -> IO[str]:
    """Lock `workdir` for this process; keep the returned file open for as long as the app runs."""
    path = workdir / LOCK_NAME
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        # Opened without truncating: a refused second app must not wipe the first one's details.
        handle = open(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+", encoding="utf-8")  # noqa: SIM115 (held)
    except OSError as err:
        reason = "a file of that name is there" if workdir.is_file() else err.strerror or err
        raise WorkdirUnusable(f"Cannot use {workdir} as the work folder ({reason}); give --workdir "
                              "a folder this user can create and write to.") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _describe(handle.read())
        handle.close()
        raise WorkdirBusy(f"Another Foodie Studio{holder} is already using the work folder {workdir}; "
                          "stop it first, or give this one its own --workdir.") from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "address": address}))
    handle.flush()
    return handle


def _describe(content: str) -> str:
    try:
        holder = json.loads(content)
        return f" (process {int(holder['pid'])}, {holder['address']})"
    except (ValueError, KeyError, TypeError):
        return ""  # written a moment ago and not filled in yet, or damaged: the folder is enough
