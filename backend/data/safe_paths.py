"""Paths from data files, confined to the data folder.

Every path inside a dataset file is untrusted: "../../etc/passwd", "/root/.ssh/id_rsa", or an
innocent-looking "images/a.jpg" that is a symbolic link to somewhere else. We resolve each one
(following links) and refuse anything that does not end up inside the data folder, before any
file is opened. Only regular files are ever read (a FIFO would block, a device never ends).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from backend.problems import ProblemError

# Data files (JSON lists, CSV) larger than this are refused rather than read into memory: FoodieQA's
# largest is about 1 MB, a big own dataset a few tens of MB.
MAX_DATA_FILE_BYTES = 256 * 1024 * 1024


class UnsafePath(ProblemError, ValueError):
    """A path from a data file that we will not follow; the message (a Problem) says why, as a
    clause that other sentences take in ("a.jpg was not read: it climbs out of ...")."""


def resolve_inside(root: Path, relative: object) -> Path:
    """The resolved path of `relative` under the already resolved `root`, or UnsafePath.

    Backslashes count as separators, so a Windows-made "images\\a.jpg" works and "..\\x" is caught.
    Plain string work and one realpath: a data set of 20,000 pictures resolves them all in a blink.
    """
    if not isinstance(relative, str):
        raise UnsafePath("path_not_text", "the path is not text")
    text = relative.strip()
    if not text:
        raise UnsafePath("path_empty", "the path is empty")
    if "\x00" in text:
        raise UnsafePath("path_nul", "the path contains a NUL character")
    posix = text.replace("\\", "/")
    if posix.startswith("/"):
        raise UnsafePath("path_absolute", "it is an absolute path; paths must be relative to the data folder")
    if ".." in posix.split("/"):
        raise UnsafePath("path_climbs", "it climbs out of the data folder ('..')")
    base = os.fspath(root)
    try:
        resolved = os.path.realpath(os.path.join(base, posix))
    except (OSError, ValueError):
        raise UnsafePath("path_unresolvable", "it cannot be resolved (a loop of symbolic links, or a name "
                         "too long)") from None
    if os.path.islink(resolved):  # realpath stops at a loop of links and returns a link
        raise UnsafePath("path_unresolvable", "it cannot be resolved (a loop of symbolic links, or a name "
                         "too long)")
    if resolved != base and not resolved.startswith(base.rstrip(os.sep) + os.sep):
        raise UnsafePath("path_outside", "it leads outside the data folder (through a symbolic link)")
    return Path(resolved)


class ConfinedPaths:
    """resolve_inside for one folder, remembering each answer: FoodieQA names 400 pictures some
    2,000 times, and resolving (a few system calls each) is most of the cost of indexing."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._known: dict[str, Path | UnsafePath] = {}
        self._folders: dict[str, str | None] = {}  # "images" -> its resolved path, None when it is refused

    def resolve(self, relative: object) -> Path:
        if not isinstance(relative, str):
            return resolve_inside(self.root, relative)  # raises; not worth remembering
        answer = self._known.get(relative)
        if answer is None:
            try:
                answer = self._in_known_folder(relative) or resolve_inside(self.root, relative)
            except UnsafePath as err:
                answer = err
            self._known[relative] = answer
        if isinstance(answer, UnsafePath):
            raise UnsafePath(answer.problem)
        return answer

    def _in_known_folder(self, relative: str) -> Path | None:
        """20,000 pictures in one folder: its path is resolved once, and each picture costs one lstat
        (a picture that is itself a symbolic link, or anything unusual, goes the long way: None)."""
        posix = relative.strip().replace("\\", "/")
        folder, _, name = posix.rpartition("/")
        if not name or name in (".", "..") or "\x00" in posix or posix.startswith("/") or ".." in folder.split("/"):
            return None
        if folder not in self._folders:
            try:
                resolved = resolve_inside(self.root, folder) if folder else Path(self.root)
                self._folders[folder] = os.fspath(resolved)
            except UnsafePath:
                self._folders[folder] = None
        base = self._folders[folder]
        if base is None:
            return None
        target = os.path.join(base, name)
        try:
            if stat.S_ISLNK(os.lstat(target).st_mode):
                return None
        except OSError:
            pass  # missing: the picture check says so
        return Path(target)


def relative_name(root: Path, path: Path) -> str:
    """How a path inside root is shown in reports and written to exports: "images/a.jpg"."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def read_regular_file(path: Path, limit: int = MAX_DATA_FILE_BYTES) -> bytes:
    """The bytes of a regular file, refusing FIFOs, devices and files over `limit`.

    O_NOFOLLOW on the last component closes the gap between checking a path and opening it: a file
    swapped for a symlink in between is refused instead of followed.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path.name} is not a regular file")
        if info.st_size > limit:
            raise OSError(f"{path.name} is {info.st_size / 1e6:.0f} MB, over the "
                          f"{limit / 1e6:.0f} MB limit for a data file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(limit + 1)
    finally:
        os.close(fd)


def read_head(path: Path, size: int) -> bytes:
    """The first `size` bytes of a regular file (for recognising picture formats)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        return os.read(fd, size)
    finally:
        os.close(fd)
