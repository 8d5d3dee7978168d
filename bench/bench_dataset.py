"""Dataset tab speed: indexing a FoodieQA-sized folder, and a gallery page of thumbnails.

    python3 bench/bench_dataset.py              # the figures recorded in bench/README.md
    python3 bench/bench_dataset.py --repeat 9   # steadier medians

Generates, in a temporary folder, what FoodieQA looks like: 400 photos (1024x768 JPEG, noisy so
they compress like photos) and 1,400 questions (256 single-image, 403 multi-image, 741 text; the
real set has about 1,364), then times, side by side in this run:

- indexing as a naive reader would (decode every picture a question names, at full size, each time
  it is named; one run, it takes ~20 s), our full check (decode each picture once at 1/8 scale), and
  our default (no decoding: type, size and the file's first bytes). Bar: the default at most 1 s.
- a gallery page of 24 thumbnails drawn on every view (no cache) against the cached page, both
  including reading the 24 thumbnail files the browser fetches. Bar: at most 300 ms once cached.

Medians of --repeat runs; the OS file cache is warm for every variant alike.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.data import (
    SIVQA,
    RecordFilter,
    ThumbnailCache,
    filter_records,
    gallery_page,
    paginate,
    read_foodieqa_folder,
)

CUISINES = ["川菜", "湘菜", "粤菜", "苏菜", "浙菜", "鲁菜", "闽菜", "徽菜", "新疆菜", "东北菜", "西北菜"]


def make_foodieqa_like(root: Path, images: int, sivqa: int, mivqa: int, textqa: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True)
    # One big noise field, cropped differently and tinted per picture: photo-like JPEG sizes
    # (~300 KB at 1024x768) without paying for fresh noise each time.
    noise = Image.effect_noise((1536, 1152), 40).convert("RGB")
    for i in range(images):
        x, y = rng.randrange(512), rng.randrange(384)
        tint = Image.new("RGB", (1024, 768), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        picture = Image.blend(noise.crop((x, y, x + 1024, y + 768)), tint, 0.6)
        picture.save(root / "images" / f"{i:04d}.jpg", "JPEG", quality=85)
    files = [f"images/{i:04d}.jpg" for i in range(images)]

    def choices() -> list[str]:
        return [f"选项{rng.randrange(1000)}" for _ in range(4)]

    rows = []
    for n in range(sivqa):
        dish = n % images
        rows.append({"question": "图片中的食物通常属于哪个菜系?", "choices": choices(),
                     "answer": str(rng.randrange(4)), "question_type": "cuisine_type",
                     "food_name": f"菜{dish}", "question_id": f"vqa-{n}", "question_en": "Which cuisine?",
                     "choices_en": ["a", "b", "c", "d"],
                     "food_meta": {"main_ingredient": ["鸡肉"], "id": dish, "food_name": f"菜{dish}",
                                   "food_type": rng.choice(CUISINES), "food_location": "餐馆",
                                   "food_file": files[dish]}})
    (root / "sivqa_tidy.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    rows = [{"question": "哪一道菜中含有干贝？", "choices": "", "answer": str(rng.randrange(4)),
             "question_type": "ingredients", "question_id": f"m-{n}", "ann_group": "闽",
             "images": rng.sample(files, 4), "question_en": "Which one?"} for n in range(mivqa)]
    (root / "mivqa_tidy.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    rows = [{"question": f"菜{n % 350}是基于以下哪一种食材制作的?", "choices": choices(),
             "answer": str(rng.randrange(4)), "question_type": "main-ingredient",
             "food_name": f"菜{n % 350}", "cuisine_type": rng.choice(CUISINES), "question_id": f"textqa-{n}"}
            for n in range(textqa)]
    (root / "textqa_tidy.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")


def naive_index(root: Path) -> int:
    """What a first attempt does: json.load every file and open each named picture to check it."""
    pictures = 0
    for name in ("sivqa_tidy.json", "mivqa_tidy.json", "textqa_tidy.json"):
        for row in json.loads((root / name).read_text(encoding="utf-8")):
            paths = row.get("images") or ([row["food_meta"]["food_file"]] if "food_meta" in row else [])
            for path in paths:
                with Image.open(root / path) as picture:
                    picture.convert("RGB")
                pictures += 1
    return pictures


def median_seconds(action: Callable[[], object], repeat: int, before: Callable[[], object] = lambda: None) -> float:
    times = []
    for _ in range(repeat):
        before()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--sivqa", type=int, default=256)
    parser.add_argument("--mivqa", type=int, default=403)
    parser.add_argument("--textqa", type=int, default=741)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp) / "foodieqa"
        start = time.perf_counter()
        make_foodieqa_like(root, args.images, args.sivqa, args.mivqa, args.textqa)
        made = time.perf_counter() - start
        size = sum(p.stat().st_size for p in (root / "images").iterdir()) / 1e6
        questions = args.sivqa + args.mivqa + args.textqa
        print(f"generated {questions} questions and {args.images} pictures ({size:.0f} MB) in {made:.1f} s")

        result = read_foodieqa_folder(root)
        assert len(result.records) == questions and not result.problems, result.summary()

        naive = median_seconds(lambda: naive_index(root), 1)  # ~20 s a run: once is enough to compare
        full = median_seconds(lambda: read_foodieqa_folder(root, image_check="full"), args.repeat)
        ours = median_seconds(lambda: read_foodieqa_folder(root), args.repeat)

        page = paginate(filter_records(result.records, RecordFilter(task=SIVQA)), 1).items
        cache = ThumbnailCache(Path(temp) / "cache" / "thumbs")

        def show_page() -> None:
            # what serving the page costs the server: find (or draw) the thumbnails, then read
            # the 24 files the browser will fetch
            for item in gallery_page(page, cache):
                item.thumbnail.read_bytes()

        uncached = median_seconds(show_page, args.repeat, before=cache.clear)
        show_page()
        cached = median_seconds(show_page, args.repeat * 4)

    rows = [
        ("index 1,400 questions: naive (decode every named picture)", naive, None),
        ("index: our full check (decode each picture once, 1/8 scale)", full, None),
        ("index: ours, default (no decoding)", ours, 1.0),
        ("page of 24 thumbnails: drawn on every view (no cache)", uncached, None),
        ("page of 24 thumbnails: ours, cached", cached, 0.3),
    ]
    print()
    print(f"| {'what':<62} | {'median':>10} | {'bar':>8} | ok  |")
    print(f"|{'-' * 64}|{'-' * 12}|{'-' * 10}|-----|")
    for what, seconds, bar in rows:
        shown_bar = f"{bar * 1000:.0f} ms" if bar else ""
        ok = ("yes" if seconds <= bar else "NO") if bar else ""
        print(f"| {what:<62} | {seconds * 1000:>7.1f} ms | {shown_bar:>8} | {ok:<3} |")
    print()
    print(f"indexing: {naive / ours:.0f}x faster than naive; "
          f"cached page: {uncached / cached:.0f}x faster than uncached")


if __name__ == "__main__":
    main()
