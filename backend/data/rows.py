"""Small, forgiving accessors for one untrusted row (a dict from JSON, the hub or a CSV).

A row can hold anything: numbers where text belongs, null for a missing field (rows from the hub
come through Arrow, which fills absent keys with None), nested junk. These helpers turn each field
into the type we want or note in words what is wrong, so a parser reads as a list of fields.

What is wrong is a `Problem` (backend/problems.py): the English clause, which also carries a key and
its values, so that the report can be said in the page's language (ui/data_problems.py). Clauses
are put together into the report's sentences here too (`joined`, `ignored`, `sentence`, `skipped`),
each step a Problem whose values hold the clauses it took in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backend.data.safe_paths import UnsafePath
from backend.data.schema import ReportLine
from backend.problems import Problem

# One text field (a question, a choice, a turn of a conversation) longer than this is refused with its
# row: far past any model's context, and a page of such rows would cost the browser megabytes.
MAX_TEXT_CHARS = 100_000


class RowFaults:
    """The errors (which cost the row) and warnings (which do not) found in one row."""

    __slots__ = ("errors", "warnings")

    def __init__(self) -> None:
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, message: Problem) -> None:
        self.errors.append(message)

    def warn(self, message: Problem) -> None:
        self.warnings.append(message)


def ignored(reason: Problem) -> Problem:
    """A warning: the field was left out, the row kept."""
    return Problem("row_ignored", "{reason}; ignored", reason=reason)


def joined(reasons: Sequence[Problem]) -> Problem:
    """Several clauses as one, "a; b; c" (as a chain of pairs, each said in turn)."""
    said = reasons[-1]
    for reason in reversed(reasons[:-1]):
        said = Problem("row_and", "{first}; {rest}", first=reason, rest=said)
    return said


def skipped(reason: Problem) -> Problem:
    """A report row's sentence for a row that was left out."""
    return Problem("row_skipped", "{reason} The row was skipped.", reason=reason)


def not_an_object(json_type: str) -> Problem:
    """The report's sentence for a row that is no JSON object (the row is skipped)."""
    return skipped(Problem("row_not_object", "The row is a JSON {json_type}, not an object.", json_type=json_type))


def id_missing(field: str, record_id: str) -> Problem:
    return Problem("row_id_missing", "{field} is missing; the row is called {id}", field=field, id=record_id)


def id_taken(record_id: str, origin: Problem) -> Problem:
    return Problem("row_id_taken", "the id {id} is already used by {origin}", id=record_id, origin=origin)


def row_origin(file_name: str, index: int) -> Problem:
    """Where a record was read: "sivqa_tidy.json row 3"."""
    return Problem("row_origin", "{file} row {row}", file=file_name, row=index)


def report(problems: list[ReportLine], file_name: str, index: int, record_id: str | None, faults: RowFaults,
           unusable: bool = False) -> None:
    """A row's lines in the report: each warning (the row kept), then its errors as one sentence (the
    row skipped); `unusable` reports a row left out without an error of its own."""
    for message in faults.warnings:
        problems.append(ReportLine(file_name, index, record_id, sentence(message), skipped=False))
    if faults.errors or unusable:
        reason = joined(faults.errors) if faults.errors else Problem("row_unusable", "the row is unusable")
        problems.append(ReportLine(file_name, index, record_id, skipped(sentence(reason))))


def picture_paths(raw: Sequence[Any], paths, checker, faults: RowFaults, first: int = 1) -> tuple[Path, ...]:
    """Confine (`paths`, a ConfinedPaths), then check (`checker`, an ImageChecker), each of a row's
    pictures; every bad one is an error naming the picture (by its path, or by its place counted from
    `first` when the path is no text)."""
    found = []
    for position, value in enumerate(raw, start=first - 1):
        try:
            path = paths.resolve(value)
        except UnsafePath as err:
            faults.error(picture_refused(picture_label(value, position + 1), err.problem))
            continue
        problem = checker.problem(path)
        if problem:
            faults.error(picture_unusable(picture_label(value, position + 1), problem))
            continue
        found.append(path)
    return tuple(found)


def present(row: dict[str, Any], key: str) -> bool:
    return row.get(key) is not None


def optional_text(row: dict[str, Any], key: str, faults: RowFaults) -> str:
    """The field as stripped text; "" when absent. Numbers are accepted as text (an id of 217)."""
    value = row.get(key)
    if value is None:
        return ""
    if isinstance(value, bool):
        faults.warn(ignored(Problem("row_field_bool", "{field} is true/false, not text", field=key)))
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value.strip() if fits(value, key, faults) else ""
    faults.warn(ignored(Problem("row_field_not_text", "{field} is not text", field=key)))
    return ""


