"""Multiple-choice prompts and a parser for the answers.

Like FoodieQA's authors we letter the choices (A)-(D) and read the letter the model gives. A reply
we cannot map to one choice counts as "unparsed", never as a random guess, which would hide a
model that does not follow the format behind 25% free accuracy.
"""

from __future__ import annotations

import re

from backend.data.conversion import multiple_choice_prompt
from backend.data.schema import LETTERS, MIVQA, TEXTQA, Record
from backend.inference.engine import Turn


def question_and_choices(record: Record, lang: str) -> tuple[str, tuple[str, ...]]:
    """The record's question and choices in `lang`, falling back to Chinese where a row lacks a
    translation (FoodieQA translates only its single-image questions)."""
    if lang == "en" and record.question_en:
        choices = record.choices_en if len(record.choices_en) == len(record.choices) else record.choices
        return record.question_en, choices
    return record.question, record.choices


def prompt_turn(record: Record, lang: str = "zh") -> Turn:
    """One user turn asking `record` as a lettered multiple-choice question.

    The words are exactly those of the training samples (backend.data.conversion), so a model
    tuned on them is scored on the form it learned; the pictures travel beside the text."""
    text = multiple_choice_prompt(record, "en" if lang == "en" else "zh")
    text = re.sub(r"\s*<image>\s*", "\n", text).strip()
    images = record.images if record.task == MIVQA else record.images[:1]
    return Turn("user", text, tuple(str(p) for p in images) if record.task != TEXTQA else ())


def number_of_choices(record: Record) -> int:
    return len(record.images) if record.task == MIVQA else len(record.choices)


_LETTER_PATTERNS = [
    # "(B)", "（B）", "[B]" anywhere: the format we asked for
    r"[\(（\[]\s*([A-H])\s*[\)）\]]",
    # the reply starts with the letter: "B", "B.", "B) 新疆菜", "B：", since the prompt opened "("
    r"^\s*([A-H])(?:\s*$|[\s\.\)）:：、,，])",
    # "答案是B", "选B", "answer is B", "option B"
    r"(?:答案|选项|选择|选|(?i:answer|option))\s*(?:是|为|(?i:is)|:|：)?\s*[\(（]?\s*([A-H])(?![A-Za-z])",
]


def parse_choice(reply: str, choices: tuple[str, ...], count: int | None = None) -> int | None:
    """The index of the choice `reply` picks, or None when it does not pick exactly one.

    Tries the letter forms first, then the text of a choice appearing in the reply (only if
    exactly one choice's text appears, so "川菜 or 湘菜" stays unparsed)."""
    count = count if count is not None else len(choices)
    text = reply.strip()
    if not text or count == 0:
        return None
    for pattern in _LETTER_PATTERNS:
        found = set(re.findall(pattern, text, flags=re.MULTILINE))
        found = {letter for letter in found if LETTERS.index(letter) < count}
        if len(found) == 1:
            return LETTERS.index(found.pop())
        if len(found) > 1:
            return None
    mentioned = [i for i, choice in enumerate(choices) if choice and choice.strip() and choice.strip() in text]
    # "东北菜" contains no other choice, but "菜" might be inside several: keep the longest match
    # only when it is unique and not part of another mentioned choice.
    if len(mentioned) > 1:
        longest = max(mentioned, key=lambda i: len(choices[i]))
        if all(choices[i] in choices[longest] for i in mentioned):
            mentioned = [longest]
    return mentioned[0] if len(mentioned) == 1 else None
