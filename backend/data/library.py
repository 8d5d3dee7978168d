"""The app's own data library in the work folder: uploaded data and saved training sets.

    <workdir>/uploads/<stamp>-<session>/   what one upload unpacked to (uploads.unpack_upload): kept
                                           only while needed (see prune_upload, remove_upload)
    <workdir>/datasets/<name>/             a folder written by split.build_training_set:
        train.json, heldout.json, train_questions.json, heldout_questions.json, split.json

The Dataset tab saves training sets here and the Train tab lists <workdir>/datasets/*/split.json,
so that layout is a contract between the two. A name is one plain folder name: it can never lead
outside <workdir>/datasets/.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from backend.data.conversion import to_training_samples
from backend.data.foodieqa import FOODIEQA_FILES
from backend.data.formats import EXPORTS, export
from backend.data.schema import CONVERSATION, DataError, Record
from backend.data.split import GROUPINGS, MANIFEST, TrainingSet, broken_pictures, build_training_set
from backend.data.terms import require_terms
from backend.disk import space_problem
from backend.problems import Problem

log = logging.getLogger(__name__)

DATASETS_DIR = "datasets"
UPLOADS_DIR = "uploads"
MAX_NAME_LENGTH = 64
# Letters (any script, so "川菜-练习" is fine), digits, "_", "-" and "."; starting with a letter or
# a digit, so never "." / ".." / a hidden folder, and never a path separator.
_NAME_RE = re.compile(r"^[^\W_][\w.-]*$")
_DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv", ".xlsx")


def datasets_root(workdir: str | Path) -> Path:
    return Path(workdir).resolve() / DATASETS_DIR


def check_name(name: str | None) -> str:
    """The name, stripped, if it can be a training set's folder name; DataError with a sentence if not."""
    name = (name or "").strip()
    if not name:
        raise DataError("set_name_empty", "Give the training set a name.")
    if len(name) > MAX_NAME_LENGTH:
        raise DataError("set_name_long", "The name is {length} characters long; keep it to {limit}.",
                        length=len(name), limit=MAX_NAME_LENGTH)
    if not _NAME_RE.fullmatch(name):
        raise DataError("set_name_bad", "{name!r} cannot be a training set's name: use letters, digits, "
                        "'-', '_' and '.', starting with a letter or a digit (no '/', no spaces).", name=name)
    return name


def check_job_name(name: str | None) -> str:
    """A job's name as a person typed it, stripped ("" for none: the form names the job itself), under
    the rules of a training set's name; DataError with a sentence if it breaks them."""
    name = (name or "").strip()
    if len(name) > MAX_NAME_LENGTH:
        raise DataError("job_name_long", "The job's name is {length} characters long; keep it to {limit}.",
                        length=len(name), limit=MAX_NAME_LENGTH)
    if name and not _NAME_RE.fullmatch(name):
        raise DataError("job_name_bad", "{name!r} cannot be a job's name: use letters, digits, '-', '_' and '.', "
                        "starting with a letter or a digit (no '/', no spaces).", name=name)
    return name


def training_set_folder(workdir: str | Path, name: str | None) -> Path:
    """<workdir>/datasets/<name>, refusing (DataError) any name that is not one plain folder name."""
    name = check_name(name)
    root = datasets_root(workdir)
    folder = (root / name).resolve()
    if folder.parent != root:  # belt and braces: the pattern above already rules this out
        raise DataError("set_name_outside", "{name!r} leads outside {root}.", name=name, root=root)
    return folder


def list_training_sets(workdir: str | Path) -> list[tuple[str, Path, dict[str, Any]]]:
    """(name, folder, manifest) of every complete training set, by name. A folder without a
    readable split.json (being written, or damaged) is left out and logged."""
    root = datasets_root(workdir)
    if not root.is_dir():
        return []
    found = []
    for manifest_path in sorted(root.glob(f"*/{MANIFEST}")):
        folder = manifest_path.parent
        if folder.name.startswith("."):
            continue
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            log.warning("skipping training set %s: %s", folder, err)
            continue
        if not isinstance(manifest, dict):
            log.warning("skipping training set %s: its manifest is not a JSON object", folder)
            continue
        found.append((folder.name, folder, manifest))
    return found


