"""The one interface every data format implements, and what its readers share.

Each format is a small module of this package holding one `FORMAT = Format(...)`:

    detect(sample) -> float      how sure it is that the file is written its way, from the content
                                 (0: not this format; 1: surely this one), never from the name alone
    read(sample, context) -> ReadResult
    write(records, path, image_root) -> Path    for the formats Foodie Studio exports to

`formats/__init__.py` lists them, asks each one's `detect` about a file and reads it with the
surest. A `Sample` is the file as parsed once (JSON list, JSON lines or a table); a `ReadContext`
says where its pictures may be and how thoroughly to check them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from backend.data.image_checks import ImageCheck, ImageChecker
from backend.data.safe_paths import ConfinedPaths, UnsafePath, relative_name
from backend.data.schema import SOURCE_OWN, DataError, ReadResult, Record, ReportLine

# How many rows detection looks at: enough to see a file's shape, few enough to cost nothing.
DETECT_ROWS = 200
# A picture given inline (base64 in a data: address) larger than this is refused with its row.
MAX_INLINE_PICTURE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Sample:
    """A data file as parsed once: its rows in order (dicts, or whatever a broken row holds), the
    line each row starts on (for messages), its table header, and what loading it found wrong."""

    path: Path
    name: str  # how the report names the file ("train.jsonl", "data/dishes.csv")
    layout: str  # "json" (one JSON value), "jsonl" (JSON lines), "table" (CSV, TSV, XLSX)
    rows: list[Any]
    lines: list[int]
    columns: tuple[str, ...] = ()
    problems: tuple[ReportLine, ...] = ()
    value: Any = None  # layout "json" holding an object rather than a list: the object

    def head(self, count: int = DETECT_ROWS) -> list[Any]:
        return self.rows[:count]


@dataclass
class ReadContext:
    """Where a reader may look for pictures and how it checks them.

    `root`: relative picture paths start here (the data file's folder). `allow_absolute`: absolute
    paths are followed too; only for data the person running the app opened from the server's own
    disk, never for an upload (which must stay inside its own folder). `scratch`: where pictures that
    come as bytes (a data: address, a `datasets` image column) are written, by content.
    `pick`: which data set to read where a file names several (LLaMA-Factory's dataset_info.json)."""

    root: Path
    allow_absolute: bool = False
    image_check: ImageCheck = "full"
    scratch: Path | None = None
    source: str = SOURCE_OWN
    pick: str = ""
    checker: ImageChecker = field(init=False)
    pictures: PictureResolver = field(init=False)
    verdicts: dict = field(init=False)  # picture reference -> (its files, its faults): see conversation._pictures

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.checker = ImageChecker(self.image_check)
        self.pictures = PictureResolver(self)
        self.verdicts = {}

    def for_root(self, root: Path) -> ReadContext:
        """The same context for pictures relative to another folder (a data set of dataset_info.json)."""
        return ReadContext(root, self.allow_absolute, self.image_check, self.scratch, self.source, self.pick)


@dataclass(frozen=True)
class Format:
    key: str  # "internvl": how code and manifests name it
    label: str  # "InternVL jsonl": how the page names it (the same in both languages: a name)
    detect: Callable[[Sample], float]
    read: Callable[[Sample, ReadContext], ReadResult]
    write: Callable[[Sequence[Record], Path, Path], Path] | None = None
    suffix: str = ".json"  # the file an export writes


class SeveralDataSets(DataError):
    """A file or folder that names several data sets (dataset_info.json, several data files): the
    person picks one. `choices` are (label, key) pairs; read again with pick=key."""

    def __init__(self, key: str, sentence: str, choices: Sequence[tuple[str, str]], **values: Any) -> None:
        super().__init__(key, sentence, **values)
        self.choices = tuple(choices)


class PictureResolver:
    """A row's picture reference -> the file it names, or UnsafePath saying why it is not followed.

    Relative paths stay inside the context's root (no "..", no symbolic link out: ConfinedPaths);
    absolute paths only where the context allows them; web addresses are never fetched; a data:
    address (base64, as OpenAI-style messages carry pictures) is written into the scratch folder."""

    def __init__(self, context: ReadContext) -> None:
        self.context = context
        self.root = context.root
        self._inside = ConfinedPaths(context.root)
        self._known: dict[str, Path | UnsafePath] = {}  # a data set names each picture many times
        self._names: dict[Path, str] = {}

    def resolve(self, value: object) -> Path:
        if not isinstance(value, str):
            return self._inside.resolve(value)  # raises the usual "not text"
        answer = self._known.get(value)
        if answer is None:
            try:
                answer = self._resolve(value)
            except UnsafePath as err:
                answer = err
            if not value.lower().startswith("data:"):  # inline pictures are not worth remembering
                self._known[value] = answer
        if isinstance(answer, UnsafePath):
            raise UnsafePath(answer.problem)
        return answer

    def name(self, path: Path) -> str:
        """How a picture is named relative to the root ("images/a.jpg"), remembered."""
        found = self._names.get(path)
        if found is None:
            found = self._names[path] = relative_name(self.root, path)
        return found

    def _resolve(self, value: str) -> Path:
        text = value.strip()
        lowered = text[:16].lower()
        if lowered.startswith("data:"):
            return self.store(decode_data_address(text))
        if lowered.startswith(("http://", "https://", "ftp://", "s3://", "gs://", "oss://")):
            raise UnsafePath("path_web", "it is a web address; Foodie Studio reads pictures from files, so "
                             "download them and name them by their path")
        if lowered.startswith("file://"):
            text = text[len("file://"):]
        if PurePosixPath(text.replace("\\", "/")).is_absolute() and self.context.allow_absolute:
            if "\x00" in text:
                raise UnsafePath("path_nul", "the path contains a NUL character")
            try:
                return Path(text).resolve()
            except (OSError, RuntimeError):
                raise UnsafePath("path_unresolvable", "it cannot be resolved (a loop of symbolic links, or a "
                                 "name too long)") from None
        return self._inside.resolve(text)

    def store(self, data: bytes) -> Path:
        """Bytes of a picture as a file in the scratch folder, named by their content (so the same
        picture given twice is one file, and reading again writes nothing)."""
        if len(data) > MAX_INLINE_PICTURE_BYTES:
            raise UnsafePath("picture_inline_large", "the picture given inline is {size:.0f} MB, more than the "
                             "{limit:.0f} MB a picture may be", size=len(data) / 1e6,
                             limit=MAX_INLINE_PICTURE_BYTES / 1e6)
        folder = self.context.scratch or Path(tempfile.gettempdir()) / "foodie-studio-pictures"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{hashlib.sha256(data).hexdigest()[:32]}{_suffix(data)}"
        if not target.is_file():
            fd, temp = tempfile.mkstemp(dir=folder, suffix=".part")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temp, target)
        return target.resolve()


def decode_data_address(text: str) -> bytes:
    """The bytes of "data:image/jpeg;base64,...", or UnsafePath."""
    head, _, payload = text.partition(",")
    if ";base64" not in head.lower():
        raise UnsafePath("picture_data_not_base64", "its data: address is not base64")
    if len(payload) > MAX_INLINE_PICTURE_BYTES * 4 // 3 + 8:
        raise UnsafePath("picture_inline_large", "the picture given inline is {size:.0f} MB, more than the "
                         "{limit:.0f} MB a picture may be", size=len(payload) * 3 / 4e6,
                         limit=MAX_INLINE_PICTURE_BYTES / 1e6)
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        raise UnsafePath("picture_data_broken", "its base64 data is damaged") from None


def _suffix(data: bytes) -> str:
    for signature, suffix in ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG", ".png"), (b"GIF8", ".gif"),
                              (b"BM", ".bmp"), (b"II*\x00", ".tif"), (b"MM\x00*", ".tif")):
        if data.startswith(signature):
            return suffix
    return ".webp" if data[8:12] == b"WEBP" else ".bin"


# --- detection helpers ------------------------------------------------------------------------------

def share(rows: Sequence[Any], fits: Callable[[Any], bool]) -> float:
    """The share of `rows` that `fits` accepts (0 for no rows)."""
    return sum(1 for row in rows if fits(row)) / len(rows) if rows else 0.0


def rows_sureness(sample: Sample, fits: Callable[[Any], bool], json: float, jsonl: float) -> float:
    """How sure a format of JSON rows is of `sample`: the share of rows it fits, weighed by layout (`json`: a
    JSON list, `jsonl`: JSON lines); 0 for a table, or a JSON object that is no such row."""
    if sample.layout == "table" or (sample.value is not None and not fits(sample.value)):
        return 0.0
    return (json if sample.layout == "json" else jsonl) * share(sample.head(), fits)


def is_turn_list(value: Any, role_key: str, text_key: str) -> bool:
    """A non-empty list of objects each with `role_key` (and, mostly, `text_key`)."""
    return (isinstance(value, list) and bool(value) and all(isinstance(t, dict) for t in value)
            and all(role_key in t for t in value))
