"""Where records come from: the Dataset tab's sources (the bundled sample, --data, a path on the
server, an upload, the hub), a reader chosen for a folder, and several sources put together."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from backend.data.foodieqa import FOODIEQA_FILES, read_bundled_sample, read_foodieqa_folder
from backend.data.formats import SeveralDataSets
from backend.data.hub import read_foodieqa_hub
from backend.data.image_checks import ImageCheck
from backend.data.library import check_name, new_upload_folder, prune_upload, upload_data_root
from backend.data.own_data import read_bundled_own_data, read_own_data
from backend.data.schema import DataError, ReadResult, Record, ReportLine
from backend.data.uploads import unpack_upload
from backend.problems import Problem


def read_data_folder(path: str | Path, *, allow_absolute: bool = False, scratch: Path | None = None,
                     pick: str = "", image_check: ImageCheck = "full") -> ReadResult:
    """FoodieQA's layout if the folder holds any of its files, otherwise own data in any format
    formats/ reads (a file, or a folder holding one; SeveralDataSets when it holds several).
    `allow_absolute`: absolute picture paths are followed (data the person running the app opened from
    the server's disk; never an upload)."""
    target = Path(path).expanduser()
    if target.is_dir() and any((target / name).exists() for name in FOODIEQA_FILES.values()):
        return read_foodieqa_folder(target)
    if not target.exists():
        raise DataError("nothing_at", "There is nothing at {path}.", path=target)
    return read_own_data(target, image_check=image_check, allow_absolute=allow_absolute, scratch=scratch, pick=pick)


def combine_results(results: Iterable[ReadResult]) -> ReadResult:
    """Several sources as one: records in order, an id seen before is reported and skipped."""
    results = list(results)
    if not results:
        raise DataError("no_source", "No data source was chosen.")
    records: list[Record] = []
    problems: list[ReportLine] = []
    seen: dict[str, str] = {}
    for result in results:
        problems.extend(result.problems)
        for record in result.records:
            if record.id in seen:
                problems.append(ReportLine(record.origin or str(result.root), None, record.id, Problem(
                    "record_id_taken", "The id {id} is already used by {origin}. The record was skipped.",
                    id=record.id, origin=seen[record.id])))
                continue
            seen[record.id] = record.origin or str(result.root)
            records.append(record)
    sources = sorted({r.source for r in results})
    return ReadResult(tuple(records), tuple(problems), results[0].root, "+".join(sources))


# Where the Dataset tab can load records from.
SOURCE_KINDS = ("sample", "own_example", "data", "folder", "upload", "hub")


class SourceIncomplete(DataError):
    """A source the person has not finished choosing: no path typed, no file uploaded, no --data."""


@dataclass(frozen=True)
class LoadedSource:
    result: ReadResult
    left_out: tuple[Problem, ...] = ()  # files an upload left out, each saying which and why
    upload_folder: Path | None = None  # an upload's folder: its pictures, kept while they are shown


def allowed_path(path: str, roots: Sequence[Path] | None) -> Path:
    """`path` (as typed) if it lies inside one of `roots` once links are followed (None: anywhere);
    DataError if not. Asked before the path is read, and said the same whether it exists or not, so
    a visitor learns nothing about the disk outside the roots."""
    target = Path(path.strip()).expanduser()
    if roots is None:
        return target
    real = Path(os.path.realpath(target))
    if any(real.is_relative_to(os.path.realpath(root)) for root in roots):
        return target
    if not roots:
        raise DataError("path_none_allowed", "This server loads no data by path (it asks for a login and was "
                        "started without --data or --data-root); upload the data instead.")
    raise DataError("path_not_allowed", "This server loads data by path only from {roots}; {path} is not inside "
                    "them.", roots=", ".join(map(str, roots)), path=path.strip())


def scratch_folder(workdir: Path) -> Path:
    """Where pictures that come as bytes (base64 in a data file, a `datasets` image column) are written."""
    return Path(workdir).resolve() / "data-pictures"  # not under cache/, which the page serves


def read_source(kind: str, path: str | None, files: list[str] | None, workdir: Path, data_folder: Path | None,
                visitor: str, roots: Sequence[Path] | None = None, *, pick: str = "",
                names: dict[str, str] | None = None, upload_folder: Path | None = None) -> LoadedSource:
    """The records of one of SOURCE_KINDS: `path` a folder or file on the server (for "folder"; only
    inside `roots` unless that is None), `files` uploaded files (for "upload", unpacked into a folder
    of the work folder named after `visitor`; `names` gives a file its relative name in the folder it
    was uploaded from; once read, only the pictures its records show are kept).
    `pick`: which data set, where the source offers several (SeveralDataSets names them); an upload
    already unpacked (`upload_folder`) is then read again rather than unpacked twice.
    SourceIncomplete when the choice lacks what the source needs; DataError when the source cannot be
    read. Pictures of the server's own folders may be named by absolute paths; an upload's never."""
    server = dict(allow_absolute=True, scratch=scratch_folder(workdir), pick=pick, image_check="auto")
    if kind == "sample":
        return LoadedSource(read_bundled_sample())
    if kind == "own_example":
        return LoadedSource(read_bundled_own_data())
    if kind == "data":
        if data_folder is None:
            raise SourceIncomplete("source_no_data", "This app was started without --data; pick another source.")
        return LoadedSource(read_data_folder(data_folder, **server))
    if kind == "folder":
        if not (path or "").strip():
            raise SourceIncomplete("source_no_path", "Type the path of a folder or a file on this server first.")
        return LoadedSource(read_data_folder(allowed_path(path, roots), **server))
    if kind == "upload":
        if not files:
            raise SourceIncomplete("source_no_upload", "Choose the files to upload first (a .zip of your folder, or a "
                            ".json / .csv with its pictures).")
        upload = dict(server, allow_absolute=False)
        if upload_folder is not None and Path(upload_folder).is_dir():
            result = read_data_folder(upload_data_root(upload_folder), **upload)
            return LoadedSource(result, upload_folder=kept_pictures(Path(upload_folder), result))
        unpacked = unpack_upload(files, new_upload_folder(workdir, visitor), names=names)
        try:
            result = read_data_folder(upload_data_root(unpacked.folder), **upload)
        except SeveralDataSets as err:
            err.folder = unpacked.folder  # the person picks one of them next: read from here again
            raise
        except BaseException:
            shutil.rmtree(unpacked.folder, ignore_errors=True)  # nothing of it is shown: nothing is kept
            raise
        return LoadedSource(result, tuple(unpacked.skipped), kept_pictures(unpacked.folder, result))
    if kind == "hub":
        return LoadedSource(read_foodieqa_hub(Path(workdir) / "foodieqa-hub"))
    raise SourceIncomplete("source_unknown", "Unknown source {source!r}; pick one of the listed sources.", source=kind)


def suggested_name(kind: str, path: str | None) -> str:
    """A training-set name for a freshly loaded source (the person may change it)."""
    if kind == "folder" and path:
        try:
            return check_name(Path(path.strip()).expanduser().stem)
        except DataError:
            return "folder"
    return {"sample": "sample", "own_example": "own-example", "data": "data", "upload": "upload",
            "hub": "foodieqa"}.get(kind, "my-set")


def kept_pictures(folder: Path, result: ReadResult) -> Path:
    """`folder` (an unpacked upload), with only the pictures `result`'s records show left in it."""
    prune_upload(folder, {picture for record in result.records for picture in record.images})
    return folder


def first_source(workdir: Path, data_folder: Path | None) -> tuple[str, LoadedSource, Problem | None]:
    """What the Dataset tab opens on: the --data folder when the app was started with one (the person
    running it chose that folder), else the bundled sample. A --data folder that cannot be read (or that
    offers several data sets to pick from) opens on the sample, with the reason."""
    if data_folder is not None:
        try:
            return "data", read_source("data", None, None, workdir, data_folder, "startup"), None
        except DataError as err:
            return "sample", LoadedSource(read_bundled_sample()), err.problem
    return "sample", LoadedSource(read_bundled_sample()), None


def upload_names(files: list[str], listed: list[dict] | None) -> dict[str, str]:
    """Each uploaded file's relative name in the folder it came from, from what the page listed when
    the folder was picked ([{"name": "my-dishes/照片/红烧肉.jpg", "size": 12345}, ...]): matched by
    base name and size, since the upload itself keeps base names only (Gradio's File)."""
    found: dict[str, str] = {}
    left = [entry for entry in listed or [] if isinstance(entry, dict) and isinstance(entry.get("name"), str)]
    for path in files:
        target = Path(path)
        try:
            size = target.stat().st_size
        except OSError:
            continue
        for entry in left:
            base = entry["name"].replace("\\", "/").rsplit("/", 1)[-1]
            if entry.get("size") == size and (base == target.name or _kept_characters(base) == target.name):
                found[str(path)] = entry["name"]
                left.remove(entry)
                break
    return found


def _kept_characters(name: str) -> str:
    """A file name as Gradio stores an upload under (letters, digits, "._- " only)."""
    return "".join(ch for ch in name if ch.isalnum() or ch in "._- ")