def new_upload_folder(workdir: str | Path, session: str | None = None) -> Path:
    """A fresh, not yet existing <workdir>/uploads/<time>-<session>-<random> for one upload."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    owner = re.sub(r"[^A-Za-z0-9]", "", session or "")[:8] or "api"
    return Path(workdir).resolve() / UPLOADS_DIR / f"{stamp}-{owner}-{uuid.uuid4().hex[:6]}"


def prune_upload(folder: str | Path, keep: set[Path]) -> int:
    """Delete every file of an unpacked upload but the pictures in `keep` (the ones its records show),
    once its records are read: the data files are in memory now, and anything else (a 200 MB member
    of a zip bomb, files no record names) has no use. Folders stay, so the upload's root still is
    where its records came from. Returns the bytes freed."""
    keep_real = {os.path.realpath(p) for p in keep}
    freed = 0
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if os.path.realpath(path) in keep_real:
                continue
            try:
                freed += os.lstat(path).st_size
                os.unlink(path)
            except OSError as err:
                log.warning("could not delete %r from an upload: %s", path, err)
    return freed


def remove_upload(workdir: str | Path, folder: str | Path | None) -> None:
    """Delete an unpacked upload that is no longer shown (its visitor loaded other data, or left).
    Only a folder under <workdir>/uploads/ is ever deleted."""
    if folder is None:
        return
    root = Path(workdir).resolve() / UPLOADS_DIR
    folder = Path(folder).resolve()
    if folder.parent == root:
        shutil.rmtree(folder, ignore_errors=True)


def clear_uploads(workdir: str | Path) -> None:
    """Delete every unpacked upload (at start: the visitors who loaded them are gone)."""
    shutil.rmtree(Path(workdir).resolve() / UPLOADS_DIR, ignore_errors=True)


def is_upload(path: str | Path, workdir: str | Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(workdir).resolve() / UPLOADS_DIR)


def upload_data_root(folder: str | Path) -> Path:
    """Where the data of an unpacked upload starts: a zip of "my-dishes/" unpacks to one folder
    holding everything, so step into lone sub-folders until a data file (or several entries) shows."""
    folder = Path(folder)
    for _ in range(8):
        entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
        has_data = any(p.is_file() and (p.suffix.lower() in _DATA_SUFFIXES or p.name in FOODIEQA_FILES.values())
                       for p in entries)
        if has_data or len(entries) != 1 or not entries[0].is_dir() or entries[0].is_symlink():
            return folder
        folder = entries[0]
    return folder


class SaveRefused(DataError):
    """A save asked for with values it cannot take (a held-out share out of range, a seed that is not a
    whole number) or over an existing set without asking to replace it."""


def save_training_set(workdir: str | Path, records: Sequence[Record], *, name: str, tasks: Sequence[str],
                      lang: str, heldout_share: object, seed: object, replace: bool = False,
                      accept_terms: bool = False, group_by: str = "auto", column: str = "") -> TrainingSet:
    """Split `records` by dish (or by `group_by`, split.GROUPINGS) and save them as the training set
    <workdir>/datasets/<name>: the Dataset tab's "Save training set". `heldout_share` (0..0.5) and
    `seed` (a whole number) come as a form sends them. SaveRefused for such values and for an existing
    set not asked to be replaced; DataError (TermsNotAccepted: FoodieQA without its terms accepted) when
    the set cannot be made. Records whose pictures do not decode are left out (the manifest's left_out)."""
    try:
        share = float(heldout_share)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        share = -1.0
    if not 0.0 <= share <= 0.5:
        raise SaveRefused("heldout_share", "The held-out share must be between 0 and 0.5.")
    seed_number = whole_number(0 if seed is None else seed)
    if seed_number is None:
        raise SaveRefused("seed_not_whole", "The seed must be a whole number.")
    target = training_set_folder(workdir, name)
    existed = target.exists()
    if existed and any(target.iterdir()) and not replace:
        raise SaveRefused("set_exists", "A training set named {name} already exists: choose to replace it, or "
                        "pick another name.", name=target.name)
    if group_by not in GROUPINGS:
        raise SaveRefused("split_grouping_unknown", "Keep together one of: {choices}.", choices=", ".join(GROUPINGS))
    require_terms(records, accept_terms)
    chosen = [r for r in records if r.task == CONVERSATION or r.task in set(tasks)]
    # Pictures a large data set's reading only glanced at (image_checks "auto") are decoded now: a broken
    # one costs its record here, not the training run later.
    broken = broken_pictures(chosen)
    kept = [r for r in chosen if r.id not in broken]
    try:
        if any(is_upload(p, workdir) for r in kept for p in r.images):
            kept = pictures_copied_into(target, kept, kept)
        return build_training_set(kept, target, heldout_ratio=share, seed=seed_number, tasks=tuple(tasks),
                                  lang=lang or "zh", accept_terms=accept_terms, group_by=group_by, column=column,
                                  left_out=broken)
    except BaseException:
        if not existed:  # a set that could not be made leaves nothing behind
            shutil.rmtree(target, ignore_errors=True)
        raise



def pictures_copied_into(target: Path, records: Sequence[Record], chosen: Sequence[Record]) -> list[Record]:
    """`records`, with the pictures of the `chosen` ones copied into <target>/images (in their layout
    under the upload) and pointing there.

    Why a copy: an unpacked upload lives only while its visitor looks at it (remove_upload), while a
    saved set must outlive both; a set saved from a folder on the server keeps pointing at that
    folder, which the app does not own. Only the chosen records' pictures are copied (a set of the
    filtered records takes only theirs), into a hidden folder first, so the set never points at a
    half-copied folder; the free space is checked before the first byte."""
    pictures = sorted({os.path.realpath(p) for r in chosen for p in r.images})
    root = os.path.commonpath([os.path.dirname(p) for p in pictures])
    needed = sum(os.path.getsize(p) for p in pictures)
    short = space_problem(target.parent, needed, Problem("space_pictures", "Copying the set's {count} pictures",
                                                         count=len(pictures)))
    if short:
        raise DataError(short)
    staging = target.parent / f".{target.name}.images-{uuid.uuid4().hex[:6]}"
    try:
        for picture in pictures:
            copy = staging / os.path.relpath(picture, root)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(picture, copy)
        target.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target / "images", ignore_errors=True)
        os.rename(staging, target / "images")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    moved = {picture: target / "images" / os.path.relpath(picture, root) for picture in pictures}
    chosen_ids = {id(r) for r in chosen}
    return [replace(r, images=tuple(moved[os.path.realpath(p)] for p in r.images)) if id(r) in chosen_ids else r
            for r in records]


def whole_number(value: object) -> int | None:
    """`value` as an int if it is a whole number (5, 5.0, "5"), else None."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


EXPORTS_DIR = "exports"


def export_records(workdir: str | Path, records: Sequence[Record], key: str, name: str | None) -> tuple[Path, int]:
    """Write the records as conversations in the format `key` (backend.data.formats.EXPORTS) to
    <workdir>/exports/<name>/<name><suffix>: the Dataset tab's "Export". Multiple-choice questions go as
    the training samples a saved set would hold them as; FoodieQA's only with its terms accepted, which an
    export never assumes (TermsNotAccepted). Pictures are named by their absolute paths on this server."""
    if key not in EXPORTS:
        raise SaveRefused("export_format_unknown", "Export to one of: {choices}.", choices=", ".join(EXPORTS))
    name = check_name(name)
    samples = to_training_samples(records, tasks=("sivqa", "mivqa", "textqa"))
    if not samples:
        raise DataError("data_export_nothing", "There is nothing to export: load some data first.")
    folder = (Path(workdir).resolve() / EXPORTS_DIR / name)
    path = export(samples, key, folder / f"{name}{EXPORTS[key].suffix}", folder)
    return path, len(samples)