def required_text(row: dict[str, Any], key: str, faults: RowFaults) -> str:
    value = row.get(key)
    if value is None:
        faults.error(Problem("row_field_missing", "{field} is missing", field=key))
        return ""
    if not isinstance(value, str):
        faults.error(Problem("row_field_not_text", "{field} is not text", field=key))
        return ""
    if not value.strip():
        faults.error(Problem("row_field_empty", "{field} is empty", field=key))
        return ""
    return value.strip() if fits(value, key, faults) else ""


def fits(value: str, what: str, faults: RowFaults) -> bool:
    """Whether a text is within MAX_TEXT_CHARS; an error for the row if not."""
    problem = too_long(value, what)
    if problem:
        faults.error(problem)
    return problem is None


def too_long(value: str, what: str) -> Problem | None:
    """The clause for a text over MAX_TEXT_CHARS, or None. `what` is a field's name or a Problem
    naming a part of one ("turn 3")."""
    if len(value) <= MAX_TEXT_CHARS:
        return None
    return Problem("row_too_long", "{field} is {length:,} characters long, more than the {limit:,} a field "
                   "may hold", field=what, length=len(value), limit=MAX_TEXT_CHARS)


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

    def fail(message: Problem) -> tuple[str, ...]:
        report(message if required else ignored(message))
        return ()

    if value is None:
        return fail(Problem("row_field_missing", "{field} is missing", field=key)) if required else ()
    if isinstance(value, str):
        if value.strip() == "":
            return fail(Problem("row_choices_blank", '{field} is "" but a {task_label} question needs {length} '
                                "choices", field=key, task_label=task_label, length=length))
        return fail(Problem("row_field_single_text", "{field} is a single text, not a list of {length}",
                            field=key, length=length))
    if not isinstance(value, list):
        return fail(Problem("row_field_not_list", "{field} is not a list", field=key))
    if len(value) != length:
        return fail(Problem("row_field_count", "{field} has {count} entries instead of {length}", field=key,
                            count=len(value), length=length))
    items = []
    for position, item in enumerate(value):
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            item = str(item)
        entry = Problem("row_entry", "{field} entry {position}", field=key, position=position + 1)
        if not isinstance(item, str) or not item.strip():
            return fail(Problem("row_entry_bad", "{entry} is empty or not text", entry=entry))
        if problem := too_long(item, entry):
            return fail(problem)
        items.append(item.strip())
    return tuple(items)


def answer_index(value: Any, count: int, faults: RowFaults) -> int | None:
    """FoodieQA writes answers as "0".."3"; numbers are accepted too. Must index one of `count`."""
    if value is None:
        faults.error(Problem("row_field_missing", "{field} is missing", field="answer"))
        return None
    if isinstance(value, bool):
        faults.error(Problem("row_answer_bool", "answer is true/false, not a choice number"))
        return None
    if isinstance(value, int):
        index = value
    elif isinstance(value, float) and value.is_integer():
        index = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        index = int(value.strip())
    else:
        faults.error(Problem("row_answer_not_number", "answer {value!r:.40} is not a choice number", value=value))
        return None
    if count and not 0 <= index < count:
        faults.error(Problem("row_answer_range", "answer {answer} is out of range (0 to {last})", answer=index,
                             last=count - 1))
        return None
    return index


def sentence(message: str) -> str:
    """A clause as a sentence: capitalised (unless it starts with a field name such as
    question_id, which keeps its spelling), with a full stop.

    The capital letter is English only: the clause keeps its key and values (its template becomes
    the capitalised English text, with nothing left to fill in), so it is said in Chinese as before."""
    text = str(message).strip()
    if "_" not in text.split(" ", 1)[0]:
        text = text[:1].upper() + text[1:]
    if not isinstance(message, Problem):
        return text if text.endswith((".", "?", "!")) else text + "."
    literal = text.replace("{", "{{").replace("}", "}}")
    message = Problem(message.key, literal, **message.values)  # str(message) is now `text`
    return message if text.endswith((".", "?", "!")) else Problem("row_sentence", "{reason}.", reason=message)


def picture_label(value: Any, position: int) -> Problem:
    """How a row's picture is named in the report: by its path, or by its place (1-based) when the
    path is no text."""
    if isinstance(value, str):
        return Problem("row_picture_named", "picture {path!r:.80}", path=value)
    return Problem("row_picture_numbered", "picture {position}", position=position)


def picture_refused(label: Problem, reason: str) -> Problem:
    """A picture whose path is not followed; `reason` is UnsafePath's clause."""
    return Problem("row_picture_refused", "{picture} was refused: {reason}", picture=label, reason=reason)


def picture_unusable(label: Problem, predicate: Problem) -> Problem:
    """A picture that ImageChecker found wanting ("is missing", ...)."""
    return Problem("row_picture_bad", "{picture} {problem}", picture=label, problem=predicate)
