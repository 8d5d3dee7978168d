"""Reading a large InternVL jsonl, and the Dataset tab's first page of it (issue 27).

    python3 bench/bench_formats.py                     # the figures recorded in bench/README.md
    python3 bench/bench_formats.py --folder /tmp/big   # keep (or reuse) the generated data there

Generates once (into --folder, or a temporary folder): 20,000 small JPEGs (96x96, each its own
colours and noise) and a 100,000-sample InternVL jsonl naming them (each picture in five samples,
one sample in ten with two pictures and two exchanges), then times, side by side in this run:

- reading it as the Dataset tab does (backend.data.sources.read_source, "a folder on the server":
  format detection, every row checked, pictures confined and checked, the first 2,000 decoded);
  baselines: parsing the lines with json.loads alone (the floor), and reading with every picture
  decoded (image_check="full"; one run). Bar: ≤ 5 s.
- the tab's first page after that: the filters with their counts, page 1 of the records, its 24
  thumbnails (drawn, not yet cached), its table, the summary and the report, as ui/dataset.py's
  load_source builds them. Bar: ≤ 1 s.

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
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.data import RecordFilter, ThumbnailCache, filter_records, gallery_page, image_checks, paginate
from backend.data.sources import read_source
from ui.dataset_views import facet_choices, page_table, report_table, summary_markdown

SAMPLES, PICTURES = 100_000, 20_000


def make_data(folder: Path, samples: int = SAMPLES, pictures: int = PICTURES, seed: int = 0) -> Path:
    """The jsonl and its pictures, made once: a folder that has them already is used as it is."""
    data = folder / "train.jsonl"
    if data.is_file():
        return data
    rng = random.Random(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    noise = Image.effect_noise((192, 192), 50).convert("RGB")
    for i in range(pictures):
        x, y = rng.randrange(96), rng.randrange(96)
        tint = Image.new("RGB", (96, 96), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        Image.blend(noise.crop((x, y, x + 96, y + 96)), tint, 0.7).save(folder / "images" / f"{i:05d}.jpg",
                                                                        "JPEG", quality=80)
    with open(folder / "train.jsonl.part", "w", encoding="utf-8") as handle:
        for n in range(samples):
            first = f"images/{n % pictures:05d}.jpg"
            if n % 10 == 9:
                second = f"images/{(n * 7 + 3) % pictures:05d}.jpg"
                row = {"id": n, "image": [first, second], "width_list": [96, 96], "height_list": [96, 96],
                       "conversations": [{"from": "human", "value": "<image>\n<image>\n这两道菜有什么不同？"},
                                         {"from": "gpt", "value": f"第一道是菜{n % 350}，第二道是菜{(n + 1) % 350}。"},
                                         {"from": "human", "value": "哪道更辣？"},
                                         {"from": "gpt", "value": "第一道。"}]}
            else:
                row = {"id": n, "image": first, "width": 96, "height": 96,
                       "conversations": [{"from": "human", "value": "<image>\n这是什么菜？"},
                                         {"from": "gpt", "value": f"这是菜{n % 350}。"}]}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    (folder / "train.jsonl.part").rename(data)
    return data


def read_as_the_tab(folder: Path, workdir: Path, image_check: str = "auto"):
    image_checks._DECODED.clear()  # each run decodes afresh, as a new app process would
    if image_check == "auto":
        return read_source("folder", str(folder), None, workdir, None, "bench").result
    from backend.data import read_data_folder

    return read_data_folder(folder, allow_absolute=True, image_check=image_check)


def first_page(result, thumbs: ThumbnailCache) -> None:
    """What load_source (ui/dataset.py) makes of a freshly read source: its render() and the rest."""
    flt = RecordFilter()
    shown = paginate(filter_records(result.records, flt), 1)
    gallery_page(shown.items, thumbs)
    facet_choices(result.records, flt, "en")
    page_table(shown.items, "en")
    summary_markdown(result, "en")
    report_table(result, "en")


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, help="where the generated data is kept (default: a temporary folder)")
    parser.add_argument("--no-full", action="store_true", help="skip the baseline that decodes every picture")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp) / "internvl"
        started = time.perf_counter()
        data = make_data(folder)
        print(f"data: {data} ({data.stat().st_size / 1e6:.1f} MB, {PICTURES:,} pictures; "
              f"made or found in {time.perf_counter() - started:.1f} s)")
        def parse_only() -> list:
            with data.open(encoding="utf-8") as handle:
                return [json.loads(line) for line in handle]

        floor = [timed(parse_only) for _ in range(args.repeat)]
        reads, pages, result = [], [], None
        for run in range(args.repeat):
            workdir = Path(tmp) / f"work-{run}"
            started = time.perf_counter()
            result = read_as_the_tab(folder, workdir)
            reads.append(time.perf_counter() - started)
            started = time.perf_counter()
            first_page(result, ThumbnailCache(workdir / "cache" / "thumbs"))  # a fresh cache: thumbnails drawn
            pages.append(time.perf_counter() - started)
        assert len(result.records) == SAMPLES and not result.problems, result.problems[:3]
        full = 0.0 if args.no_full else timed(lambda: read_as_the_tab(folder, Path(tmp) / "work-full", "full"))
        load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"

        def ms(times: list[float]) -> str:  # median, and the least disturbed run on a shared machine
            return f"{statistics.median(times) * 1e3:,.0f} ms (min {min(times) * 1e3:,.0f})"

        print(f"\nload average {load}; medians of {args.repeat} runs (min: the least disturbed run)")
        print(f"{'what':<44}{'baseline':>34}{'ours':>26}")
        print(f"{'read 100,000 samples, 20,000 pictures':<44}{'json.loads alone ' + ms(floor):>34}{ms(reads):>26}")
        print(f"{'  every picture decoded (image_check=full)':<44}{f'{full * 1e3:,.0f} ms (one run)':>34}")
        print(f"{'first page after it (24 thumbnails drawn)':<44}{'':>34}{ms(pages):>26}")
        print(f"\nbars: read ≤ 5,000 ms ({'met' if statistics.median(reads) <= 5 else 'MISSED'}); "
              f"first page ≤ 1,000 ms ({'met' if statistics.median(pages) <= 1 else 'MISSED'})")


if __name__ == "__main__":
    main()
