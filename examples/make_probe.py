"""Draw the general-ability probe: pictures that have nothing to do with food, and multiple-choice
questions about them (colours, counts, shapes, text in the picture), in Chinese and English.

    python examples/make_probe.py        # writes examples/probe/ (pictures and sivqa_tidy.json)

Compare scores it beside the food questions as "general (probe)", before and after a fine-tune, so a
person sees what the food LoRA cost. Everything is drawn here with Pillow from a fixed seed, so it
can be bundled with no license question and comes out the same every time. The file uses
FoodieQA's single-image layout, so the app's own reader reads it.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PROBE_DIR = Path(__file__).resolve().parent / "probe"
SIZE = 160
SEED = 2026
PER_KIND = 50  # pictures of each kind: shapes (asked colour and shape), counts, words -> 200 questions

COLOURS = {"red": ("红色", (214, 39, 40)), "green": ("绿色", (44, 160, 44)), "blue": ("蓝色", (31, 119, 180)),
           "yellow": ("黄色", (240, 200, 20)), "purple": ("紫色", (148, 103, 189)), "black": ("黑色", (20, 20, 20))}
SHAPES = {"circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星形"}
WORDS = {"CAT": "猫", "SUN": "太阳", "BUS": "公共汽车", "MAP": "地图", "TEA": "茶", "BOX": "盒子"}
NUMBERS_ZH = "零一二三四五六七八九"


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill) -> None:
    left, top, right, bottom = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([((left + right) / 2, top), (right, bottom), (left, bottom)], fill=fill)
    else:  # a five-pointed star
        cx, cy, r = (left + right) / 2, (top + bottom) / 2, (right - left) / 2
        points = [(cx + (r if i % 2 == 0 else r * 0.45) * math.sin(i * math.pi / 5),
                   cy - (r if i % 2 == 0 else r * 0.45) * math.cos(i * math.pi / 5)) for i in range(10)]
        draw.polygon(points, fill=fill)


def question(qid: str, picture: str, kind: str, zh: str, en: str, choices: list[tuple[str, str]], right: int) -> dict:
    """A row in FoodieQA's sivqa layout (answer: the right choice's index, as a string)."""
    return {"question_id": qid, "question": zh, "question_en": en, "question_type": kind,
            "choices": [c[0] for c in choices], "choices_en": [c[1] for c in choices], "answer": str(right),
            "food_name": "", "food_meta": {"food_file": picture, "food_name": "", "food_type": "", "id": qid}}


def options(rng: random.Random, right: tuple[str, str], pool: list[tuple[str, str]]) -> tuple[list, int]:
    """Four choices, the right one among three others from `pool`, in a random order."""
    others = rng.sample([p for p in pool if p != right], 3)
    choices = [right, *others]
    rng.shuffle(choices)
    return choices, choices.index(right)


def main() -> None:
    rng = random.Random(SEED)
    (PROBE_DIR / "images").mkdir(parents=True, exist_ok=True)
    font = ImageFont.load_default(size=46)
    rows: list[dict] = []
    colour_pool = [(zh, en) for en, (zh, _) in COLOURS.items()]
    shape_pool = [(zh, en) for en, zh in SHAPES.items()]
    for i in range(PER_KIND):  # one shape in one colour: asked its colour and its shape
        colour, shape = rng.choice(list(COLOURS)), rng.choice(list(SHAPES))
        picture = Image.new("RGB", (SIZE, SIZE), (250, 250, 245))
        margin = rng.randint(20, 40)
        draw_shape(ImageDraw.Draw(picture), shape, (margin, margin, SIZE - margin, SIZE - margin), COLOURS[colour][1])
        name = f"images/shape-{i:02d}.png"
        picture.save(PROBE_DIR / name, optimize=True)
        choices, right = options(rng, (COLOURS[colour][0], colour), colour_pool)
        rows.append(question(f"probe-colour-{i:02d}", name, "color", "图中的图形是什么颜色？",
                             "What colour is the shape in the picture?", choices, right))
        choices, right = options(rng, (SHAPES[shape], shape), shape_pool)
        rows.append(question(f"probe-shape-{i:02d}", name, "shape", "图中是什么形状？",
                             "Which shape is in the picture?", choices, right))
    number_pool = [(NUMBERS_ZH[n], str(n)) for n in range(1, 8)]
    for i in range(PER_KIND):  # 1-7 dots, not overlapping: asked how many
        count = rng.randint(1, 7)
        picture = Image.new("RGB", (SIZE, SIZE), (250, 250, 245))
        draw = ImageDraw.Draw(picture)
        placed: list[tuple[int, int]] = []
        while len(placed) < count:
            x, y = rng.randint(22, SIZE - 22), rng.randint(22, SIZE - 22)
            if all((x - a) ** 2 + (y - b) ** 2 > 44**2 for a, b in placed):
                placed.append((x, y))
                draw.ellipse((x - 16, y - 16, x + 16, y + 16), fill=(31, 119, 180))
        name = f"images/count-{i:02d}.png"
        picture.save(PROBE_DIR / name, optimize=True)
        choices, right = options(rng, (NUMBERS_ZH[count], str(count)), number_pool)
        rows.append(question(f"probe-count-{i:02d}", name, "count", "图中有几个圆点？",
                             "How many dots are in the picture?", choices, right))
    for i in range(PER_KIND):  # a word written in the picture: asked which
        word = rng.choice(list(WORDS))
        picture = Image.new("RGB", (SIZE, SIZE), (250, 250, 245))
        ImageDraw.Draw(picture).text((SIZE / 2, SIZE / 2), word, font=font, fill=(20, 20, 20), anchor="mm")
        name = f"images/word-{i:02d}.png"
        picture.save(PROBE_DIR / name, optimize=True)
        pool = [(f"{en}（{zh}）", en) for en, zh in WORDS.items()]
        choices, right = options(rng, (f"{word}（{WORDS[word]}）", word), pool)
        rows.append(question(f"probe-word-{i:02d}", name, "text", "图中写的是哪个词？",
                             "Which word is written in the picture?", choices, right))
    (PROBE_DIR / "sivqa_tidy.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(rows)} questions about {3 * PER_KIND} pictures to {PROBE_DIR}")


if __name__ == "__main__":
    main()
