"""Quick examples for the Chat tab: a picture per cuisine and a question about it.

From the bundled pictures by default; from a FoodieQA folder's own photos when one is given,
one or more per cuisine, so the examples are real dishes rather than drawings.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from backend.bundled import EXAMPLES_DIR

log = logging.getLogger(__name__)

# What the bundled examples ask: the question the bundled training set (training/demo_data.py)
# teaches the demo model, so that once trained it answers the example a person clicks.
DEMO_QUESTION = {"zh": "这是什么菜？", "en": "What dish is this?"}


def demo_answer(dish: dict, lang: str) -> str:
    """The answer the bundled set teaches for a dish (an entry of examples/dishes.json)."""
    if lang == "zh":
        return f"这是{dish['name_zh']}，属于{dish['cuisine_zh']}。"
    return f"This is {dish['name_en']}, a {dish['cuisine_en']} dish."

# The four questions the course's demo offered, in both languages.
EXAMPLE_QUESTIONS = {
    "cuisine": {"zh": "这道菜属于哪个菜系？", "en": "Which cuisine is this dish from?"},
    "taste": {"zh": "这道菜是什么味道？", "en": "How does this dish taste?"},
    "where": {"zh": "去哪里能吃到最地道的这道菜？", "en": "Where can I eat the most authentic version?"},
    "plating": {"zh": "这道菜通常怎么摆盘？", "en": "How is this dish usually plated?"},
}


@dataclass(frozen=True)
class QuickExample:
    image: Path
    dish_zh: str
    dish_en: str
    cuisine_zh: str
    cuisine_en: str
    question_zh: str
    question_en: str
    answer_zh: str = ""  # what the bundled metadata says; empty for FoodieQA photos
    answer_en: str = ""

    def caption(self, lang: str) -> str:
        if lang == "zh":
            return f"{self.dish_zh} · {self.cuisine_zh}"
        return f"{self.dish_en} · {self.cuisine_en}" if self.dish_en else f"{self.dish_zh} · {self.cuisine_zh}"

    def question(self, lang: str) -> str:
        return self.question_zh if lang == "zh" else self.question_en


def bundled_examples(folder: Path = EXAMPLES_DIR) -> list[QuickExample]:
    dishes = json.loads((folder / "dishes.json").read_text(encoding="utf-8"))
    return [
        QuickExample(
            image=folder / "images" / f"{dish['id']}-0.jpg",
            dish_zh=dish["name_zh"], dish_en=dish["name_en"],
            cuisine_zh=dish["cuisine_zh"], cuisine_en=dish["cuisine_en"],
            question_zh=DEMO_QUESTION["zh"], question_en=DEMO_QUESTION["en"],
            answer_zh=demo_answer(dish, "zh"), answer_en=demo_answer(dish, "en"),
        )
        for dish in dishes
    ]


def foodieqa_examples(data_dir: Path, per_cuisine: int = 1) -> list[QuickExample]:
    """One or more photos per cuisine from a FoodieQA folder's single-image questions.

    Reads only sivqa_tidy.json's food_meta; a row that is malformed or whose photo is missing (or
    outside the folder) is skipped, since these are only examples."""
    source = data_dir / "sivqa_tidy.json"
    try:
        rows = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        log.warning("no quick examples from %s: %s", source, err)
        return []
    root = data_dir.resolve()
    seen: dict[str, int] = {}
    picked: dict[Path, QuickExample] = {}
    for row in rows if isinstance(rows, list) else []:
        meta = row.get("food_meta") if isinstance(row, dict) else None
        if not isinstance(meta, dict):
            continue
        cuisine = str(meta.get("food_type") or "").strip()
        image = (root / str(meta.get("food_file") or "")).resolve()
        if not cuisine or not image.is_file() or not image.is_relative_to(root) or image in picked:
            continue
        if seen.get(cuisine, 0) >= per_cuisine:
            continue
        seen[cuisine] = seen.get(cuisine, 0) + 1
        name = str(meta.get("food_name") or row.get("food_name") or "")
        picked[image] = QuickExample(
            image=image, dish_zh=name, dish_en="", cuisine_zh=cuisine, cuisine_en="",
            question_zh="这是什么菜？属于哪个菜系？", question_en="What dish is this, and which cuisine is it from?")
    return list(picked.values())


def quick_examples(data_dir: Path | None) -> list[QuickExample]:
    if data_dir is not None:
        found = foodieqa_examples(data_dir)
        if found:
            return found
        log.warning("%s has no usable single-image photos; showing the bundled examples", data_dir)
    return bundled_examples()
