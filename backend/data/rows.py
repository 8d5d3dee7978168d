"""Small, forgiving accessors for one untrusted row (a dict from JSON, the hub or a CSV).

A row can hold anything: numbers where text belongs, null for a missing field (rows from the hub
come through Arrow, which fills absent keys with None), nested junk. These helpers turn each field
into the type we want or note in words what is wrong, so a parser reads as a list of fields.
"""

from __future__ import annotations

from typing import Any

# One text field (a question, a choice, a turn of a conversation) longer than this is refused with its
# row: far past any model's context, and a page of such rows would cost the browser megabytes.
MAX_TEXT_CHARS = 100_000


class RowFaults:
    """The errors (which cost the row) and warnings (which do not) found in one row."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, message: str) -> None:
        self.errors.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def present(row: dict[str, Any], key: str) -> bool:
    return row.get(key) is not None


def optional_text(row: dict[str, Any], key: str, faults: RowFaults) -> str:
    """The field as stripped text; "" when absent. Numbers are accepted as text (an id of 217)."""
    value = row.get(key)
    if value is None:
        return ""
    if isinstance(value, bool):
        faults.warn(f"{key} is true/false, not text; ignored")
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value.strip() if fits(value, key, faults) else ""
    faults.warn(f"{key} is not text; ignored")
    return ""


def required_text(row: dict[str, Any], key: str, faults: RowFaults) -> str:
    value = row.get(key)
    if value is None:
        faults.error(f"{key} is missing")
        return ""
    if not isinstance(value, str):
        faults.error(f"{key} is not text")
        return ""
    if not value.strip():
        faults.error(f"{key} is empty")
        return ""
    return value.strip() if fits(value, key, faults) else ""


def fits(value: str, what: str, faults: RowFaults) -> bool:
    """Whether a text is within MAX_TEXT_CHARS; an error for the row if not."""
    problem = too_long(value, what)
    if problem:
        faults.error(problem)
    return problem is None


def too_long(value: str, what: str) -> str | None:
    """The sentence for a text over MAX_TEXT_CHARS, or None."""
    if len(value) <= MAX_TEXT_CHARS:
        return None
    return f"{what} is {len(value):,} characters long, more than the {MAX_TEXT_CHARS:,} a field may hold"


def identifier(value: Any) -> str:
    """An id as text: "vqa-0" stays, 217 becomes "217"; anything else (lists, true) is no id."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value.strip()
    return ""


def text_list(value: Any, key: str, length: int, faults: RowFaults, *, required: bool,
              task_label: str) -> tuple[str, ...]:
    """A list of exactly `length` non-empty texts. Problems are errors when `required`, warnings
    (and the list dropped) otherwise, e.g. for an English translation that does not fit."""
    report = faults.error if required else faults.warn

    def fail(message: str) -> tuple[str, ...]:
        report(message if required else f"{message}; ignored")
        return ()

    if value is None:
        return fail(f"{key} is missing") if required else ()
    if isinstance(value, str):
        if value.strip() == "":
            return fail(f'{key} is "" but a {task_label} question needs {length} choices')
        return fail(f"{key} is a single text, not a list of {length}")
    if not isinstance(value, list):
        return fail(f"{key} is not a list")
    if len(value) != length:
        return fail(f"{key} has {len(value)} entries instead of {length}")
    items = []
    for position, item in enumerate(value):
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str) or not item.strip():
            return fail(f"{key} entry {position + 1} is empty or not text")
        if problem := too_long(item, f"{key} entry {position + 1}"):
            return fail(problem)
        items.append(item.strip())
    return tuple(items)


def answer_index(value: Any, count: int, faults: RowFaults) -> int | None:
    """FoodieQA writes answers as "0".."3"; numbers are accepted too. Must index one of `count`."""
    if value is None:
        faults.error("answer is missing")
        return None
    if isinstance(value, bool):
        faults.error("answer is true/false, not a choice number")
        return None
    if isinstance(value, int):
        index = value
    elif isinstance(value, float) and value.is_integer():
        index = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        index = int(value.strip())
    else:
        faults.error(f"answer {value!r:.40} is not a choice number")
        return None
    if count and not 0 <= index < count:
        faults.error(f"answer {index} is out of range (0 to {count - 1})")
        return None
    return index


def sentence(message: str) -> str:
    """A message as a sentence: capitalised (unless it starts with a field name such as
    question_id, which keeps its spelling), with a full stop."""
    message = message.strip()
    if "_" not in message.split(" ", 1)[0]:
        message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "?", "!")) else message + "."
