"""FoodieQA-shaped data for GPU benchmarks: photo-sized pictures, real-length answers.

    python bench/fake_foodieqa.py OUT_DIR --samples 256 --questions 256

Writes into OUT_DIR:
    images/        pictures of 640x480 to 1024x768 (noisy gradients: they compress like photos)
    train.json     LLaVA / XTuner training samples, one picture each, answers of 10 to 40 tokens
    sivqa_tidy.json  single-image multiple-choice questions in FoodieQA's layout (for scoring)

Speed does not depend on what the pictures show, only on their sizes and the token counts, so
these stand in for FoodieQA (which we may not redistribute, and no machine here can download).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = [(640, 480), (800, 600), (1024, 768), (768, 1024), (960, 720), (720, 960)]
CUISINES = ["川菜", "粤菜", "苏菜", "浙菜", "鲁菜", "闽菜", "湘菜", "徽菜", "新疆菜", "东北菜"]
PHRASES = ["这道菜", "口味", "麻辣", "鲜香", "酸甜", "主要食材是", "猪肉", "牛肉", "鸡肉", "豆腐", "米饭",
           "面条", "常见于", "家常", "宴席", "做法是", "先炒后炖", "清蒸", "红烧", "凉拌", "。", "，"]


def picture(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    width, height = size
    gradient = np.linspace(0, 1, width, dtype=np.float32)[None, :, None] * np.array(
        [rng.random(), rng.random(), rng.random()], dtype=np.float32)
    noise = np.random.default_rng(rng.randrange(2**32)).random((height, width, 3), dtype=np.float32)
    pixels = (0.6 * gradient + 0.4 * noise) * 255
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def answer(rng: random.Random, tokenizer, low: int = 10, high: int = 40) -> str:
    """Words until the answer is between `low` and `high` tokens long in `tokenizer`."""
    target = rng.randint(low, high)
    text = ""
    while len(tokenizer(text)["input_ids"]) < target:
        text += rng.choice(PHRASES)
    return text


def make(out: Path, samples: int, questions: int, tokenizer, seed: int = 0) -> None:
    rng = random.Random(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    count = max(samples, questions)
    names = []
    for i in range(count):
        name = f"images/photo-{i:04d}.jpg"
        picture(rng, rng.choice(SIZES)).save(out / name, quality=85)
        names.append(name)
    train = [{"id": f"s{i}", "image": names[i],
              "conversations": [{"from": "human", "value": "<image>\n这是什么菜？它属于哪个菜系，有什么特点？"},
                                {"from": "gpt", "value": answer(rng, tokenizer)}]}
             for i in range(samples)]
    (out / "train.json").write_text(json.dumps(train, ensure_ascii=False), encoding="utf-8")
    sivqa = []
    for i in range(questions):
        choices = rng.sample(CUISINES, 4)
        sivqa.append({"question": "图片中的食物通常属于哪个菜系?", "choices": choices,
                      "answer": str(rng.randrange(4)), "question_type": "cuisine_type",
                      "food_name": f"菜{i}", "question_id": f"vqa-{i}",
                      "food_meta": {"main_ingredient": [], "id": i, "food_name": f"菜{i}",
                                    "food_type": choices[0], "food_location": "餐馆", "food_file": names[i]}})
    (out / "sivqa_tidy.json").write_text(json.dumps(sivqa, ensure_ascii=False), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--questions", type=int, default=256)
    parser.add_argument("--tokenizer", default=None, help="a model folder whose tokenizer counts tokens")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from backend.models.tiny import FAMILIES, train_tokenizer

    if args.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        tokenizer = train_tokenizer(FAMILIES["qwen2_vl"])
    make(args.out, args.samples, args.questions, tokenizer)
    print(f"wrote {args.samples} samples and {args.questions} questions to {args.out}")


if __name__ == "__main__":
    main()
