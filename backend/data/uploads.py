"""Turning what a person uploads (a .zip of their folder, or loose files) into a data folder.

Uploaded archives are hostile until proven otherwise: members named "../../.bashrc" or "/etc/x",
symbolic links, or a few kilobytes that inflate to terabytes. Members are written only inside the
destination, links are never created, and sizes are capped, and checked against the free space on
the disk, before anything is written. Names an older zip tool stored in GBK (no UTF-8 flag, bit 11)
are decoded as such, not as cp437's mojibake.

Loose files keep the folders they came from: by the relative name the browser gave (a folder
upload; `names`), and otherwise where a data file among them names them ("照片/红烧肉.jpg"), since
a browser sends only base names when several files are picked.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from backend.data.formats.loading import DATA_SUFFIXES, load_sample
from backend.data.safe_paths import MAX_DATA_FILE_BYTES
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


def unpack_upload(uploaded: Iterable[str | Path], destination: str | Path, *, names: dict[str, str] | None = None,
                  max_bytes: int = MAX_UPLOAD_BYTES, max_files: int = MAX_UPLOAD_FILES) -> Unpacked:
    """Copy loose files and unpack .zip files into `destination` (created; it must not exist yet, so
    two uploads never mix). A loose file goes where `names` (its path -> its relative name in the
    folder it came from) says, else where a data file among them names it, else by its base name."""
    folder = Path(destination)
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise DataError("upload_folder_exists", "{folder} already exists; uploads go into a new folder.",
                        folder=folder) from None
    folder = folder.resolve()
    try:
        return _unpack(list(map(Path, uploaded)), folder, max_bytes, max_files, names or {})
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # a refused upload leaves nothing behind
        raise


def _unpack(uploaded: list[Path], folder: Path, max_bytes: int, max_files: int, names: dict[str, str]) -> Unpacked:
    written, skipped, budget = 0, [], max_bytes
    by_base_name: list[Path] = []
    for item in uploaded:
        name = names.get(str(item)) or item.name
        if item.suffix.lower() == ".zip":
            count, size, left_out = _unzip(item, folder, budget, max_files - written)
            written, budget = written + count, budget - size
            skipped.extend(left_out)
        elif item.is_file() and not item.name.startswith("."):
            relative = _relative(name)
            if relative is None:
                skipped.append(leaving_out(name, _OUTSIDE))
                continue
            size = item.stat().st_size
            if size > budget:
                raise DataError("upload_too_large", "The upload is larger than {limit}.", limit=_size(max_bytes))
            if item.suffix.lower() in DATA_SUFFIXES and size > MAX_DATA_FILE_BYTES:
                skipped.append(leaving_out(name, Problem("upload_data_file_large", "a data file of {size}, more than "
                                                         "the {limit} one may be", size=_size(size),
                                                         limit=_size(MAX_DATA_FILE_BYTES))))
                continue
            short = space_problem(folder, size, Problem("space_copy", "Copying {file}", file=item.name))
            if short:
                raise DataError(short)
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(item, target)
            if len(relative.parts) == 1:
                by_base_name.append(target)
            written, budget = written + 1, budget - size
        else:
            skipped.append(leaving_out(item.name, Problem("upload_not_regular", "not a regular file")))
    if not written:
        raise DataError("upload_empty", "The upload held no files.")
    if by_base_name:
        place_by_reference(folder, by_base_name)
    return Unpacked(folder, written, tuple(skipped))


def _relative(name: str) -> PurePosixPath | None:
    """A relative name from the browser as a path inside the upload, or None if it would leave it."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        return None
    parts = [p for p in parts if p not in (".", "")]
    return PurePosixPath(*parts) if parts else None


# A picture's path inside any text of a data file: "照片/红烧肉.jpg", or inside "<img>照片/a.jpg</img>".
_PICTURE_PATH = re.compile(r"[^\s\"'<>,;|\[\]{}()]+\.(?:jpe?g|png|gif|webp|bmp|tiff?)", re.IGNORECASE)


def place_by_reference(folder: Path, loose: list[Path]) -> int:
    """Copy each loose file sent by its base name to where a data file of the upload names it
    ("照片/红烧肉.jpg" for a 红烧肉.jpg sent alone); returns how many were placed."""
    pictures = {p.name: p for p in loose if p.suffix.lower() not in DATA_SUFFIXES}
    placed = 0
    for data in (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES):
        sample = load_sample(data, data.name)
        for text in _strings([*sample.rows, sample.value]):
            for found in _PICTURE_PATH.findall(text):
                relative = _relative(found)
                source = pictures.get(relative.name) if relative is not None else None
                if source is None or len(relative.parts) == 1:
                    continue
                target = (data.parent / relative).resolve()
                if target.is_relative_to(folder) and not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with contextlib.suppress(OSError):
                        shutil.copyfile(source, target)
                        placed += 1
    return placed


def _strings(value, depth: int = 0):
    """Every text inside a parsed JSON value or table row."""
    if isinstance(value, str):
        yield value
    elif depth < 32 and isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item, depth + 1)
    elif depth < 32 and isinstance(value, dict):
        for item in value.values():
            yield from _strings(item, depth + 1)


def _unzip(archive: Path, folder: Path, budget: int, max_files: int) -> tuple[int, int, list[Problem]]:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError("zip_unreadable", "{archive} is not a readable .zip file ({detail}).",
                        archive=archive.name, detail=str(err)) from None
    with zf:
        members, skipped = [], []
        for info in zf.infolist():
            name = member_name(info)
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
                skipped.append(leaving_out(member_name(info), _OUTSIDE))
                continue
            # zipfile stops at the declared size (and checks the CRC), so a member whose header
            # lies about its size cannot fill the disk past the budget checked above.
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink)
            except (zipfile.BadZipFile, EOFError) as err:
                target.unlink(missing_ok=True)
                skipped.append(leaving_out(member_name(info), Problem("upload_damaged", "damaged in the archive "
                                                                  "({detail})", detail=str(err))))
                continue
            except OSError as err:  # "a" and "a/b" both, a name too long for the disk, ...
                with contextlib.suppress(OSError):  # a half-written file, where there is one
                    target.unlink(missing_ok=True)
                skipped.append(leaving_out(member_name(info), Problem("upload_unwritable", "cannot be written here "
                                                                  "({detail})", detail=err.strerror or str(err))))
                continue
            written += 1
        return written, total, skipped



def member_name(info: zipfile.ZipInfo) -> str:
    """A member's name as its maker meant it. Without the UTF-8 flag (bit 11) zipfile decodes names as
    cp437; older Chinese zip tools (and Windows' own, before 2019) stored GBK there, so such a name is
    decoded again as UTF-8 (some tools leave the flag off) or GBK, and kept as it was otherwise."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        raw = info.filename.encode("cp437")
    except UnicodeEncodeError:
        return info.filename
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return info.filename


def _size(count: int) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e8 else f"{count / 1e6:.1f} MB"
