"""Shared pieces of the chat formats: a turn list read with a format's keys and role names, a row's
picture list, and the picture references an export writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backend.data.formats.conversation import SYSTEM
from backend.data.rows import RowFaults
from backend.data.schema import GPT, HUMAN, Record
from backend.problems import Problem

# Role names as the formats spell them: LLaVA/XTuner and InternVL (human/gpt), Qwen-VL, ShareGPT and
# OpenAI-style messages (user/assistant), and the system prompt.
ROLE_NAMES = {"human": HUMAN, "user": HUMAN, "gpt": GPT, "assistant": GPT, "system": SYSTEM}


def turn_list(value: Any, faults: RowFaults, *, field: str, role_key: str, text_key: str,
              names: dict[str, str] = ROLE_NAMES, text_alias: str = "") -> list[tuple[Any, Any]] | None:
    """The (role, text) pairs of a list of turn objects, roles named through `names`; None, with an
    error, when the list is missing or holds something that is no turn. `text_alias` is a second key
    the text may be under (InternVL's documentation writes some answers as "text")."""
    if not isinstance(value, list) or not value:
        if field == "conversations":
            faults.error(Problem("row_conversations_bad", "conversations is missing, empty or not a list"))
        else:
            faults.error(Problem("row_turns_bad", "{field} is missing, empty or not a list", field=field))
        return None
    pairs = []
    for position, turn in enumerate(value, start=1):
        if not isinstance(turn, dict):
            faults.error(Problem("row_turn_not_object", "turn {position} is not an object", position=position))
            continue
        role = turn.get(role_key)
        role = names.get(role.strip().lower(), role) if isinstance(role, str) else role
        text = turn.get(text_key)
        if text is None and text_alias:
            text = turn.get(text_alias)
        pairs.append((role, text))
    return pairs if len(pairs) == len(value) else None


def picture_list(row: dict, faults: RowFaults, keys: tuple[str, ...] = ("image", "images")) -> list[Any]:
    """A row's pictures from the first of `keys` it has: one path, or a list of them."""
    present = [key for key in keys if row.get(key) is not None]
    if len(present) > 1:
        faults.error(Problem("row_image_and_images", "the row has both image and images; keep one"))
        return []
    if not present:
        return []
    value = row[present[0]]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    faults.error(Problem("row_image_bad", "image is neither a path nor a list of paths"))
    return []


def picture_ref(path: Path, image_root: Path) -> str:
    """How an export names a picture: relative to `image_root` ("images/a.jpg"), or absolute when it
    lies elsewhere (a data set opened from the server's disk may name pictures anywhere on it)."""
    try:
        return path.relative_to(image_root).as_posix()
    except ValueError:
        return str(path)


def metadata(record: Record) -> dict[str, str]:
    """The fields beside the conversation that Foodie Studio reads back (trainers ignore them)."""
    return {key: getattr(record, key) for key in ("source", "dish_id", "food_name", "cuisine", "region",
                                                  "question_type") if getattr(record, key)}


def write_rows(records, path: Path, image_root: Path, what: str, row, write_file) -> Path:
    """Conversations only, each record as row(record, image root) makes it, written by write_file."""
    conversation_only(records, what)
    root = Path(image_root).resolve()
    return write_file(Path(path), [row(r, root) for r in records])


def conversation_only(records, what: str) -> None:
    for record in records:
        if not record.turns:
            raise ValueError(f"{record.id} is a {record.task} question; convert it to a training sample first "
                             f"(to_training_samples) to write it as {what}")
