"""Rows of any chat format -> conversation records, under one set of rules.

Every format module turns its rows into `Draft`s (the turns as (role, text) with roles already
named "human", "gpt" or "system", the picture references in order, the row itself for its other
fields) and hands them here, so the rules hold alike for all of them:

- turns: an optional system prompt first, then a question; every text non-empty and within the
  length limit; at least one answer; no picture placeholder in an answer;
- the `<image>` placeholders in the questions are exactly as many as the pictures (else the row is
  a problem row that says both counts); several pictures and many turns are kept as they are;
- pictures: confined, checked (ReadContext), each bad one named;
- ids: a missing id is no warning (the row is named after its file and place); an id that repeats
  is renamed "<id>-2", "<id>-3", ... and the renames are said once, in the summary; no row is
  dropped for its id.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from backend.data.formats.base import ReadContext
from backend.data.rows import (
    MAX_TEXT_CHARS,
    RowFaults,
    fits,
    identifier,
    ignored,
    optional_text,
    picture_paths,
    report,
    row_origin,
)
from backend.data.schema import (
    GPT,
    HUMAN,
    IMAGE_PLACEHOLDER,
    SOURCES,
    ReadResult,
    Record,
    ReportLine,
    Turn,
    conversation_record,
)
from backend.problems import Problem

log = logging.getLogger(__name__)

SYSTEM = "system"
# Row keys that are part of a record rather than free facts about it.
METADATA_KEYS = ("source", "dish_id", "dish", "food_name", "cuisine", "region", "question_type")
_MAX_FACTS, _MAX_FACT_CHARS = 24, 200


@dataclass(slots=True)
class Draft:
    """One row on its way to becoming a record."""

    index: int  # its place in the file (the report's "row")
    row: dict  # the row as read: ids, metadata and facts come from it
    turns: list[tuple[str, Any]] | None  # (role, text); None: the row has no usable turn list
    pictures: list[Any] = field(default_factory=list)  # references, in the order of their placeholders
    faults: RowFaults = field(default_factory=RowFaults)
    id_key: str = "id"
    known_keys: tuple[str, ...] = ()  # the format's own keys: not facts
    ready_pictures: tuple[Path, ...] | None = None  # pictures a reader already has as files (datasets)


def build_records(drafts: Iterable[Draft], context: ReadContext, file_name: str, *, stem: str,
                  format_label: str = "", problems: Iterable[ReportLine] = ()) -> ReadResult:
    """The records of `drafts` and the report, as one ReadResult for `file_name`."""
    with no_collection():
        return _build_records(list(drafts), context, file_name, stem, format_label, problems)


@contextmanager
def no_collection():
    """The garbage collector paused: reading 100,000 rows makes millions of small objects that all
    live on, and each of its passes over them would cost more than the reading (bench_formats.py)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _build_records(drafts: list[Draft], context: ReadContext, file_name: str, stem: str, format_label: str,
                   problems: Iterable[ReportLine]) -> ReadResult:
    report_lines: list[ReportLine] = list(problems)
    given: set[str] | None = None  # every id the file gives, which a rename must not take: made on the first repeat
    taken: set[str] = set()
    renamed: list[tuple[str, str]] = []
    records: list[Record] = []
    for draft in drafts:
        record_id = identifier(draft.row.get(draft.id_key)) or f"{stem}-{draft.index}"
        record = _record(draft, record_id, context, row_origin(file_name, draft.index))
        if draft.faults.errors or draft.faults.warnings:
            report(report_lines, file_name, draft.index, record_id, draft.faults)
        if record is None or draft.faults.errors:
            continue
        if record_id in taken:
            if given is None:
                given = {identifier(d.row.get(d.id_key)) for d in drafts}
            new_id = _free_id(record_id, given | taken)
            renamed.append((record_id, new_id))
            record = replace(record, id=new_id)
        taken.add(record.id)
        records.append(record)
    log.info("read %d conversations from %s (%d problems, %d ids renamed)", len(records), file_name,
             len(report_lines), len(renamed))
    return ReadResult(tuple(records), tuple(report_lines), context.root, context.source,
                      format_label=format_label, data_file=file_name, renamed=tuple(renamed))


