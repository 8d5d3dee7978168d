"""Writing records out: LLaVA conversation JSON for training, and our own record JSON for the
questions a split keeps (so scoring later sees exactly the held-out multiple-choice questions).

Every path written is relative to an image root that the caller records (the split manifest does),
so a samples folder can move with its pictures. Files are written to a temporary name and renamed,
so a reader never sees half a file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from backend.data.formats import llava
from backend.data.safe_paths import UnsafePath, relative_name, resolve_inside
from backend.data.schema import CONVERSATION, DataError, Record, Turn

# Extra keys on a LLaVA row that trainers ignore and our reader reads back (formats/llava.py).
LLAVA_METADATA_KEYS = ("source", "dish_id", "food_name", "cuisine", "region", "question_type")


def llava_row(record: Record, image_root: Path) -> dict[str, Any]:
    """One conversation record as a LLaVA row: "image" for one picture, "images" for several."""
    if record.task != CONVERSATION:
        raise ValueError(f"{record.id} is a {record.task} question; convert it to a training "
                         "sample first (to_training_samples)")
    return llava.row(record, Path(image_root).resolve())


def export_llava(records: Iterable[Record], path: str | Path, image_root: str | Path) -> Path:
    """Write conversation records as a LLaVA JSON list, pictures relative to `image_root`."""
    return llava.write(list(records), Path(path), Path(image_root))


def record_to_dict(record: Record, image_root: Path) -> dict[str, Any]:
    """A record of any task as plain JSON, pictures relative to `image_root`."""
    return {
        "id": record.id, "task": record.task, "source": record.source,
        "question": record.question, "question_en": record.question_en,
        "choices": list(record.choices), "choices_en": list(record.choices_en),
        "answer": record.answer, "images": [_relative(image_root, p) for p in record.images],
        "question_type": record.question_type, "cuisine": record.cuisine, "region": record.region,
        "food_name": record.food_name, "dish_id": record.dish_id,
        "related_dish_ids": list(record.related_dish_ids),
        "turns": [{"from": t.role, "value": t.text} for t in record.turns], "system": record.system,
        "origin": record.origin,
    }


def record_from_dict(data: dict[str, Any], image_root: Path) -> Record:
    """The inverse of record_to_dict; pictures stay confined to `image_root` (DataError if not)."""
    try:
        images = tuple(resolve_inside(image_root, p) for p in data.get("images", []))
        return Record(
            id=str(data["id"]), task=str(data["task"]), source=str(data["source"]),
            question=data.get("question", ""), question_en=data.get("question_en", ""),
            choices=tuple(data.get("choices", ())), choices_en=tuple(data.get("choices_en", ())),
            answer=data.get("answer"), images=images,
            question_type=data.get("question_type", ""), cuisine=data.get("cuisine", ""),
            region=data.get("region", ""), food_name=data.get("food_name", ""),
            dish_id=data.get("dish_id", ""), related_dish_ids=tuple(data.get("related_dish_ids", ())),
            turns=tuple(Turn(t["from"], t["value"]) for t in data.get("turns", ())), system=data.get("system", ""),
            origin=data.get("origin", ""))
    except UnsafePath as err:
        raise DataError("saved_record_outside", "A saved record ({id}) names a picture outside {root}: "
                        "{reason}.", id=data.get("id"), root=image_root, reason=err.problem) from None
    except (KeyError, TypeError, AttributeError) as err:
        raise DataError("saved_record_damaged", "A saved record is damaged ({detail}).",
                        detail=f"{err.__class__.__name__}: {err}") from None


def _relative(image_root: Path, path: Path) -> str:
    if not path.is_relative_to(image_root):
        raise ValueError(f"the picture {path} is not inside the image root {image_root}")
    return relative_name(image_root, path)
