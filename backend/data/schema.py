"""One record schema for every source: FoodieQA's three tasks, the bundled sample and own data.

Browsing, conversion, splitting and scoring only ever see `Record`s, so none of them cares whether a
question came from a folder, the hub or a person's CSV. Readers never raise on a bad row: they add a
`ReportLine` (a row of the report the UI shows) and carry on with the next row.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from backend.problems import ProblemError

# Task names, as FoodieQA's file names spell them, plus free-form conversations (own data and
# converted training samples).
SIVQA = "sivqa"
MIVQA = "mivqa"
TEXTQA = "textqa"
CONVERSATION = "conversation"
TASKS = (SIVQA, MIVQA, TEXTQA, CONVERSATION)
TASK_LABELS = {
    SIVQA: "single-image",
    MIVQA: "multi-image",
    TEXTQA: "text",
    CONVERSATION: "conversation",
}
MULTIPLE_CHOICE_TASKS = (SIVQA, MIVQA, TEXTQA)

# Where a record came from. Only FOODIEQA carries the dataset's terms (see terms.py).
SOURCE_FOODIEQA = "foodieqa"
SOURCE_SAMPLE = "sample"
SOURCE_OWN = "own"
SOURCES = (SOURCE_FOODIEQA, SOURCE_SAMPLE, SOURCE_OWN)

# Conversation roles as the LLaVA / XTuner format writes them.
HUMAN = "human"
GPT = "gpt"
IMAGE_PLACEHOLDER = "<image>"

LETTERS = "ABCDEFGH"


class DataError(ProblemError):
    """A whole source cannot be read (no such folder, nothing in it, hub unreachable).

    The message is a sentence meant for the person, not a traceback: a Problem, raised as
    DataError("key", "English {value}.", value=...), that ui/problems.py says in Chinese."""


@dataclass(frozen=True)
class Turn:
    """One message of a conversation in LLaVA terms: role is "human" or "gpt"."""

    role: str
    text: str


@dataclass(frozen=True)
class Record:
    """One question (or one conversation), whatever its source.

    `images` are absolute, resolved paths that the reader has checked lie inside the data folder.
    `answer` is the index of the right choice (for multi-image questions: of the right picture),
    None for conversations. `dish_id` groups records about the same dish for the held-out split;
    `related_dish_ids` are the dishes in the other pictures of a multi-image question.
    """

    id: str
    task: str
    source: str
    question: str = ""
    question_en: str = ""
    choices: tuple[str, ...] = ()
    choices_en: tuple[str, ...] = ()
    answer: int | None = None
    images: tuple[Path, ...] = ()
    question_type: str = ""
    cuisine: str = ""
    region: str = ""
    food_name: str = ""
    dish_id: str = ""
    related_dish_ids: tuple[str, ...] = ()
    turns: tuple[Turn, ...] = ()
    # A conversation's system prompt ("" for none): ShareGPT, ms-swift and OpenAI-style messages may
    # start with one; the LLaVA export writes it as a first "system" turn.
    system: str = ""
    # Where the record was read from ("sivqa_tidy.json row 12"); provenance for the UI, not
    # identity, so it takes no part in equality (a re-imported record equals the original).
    origin: str = field(default="", compare=False)
    # The row's other plain fields (column -> text), for a held-out split by a column the person
    # picks; like origin, no part of the record's identity.
    facts: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def names_dish(self) -> bool:
        """Whether the data names this record's dish (dish_id, a dish column, FoodieQA's food_name),
        rather than the reader standing in a picture for it ("image:...")."""
        return bool(self.dish_id) and not self.dish_id.startswith(("image:", "record:"))

    @property
    def dish_keys(self) -> tuple[str, ...]:
        """Every dish this record shows or names; the unit the held-out split keeps apart."""
        keys = tuple(k for k in (self.dish_id, *self.related_dish_ids) if k)
        return keys or (f"record:{self.id}",)

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer] if self.answer is not None and self.answer < len(LETTERS) else ""


@dataclass(frozen=True)
class ReportLine:
    """One row of the report: which file, which row (0-based position in the file's list; None for
    the file as a whole), which id, and what is wrong, in words. A problem with `skipped` True cost
    the row; otherwise the row was kept (e.g. a missing English translation)."""

    file: str
    row: int | None
    record_id: str | None
    message: str
    skipped: bool = True


@dataclass(frozen=True)
class ReadResult:
    """What a reader found: the good records, the report, and the folder everything lies in."""

    records: tuple[Record, ...]
    problems: tuple[ReportLine, ...]
    root: Path
    source: str
    # How the data was read, said beside the counts: "InternVL jsonl" and the file ("train.jsonl");
    # "" for FoodieQA's own layout, which needs no saying.
    format_label: str = ""
    data_file: str = ""
    # Ids that repeated and were renamed (old, new), said once in the summary; the rows are kept.
    renamed: tuple[tuple[str, str], ...] = ()

    @property
    def skipped_rows(self) -> int:
        return sum(1 for p in self.problems if p.skipped and p.row is not None)

    def counts_by_task(self) -> dict[str, int]:
        counts = Counter(r.task for r in self.records)
        return {task: counts[task] for task in TASKS if counts[task]}

    def summary(self) -> str:
        """One sentence for the UI: how much was read and whether the report needs a look."""
        parts = [f"{n} {TASK_LABELS[t]}" for t, n in self.counts_by_task().items()]
        what = ", ".join(parts) if parts else "nothing usable"
        sentence = f"Read {len(self.records)} records ({what}) from {self.root}."
        if self.problems:
            skipped = self.skipped_rows
            broken_files = sum(1 for p in self.problems if p.row is None and p.skipped)
            details = []
            if skipped:
                details.append(f"{skipped} row{'s' if skipped != 1 else ''} skipped")
            if broken_files:
                details.append(f"{broken_files} file{'s' if broken_files != 1 else ''} unreadable")
            kept = sum(1 for p in self.problems if not p.skipped)
            if kept:
                details.append(f"{kept} warning{'s' if kept != 1 else ''}")
            sentence += " " + "; ".join(details) + ": see the report."
        if self.format_label:
            sentence += f" Read as {self.format_label}: {len(self.records):,} samples ({self.data_file})."
        if self.renamed:
            old, new = self.renamed[0]
            sentence += (f" {len(self.renamed)} repeated id{'s were' if len(self.renamed) != 1 else ' was'} "
                         f"renamed, the rows kept (the first: {old} → {new}).")
        return sentence


_PLACEHOLDERS = re.compile(r"\s*<image>\s*")


def conversation_record(record_id: str, turns: tuple[Turn, ...], images: tuple[Path, ...], *,
                        source: str, dish_id: str = "", food_name: str = "", cuisine: str = "",
                        region: str = "", question_type: str = "", origin: str = "", system: str = "",
                        facts: tuple[tuple[str, str], ...] = ()) -> Record:
    """A conversation record. Its `question` is the first human turn without the placeholders, so
    the table and the dish-name filter work for conversations too; built in one place so a record
    read back from an export is equal to the one that was written."""
    first_human = turns[0].text if turns and turns[0].role == HUMAN else next(
        (t.text for t in turns if t.role == HUMAN), "")
    question = _PLACEHOLDERS.sub(" ", first_human).strip() if IMAGE_PLACEHOLDER in first_human else first_human.strip()
    return Record(id=record_id, task=CONVERSATION, source=source, question=question, images=images,
                  turns=turns, dish_id=dish_id, food_name=food_name, cuisine=cuisine, system=system, facts=facts,
                  region=region, question_type=question_type, origin=origin)


# FoodieQA's authors group questions by region; sivqa rows only carry a cuisine ("新疆菜"), so the
# region is derived from it. Anything not in their list is "其他" (other), as they did.
FOODIEQA_REGIONS = ("川", "湘", "赣", "黔", "徽", "闽", "粤", "浙", "苏", "鲁", "新疆", "东北", "西北",
                    "内蒙", "上海", "其他")
_REGION_ALIASES = {"本帮菜": "上海", "沪菜": "上海", "蒙菜": "内蒙", "内蒙古菜": "内蒙", "贵州菜": "黔",
                   "四川菜": "川", "湖南菜": "湘", "江西菜": "赣", "安徽菜": "徽", "福建菜": "闽",
                   "广东菜": "粤", "浙江菜": "浙", "江苏菜": "苏", "山东菜": "鲁"}


def region_of_cuisine(cuisine: str) -> str:
    """FoodieQA's region for a cuisine name: "新疆菜" -> "新疆", "京菜" -> "其他", "" -> ""."""
    cuisine = cuisine.strip()
    if not cuisine:
        return ""
    if cuisine in FOODIEQA_REGIONS:
        return cuisine
    if cuisine in _REGION_ALIASES:
        return _REGION_ALIASES[cuisine]
    stem = cuisine.removesuffix("菜")
    return stem if stem in FOODIEQA_REGIONS else "其他"