def _free_id(record_id: str, used: set[str]) -> str:
    number = 2
    while f"{record_id}-{number}" in used:
        number += 1
    return f"{record_id}-{number}"


def _record(draft: Draft, record_id: str, context: ReadContext, origin: str) -> Record | None:
    faults, row = draft.faults, draft.row
    if draft.ready_pictures is not None:
        images = draft.ready_pictures
        for path in images:
            problem = context.checker.problem(path)
            if problem:
                faults.error(Problem("row_picture_bad", "{picture} {problem}",
                                     picture=Problem("row_picture_named", "picture {path!r:.80}", path=path.name),
                                     problem=problem))
        picture_count = len(images)
    else:
        images = _pictures(draft.pictures, context, faults)
        picture_count = len(draft.pictures)
    system, turns = check_turns(draft.turns, picture_count, faults)
    if faults.errors:
        return None
    # the fields beside the conversation, looked at only where the row has them (most rows have none)
    text = {key: optional_text(row, key, faults) for key in _TEXT_FIELDS if key in row}
    source = text.get("source", "")
    if source and source not in SOURCES:
        faults.warn(ignored(Problem("row_source_unknown", "source {source!r} is unknown", source=source)))
        source = ""
    food_name = text.get("food_name", "")
    dish_id = ((("dish_id" in row or "dish" in row) and (identifier(row.get("dish_id")) or identifier(row.get("dish"))))
               or (f"name:{food_name}" if food_name else "")
               or (f"image:{context.pictures.name(images[0])}" if images else ""))
    return conversation_record(
        record_id, turns, images, source=source or context.source, dish_id=dish_id, food_name=food_name,
        cuisine=text.get("cuisine", ""), region=text.get("region", ""), question_type=text.get("question_type", ""),
        system=system, origin=origin, facts=facts_of(row, (draft.id_key, *draft.known_keys)))


def _pictures(raw: list[Any], context: ReadContext, faults: RowFaults) -> tuple[Path, ...]:
    """rows.picture_paths, remembering each reference's file and verdict by its text: a data set of
    100,000 samples names 20,000 pictures 110,000 times."""
    known = context.verdicts
    found = []
    for position, value in enumerate(raw):
        cacheable = isinstance(value, str) and value[:5].lower() != "data:"
        answer = known.get(value) if cacheable else None
        if answer is None:
            verdict = RowFaults()
            answer = picture_paths([value], context.pictures, context.checker, verdict, first=position + 1), verdict
            if cacheable:
                known[value] = answer
        paths, verdict = answer
        faults.errors.extend(verdict.errors)
        found.extend(paths)
    return tuple(found)


_TEXT_FIELDS = ("source", "food_name", "cuisine", "region", "question_type")
_SKIPS: dict[tuple[str, ...], frozenset[str]] = {}


