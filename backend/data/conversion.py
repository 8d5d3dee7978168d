"""Records -> training samples (conversation records, written out in the LLaVA format).

Own data is already a conversation and goes through as it is. FoodieQA questions become one
exchange, the way the course did it: the question and its lettered choices in, the right choice and
the dish's name out ("答案：(B) 新疆菜。这道菜是大盘鸡。"). The choices are lettered (A)-(D) like the
FoodieQA authors' scoring prompts, so a tuned model answers in the form the scorer parses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal

from backend.data.schema import (
    CONVERSATION,
    GPT,
    HUMAN,
    IMAGE_PLACEHOLDER,
    LETTERS,
    MIVQA,
    SIVQA,
    TEXTQA,
    Record,
    Turn,
    conversation_record,
)
from backend.data.terms import require_terms

log = logging.getLogger(__name__)

Language = Literal["zh", "en"]

_INSTRUCTION = {
    "zh": {"choices": "请从所提供的选项中选择一个正确答案。", "pictures": "请从以上图片中选择一个正确答案。"},
    "en": {"choices": "Choose the one correct answer from the options given.",
           "pictures": "Choose the one correct picture from the pictures above."},
}


def lettered_choices(choices: Iterable[str]) -> str:
    """"(A) 京菜\\n(B) 徽菜\\n..." as the FoodieQA authors letter them."""
    return "\n".join(f"({LETTERS[i]}) {text}" for i, text in enumerate(choices))


def multiple_choice_prompt(record: Record, lang: Language = "zh") -> str:
    """The human turn for a FoodieQA-style question, with one <image> per picture."""
    question = record.question_en if lang == "en" and record.question_en else record.question
    instruction = _INSTRUCTION[lang]
    if record.task == MIVQA:
        pictures = "\n".join(f"({LETTERS[i]}) {IMAGE_PLACEHOLDER}" for i in range(len(record.images)))
        return f"{pictures}\n{question}\n{instruction['pictures']}"
    choices = _choices(record, lang)
    prompt = f"{question}\n{lettered_choices(choices)}\n{instruction['choices']}"
    return f"{IMAGE_PLACEHOLDER}\n{prompt}" if record.task == SIVQA else prompt


def answer_opening(lang: Language = "zh") -> str:
    """What a target answer says before its letter (scoring by the letters' likelihood reads on from it)."""
    return "答案：(" if lang == "zh" else "Answer: ("


def course_answer(record: Record, lang: Language = "zh") -> str:
    """The target answer: the right letter, the right choice's text and, if known, the dish."""
    if record.answer is None:
        raise ValueError(f"{record.id} has no answer to train on")
    head = answer_opening(lang) + LETTERS[record.answer] + ")"
    stop = "。" if lang == "zh" else "."
    if record.task != MIVQA:
        head += " " + _choices(record, lang)[record.answer].rstrip("。.!！ ")
    head += stop
    # Naming the dish teaches what the picture shows; a text question names it already.
    if record.food_name and record.task != TEXTQA:
        head += f"这道菜是{record.food_name}。" if lang == "zh" else f" The dish is {record.food_name}."
    return head


def to_training_sample(record: Record, lang: Language = "zh") -> Record:
    """One record as a training conversation; conversations are returned unchanged."""
    if record.task == CONVERSATION:
        return record
    turns = (Turn(HUMAN, multiple_choice_prompt(record, lang)), Turn(GPT, course_answer(record, lang)))
    return conversation_record(
        record.id, turns, record.images, source=record.source, dish_id=record.dish_id,
        food_name=record.food_name, cuisine=record.cuisine, region=record.region,
        question_type=record.question_type, origin=record.origin)


def to_training_samples(records: Iterable[Record], *, tasks: Iterable[str] = (SIVQA,),
                        lang: Language = "zh", accept_terms: bool = False) -> list[Record]:
    """Training samples from `records`: conversations always, FoodieQA-style questions of `tasks`.

    FoodieQA records are refused (TermsNotAccepted) unless `accept_terms` is True.
    """
    wanted = set(tasks)
    unknown = wanted - {SIVQA, MIVQA, TEXTQA}
    if unknown:
        raise ValueError(f"unknown task {sorted(unknown)[0]!r}; choose from sivqa, mivqa, textqa")
    if lang not in _INSTRUCTION:
        raise ValueError(f"unknown language {lang!r}; choose zh or en")
    chosen = [r for r in records if r.task == CONVERSATION or r.task in wanted]
    require_terms(chosen, accept_terms)
    samples = [to_training_sample(r, lang) for r in chosen]
    log.info("converted %d records into training samples (tasks %s, %s)", len(samples),
             ",".join(sorted(wanted)), lang)
    return samples


def _choices(record: Record, lang: Language) -> tuple[str, ...]:
    if lang == "en" and len(record.choices_en) == len(record.choices):
        return record.choices_en
    return record.choices
