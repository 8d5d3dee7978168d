"""Pure functions behind the Dataset tab's browser: filter, count, page, table, gallery, detail.

The UI keeps the records (per session) and a RecordFilter built from its dropdowns; everything it
shows comes from these functions, so the tab itself holds no logic worth testing.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Generic, TypeVar

from backend.data.schema import LETTERS, MIVQA, TASK_LABELS, Record, Turn
from backend.data.thumbnails import ThumbnailCache
from backend.markdown_text import as_text

PAGE_SIZE = 24
# The facets a person can filter by, in the order the tab shows them.
FACETS = ("task", "question_type", "cuisine", "region", "source")
TABLE_COLUMNS = ("id", "task", "question", "answer", "question type", "cuisine", "dish")

T = TypeVar("T")


@dataclass(frozen=True)
class RecordFilter:
    """What the person picked. "" means any; `dish_name` is a case-insensitive substring of the
    dish's name (or, for records that name no dish, of the question)."""

    task: str = ""
    question_type: str = ""
    cuisine: str = ""
    region: str = ""
    source: str = ""
    dish_name: str = ""

    def matches(self, record: Record) -> bool:
        for facet in FACETS:
            wanted = getattr(self, facet)
            if wanted and getattr(record, facet) != wanted:
                return False
        needle = self.dish_name.strip().casefold()
        if needle:
            haystack = record.food_name or record.question
            return needle in haystack.casefold()
        return True


def filter_records(records: Sequence[Record], flt: RecordFilter) -> list[Record]:
    return [r for r in records if flt.matches(r)]


def facet_counts(records: Sequence[Record],
                 flt: RecordFilter = RecordFilter()) -> dict[str, list[tuple[str, int]]]:
    """For each facet, its values with how many records each would show. Each facet is counted
    under all the *other* choices, so a dropdown lists what picking a value would give."""
    counts: dict[str, list[tuple[str, int]]] = {}
    for facet in FACETS:
        others = replace(flt, **{facet: ""})
        tally = Counter(getattr(r, facet) for r in records if others.matches(r))
        counts[facet] = sorted(tally.items(), key=lambda item: (-item[1], item[0]))
    return counts


@dataclass(frozen=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    number: int  # 1-based
    count: int   # how many pages there are (at least 1)
    total: int   # how many items on all pages

    @property
    def label(self) -> str:
        if not self.total:
            return "Nothing matches."
        return f"Page {self.number} of {self.count} ({self.total} in all)"


def paginate(items: Sequence[T], page: int, per_page: int = PAGE_SIZE) -> Page[T]:
    """Page `page` (1-based, clamped into range, so a stale page number never fails)."""
    if per_page < 1:
        raise ValueError("a page must hold at least one item")
    count = max(1, math.ceil(len(items) / per_page))
    number = min(max(1, int(page)), count)
    start = (number - 1) * per_page
    return Page(tuple(items[start:start + per_page]), number, count, len(items))


def table_rows(records: Sequence[Record]) -> list[list[str]]:
    """Rows for a table with TABLE_COLUMNS."""
    rows = []
    for r in records:
        if r.answer is not None and r.choices:
            answer = f"({r.answer_letter}) {r.choices[r.answer]}"
        elif r.turns:
            answer = next((t.text for t in r.turns if t.role == "gpt"), "")
        else:
            answer = f"picture ({r.answer_letter})" if r.answer_letter else ""  # multi-image
        rows.append([r.id, TASK_LABELS.get(r.task, r.task), r.question, answer, r.question_type,
                     r.cuisine, r.food_name])
    return rows


@dataclass(frozen=True)
class GalleryItem:
    record_id: str
    thumbnail: Path | None  # None: no picture (text question) or an unusable one
    caption: str


def gallery_page(records: Sequence[Record], cache: ThumbnailCache) -> list[GalleryItem]:
    """Gallery cells for one page of records (the first picture of each), thumbnails cached."""
    items = []
    for r in records:
        thumb = cache.thumbnail(r.images[0]) if r.images else None
        label = r.food_name or (r.question[:18] + ("…" if len(r.question) > 18 else ""))
        items.append(GalleryItem(r.id, thumb, f"{label} · {TASK_LABELS.get(r.task, r.task)}"))
    return items


@dataclass(frozen=True)
class ChoiceView:
    letter: str
    text: str
    text_en: str
    is_answer: bool
    picture: Path | None = None  # multi-image questions: the picture is the choice


@dataclass(frozen=True)
class RecordDetail:
    """Everything the detail view shows about one record."""

    id: str
    task_label: str
    source: str
    pictures: tuple[Path, ...]
    question: str
    question_en: str
    choices: tuple[ChoiceView, ...]
    answer_letter: str
    turns: tuple[Turn, ...]
    facts: tuple[tuple[str, str], ...]
    origin: str

    def markdown(self, *, picture: Callable[[str], str] = lambda letter: f"picture {letter}",
                 answer: str = "answer", facts: str | None = None) -> str:
        """The question, its choices (Chinese / English) with the answer marked, and the facts.

        `picture`, `answer` and `facts` let the UI put these words in the visitor's language."""
        lines = []
        if self.question and not self.turns:  # a conversation shows its own turns below
            lines.append(f"**{as_text(self.question)}**")
        if self.question_en and self.question_en != self.question:
            lines.append(f"*{as_text(self.question_en)}*")
        for choice in self.choices:
            text = as_text(choice.text) or picture(choice.letter)
            if choice.text_en and choice.text_en != choice.text:
                text += f" / {as_text(choice.text_en)}"
            mark = f" ✅ **{answer}**" if choice.is_answer else ""
            lines.append(f"- ({choice.letter}) {text}{mark}")
        for turn in self.turns:
            who = "**Q**" if turn.role == "human" else "**A**"
            lines.append(f"{who}: {as_text(turn.text.replace('<image>', '').strip())}")
        if facts is None:
            facts = " · ".join(f"{k}: {as_text(v)}" for k, v in self.facts if v)
        if facts:
            lines.append(f"<sub>{facts}</sub>")
        return "\n\n".join(lines)


def detail_view(record: Record) -> RecordDetail:
    if record.task == MIVQA:
        choices = tuple(ChoiceView(LETTERS[i], "", "", i == record.answer, picture)
                        for i, picture in enumerate(record.images))
    else:
        choices = tuple(
            ChoiceView(LETTERS[i], text,
                       record.choices_en[i] if len(record.choices_en) == len(record.choices) else "",
                       i == record.answer)
            for i, text in enumerate(record.choices))
    facts = (("id", record.id), ("dish", record.food_name), ("cuisine", record.cuisine),
             ("region", record.region), ("question type", record.question_type),
             ("source", record.source), ("from", record.origin))
    return RecordDetail(record.id, TASK_LABELS.get(record.task, record.task), record.source,
                        record.images, record.question, record.question_en, choices,
                        record.answer_letter, record.turns, facts, record.origin)


def find_record(records: Sequence[Record], record_id: str) -> Record | None:
    return next((r for r in records if r.id == record_id), None)