def facts_of(row: dict, known: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The row's other plain fields (text, numbers), for a split by a column the person picks."""
    skip = _SKIPS.get(known)
    if skip is None:
        skip = _SKIPS[known] = frozenset(known) | {"id", "source", "cuisine", "region", "question_type"}
    if skip.issuperset(row):
        return ()
    found = []
    for key, value in row.items():
        if key in skip or not isinstance(key, str) or isinstance(value, bool):
            continue
        if isinstance(value, (str, int, float)) and str(value).strip():
            found.append((key, str(value).strip()[:_MAX_FACT_CHARS]))
        if len(found) == _MAX_FACTS:
            break
    return tuple(found)


def check_turns(raw: list[tuple[str, Any]] | None, picture_count: int,
                faults: RowFaults) -> tuple[str, tuple[Turn, ...]]:
    """(system prompt, turns) of a conversation, or errors in `faults` saying what is wrong."""
    if raw is None:
        return "", ()
    if not raw:
        faults.error(Problem("row_conversations_bad", "conversations is missing, empty or not a list"))
        return "", ()
    if _plain(raw, picture_count):  # the common case, checked in one pass (a big file has 100,000 of them)
        return "", tuple([Turn(role, text) for role, text in raw])
    system = ""
    turns: list[Turn] = []
    errors_before = len(faults.errors)  # a bad picture is reported beside bad turns, not instead
    for position, (role, text) in enumerate(raw, start=1):
        if role == SYSTEM:
            if position != 1:
                faults.error(Problem("row_system_late", "turn {position} is a system prompt after the "
                                     "conversation started", position=position))
            elif not isinstance(text, str) or not text.strip():
                faults.warn(ignored(Problem("row_system_empty", "the system prompt is empty")))
            elif len(text) <= MAX_TEXT_CHARS or fits(text, Problem("row_turn", "turn {position}", position=position),
                                                     faults):
                system = text
            continue
        if role not in (HUMAN, GPT):
            faults.error(Problem("row_turn_role", "turn {position} is from {role!r:.30}, not human or gpt",
                                 position=position, role=role))
            continue
        if not isinstance(text, str) or not text.strip():
            if role == GPT:
                faults.error(Problem("row_turn_answer_empty", "turn {position} (the answer) is empty",
                                     position=position))
            else:
                faults.error(Problem("row_turn_question_empty", "turn {position} (the question) is empty",
                                     position=position))
            continue
        if len(text) > MAX_TEXT_CHARS and not fits(text, Problem("row_turn", "turn {position}", position=position),
                                                   faults):
            continue
        if role == GPT and IMAGE_PLACEHOLDER in text:
            faults.error(Problem("row_turn_answer_placeholder", "turn {position} is an answer with an <image> "
                                 "placeholder", position=position))
        turns.append(Turn(role, text))
    if len(faults.errors) > errors_before:
        return "", ()
    if not turns:
        faults.error(Problem("row_no_answer", "the conversation has no answer"))
        return "", ()
    if turns[0].role != HUMAN:
        faults.error(Problem("row_starts_with_answer", "the conversation starts with an answer, not a question"))
    if not any(t.role == GPT for t in turns):
        faults.error(Problem("row_no_answer", "the conversation has no answer"))
    placeholders = sum(t.text.count(IMAGE_PLACEHOLDER) for t in turns if t.role == HUMAN)
    if picture_count and not placeholders:
        faults.error(Problem("row_no_placeholder", "the first question has no <image> placeholder for its picture"))
    elif placeholders != picture_count:
        faults.error(Problem("row_placeholder_count", "the questions hold {placeholders} <image> placeholders for "
                             "{pictures} pictures", placeholders=placeholders, pictures=picture_count))
    return system, tuple(turns)


def _plain(raw: list[tuple[Any, Any]], picture_count: int) -> bool:
    """Whether a conversation breaks none of check_turns's rules and has no system prompt: questions and
    answers only, starting with a question, every text non-empty and within the limit, no placeholder in
    an answer, as many placeholders in the questions as there are pictures."""
    placeholders, answered = 0, False
    for role, text in raw:
        if type(text) is not str or len(text) > MAX_TEXT_CHARS or not text.strip():
            return False
        if role == HUMAN:
            placeholders += text.count(IMAGE_PLACEHOLDER)
        elif role == GPT and IMAGE_PLACEHOLDER not in text:
            answered = True
        else:
            return False
    return answered and raw[0][0] == HUMAN and placeholders == picture_count


def role_of(value: Any, names: dict[str, str]) -> Any:
    """A role as "human", "gpt" or "system" when `names` knows it (case and spaces ignored), else as
    it was, so that the report names what the row said."""
    if isinstance(value, str):
        return names.get(value.strip().lower(), value)
    return value
