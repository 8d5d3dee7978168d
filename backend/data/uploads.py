"""Turning what a person uploads (a .zip of their folder, or loose files) into a data folder.

Uploaded archives are hostile until proven otherwise: members named "../../.bashrc" or "/etc/x",
symbolic links, or a few kilobytes that inflate to terabytes. Members are written only inside the
destination, links are never created, and sizes are capped, and checked against the free space on
the disk, before anything is written.
"""

from __future__ import annotations

import contextlib
import shutil
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from backend.data.schema import DataError
from backend.disk import space_problem
from backend.problems import Problem

MAX_UPLOAD_BYTES = 4 * 1024 ** 3   # unpacked size of one upload
MAX_UPLOAD_FILES = 50_000
_OUTSIDE = Problem("upload_outside", "the path leads outside the folder")


@dataclass(frozen=True)
class Unpacked:
    folder: Path
    files: int
    skipped: tuple[Problem, ...]  # "name: why" for each member or file left out (see leaving_out)


def leaving_out(name: str, reason: Problem) -> Problem:
    """One file or member left out of an upload, "name: why"."""
    return Problem("upload_left_out", "{file}: {reason}", file=name, reason=reason)


def unpack_upload(uploaded: Iterable[str | Path], destination: str | Path, *,
                  max_bytes: int = MAX_UPLOAD_BYTES, max_files: int = MAX_UPLOAD_FILES) -> Unpacked:
    """Copy loose files (by their base name) and unpack .zip files into `destination` (created;
    it must not exist yet, so two uploads never mix)."""
    folder = Path(destination)
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise DataError("upload_folder_exists", "{folder} already exists; uploads go into a new folder.",
                        folder=folder) from None
    folder = folder.resolve()
    try:
        return _unpack(list(map(Path, uploaded)), folder, max_bytes, max_files)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # a refused upload leaves nothing behind
        raise


def _unpack(uploaded: list[Path], folder: Path, max_bytes: int, max_files: int) -> Unpacked:
    written, skipped, budget = 0, [], max_bytes
    for item in uploaded:
        if item.suffix.lower() == ".zip":
            count, size, left_out = _unzip(item, folder, budget, max_files - written)
            written, budget = written + count, budget - size
            skipped.extend(left_out)
        elif item.is_file() and not item.name.startswith("."):
            size = item.stat().st_size
            if size > budget:
                raise DataError("upload_too_large", "The upload is larger than {limit}.", limit=_size(max_bytes))
            short = space_problem(folder, size, Problem("space_copy", "Copying {file}", file=item.name))
            if short:
                raise DataError(short)
            shutil.copyfile(item, folder / item.name)
            written, budget = written + 1, budget - size
        else:
            skipped.append(leaving_out(item.name, Problem("upload_not_regular", "not a regular file")))
    if not written:
        raise DataError("upload_empty", "The upload held no files.")
    return Unpacked(folder, written, tuple(skipped))


def _unzip(archive: Path, folder: Path, budget: int, max_files: int) -> tuple[int, int, list[Problem]]:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError("zip_unreadable", "{archive} is not a readable .zip file ({detail}).",
                        archive=archive.name, detail=str(err)) from None
    with zf:
        members, skipped = [], []
        for info in zf.infolist():
            name = info.filename
            if info.is_dir():
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                skipped.append(leaving_out(name, Problem("upload_symlink", "symbolic links are not unpacked")))
                continue
            parts = PurePosixPath(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                skipped.append(leaving_out(name, _OUTSIDE))
                continue
            if parts and (parts[0] == "__MACOSX" or parts[-1].startswith(".")):
                continue  # Finder's resource forks and hidden files: never data
            members.append((info, PurePosixPath(*parts)))
        total = sum(info.file_size for info, _ in members)
        if total > budget:
            raise DataError("zip_too_large", "{archive} unpacks to {size}, more than the {budget} an "
                            "upload may still hold.", archive=archive.name, size=_size(total),
                            budget=_size(budget))
        if len(members) > max_files:
            raise DataError("zip_too_many_files", "{archive} holds {count} files, more than {limit}.",
                            archive=archive.name, count=len(members), limit=max_files)
        short = space_problem(folder, total, Problem("space_unpack", "Unpacking {archive}", archive=archive.name))
        if short:
            raise DataError(short)
        written = 0
        for info, relative in members:
            target = (folder / relative).resolve()
            if not target.is_relative_to(folder):
                skipped.append(leaving_out(info.filename, _OUTSIDE))
                continue
            # zipfile stops at the declared size (and checks the CRC), so a member whose header
            # lies about its size cannot fill the disk past the budget checked above.
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink)
            except (zipfile.BadZipFile, EOFError) as err:
                target.unlink(missing_ok=True)
                skipped.append(leaving_out(info.filename, Problem("upload_damaged", "damaged in the archive "
                                                                  "({detail})", detail=str(err))))
                continue
            except OSError as err:  # "a" and "a/b" both, a name too long for the disk, ...
                with contextlib.suppress(OSError):  # a half-written file, where there is one
                    target.unlink(missing_ok=True)
                skipped.append(leaving_out(info.filename, Problem("upload_unwritable", "cannot be written here "
                                                                  "({detail})", detail=err.strerror or str(err))))
                continue
            written += 1
        return written, total, skipped



def _size(count: int) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e8 else f"{count / 1e6:.1f} MB"
