"""The bundled training set: the 12 example dishes x 3 pictures, asked about in Chinese and English.

It lets the demo model learn something real in a minute on a CPU, and it is the data the training
benchmark and tests use. Written in the same LLaVA format as any data the Dataset tab exports.
"""

from __future__ import annotations

import json
from pathlib import Path

from backend.bundled import EXAMPLES_DIR
from backend.quick_examples import DEMO_QUESTION, demo_answer
from backend.training.samples import write_samples
from backend.training.spec import JobSpec


def demo_records(examples_dir: Path = EXAMPLES_DIR) -> list[dict]:
    """One Chinese and one English question for each bundled picture (72 samples)."""
    dishes = json.loads((examples_dir / "dishes.json").read_text(encoding="utf-8"))
    records = []
    for dish in dishes:
        pictures = sorted((examples_dir / "images").glob(f"{dish['id']}-*.jpg"))
        for picture in pictures:
            relative = picture.relative_to(examples_dir).as_posix()
            # the question and answer the Chat tab's quick examples use, so a trained demo model
            # answers the one a person clicks
            for lang in ("zh", "en"):
                records.append({
                    "id": f"{picture.stem}-{lang}", "image": relative,
                    "conversations": [
                        {"from": "human", "value": f"<image>\n{DEMO_QUESTION[lang]}"},
                        {"from": "gpt", "value": demo_answer(dish, lang)}]})
    return records


def write_demo_dataset(path: Path, examples_dir: Path = EXAMPLES_DIR) -> Path:
    """Write the bundled set to `path`; its image root is `examples_dir`."""
    return write_samples(demo_records(examples_dir), path)


# A demo job's name, in the language of the page that started it (the job list shows it as it is).
DEMO_JOB_NAMES = {"en": "demo: bundled dishes", "zh": "演示：内置菜品"}


def demo_data_file(workdir: Path) -> Path:
    """Where the bundled dishes are written as chat samples for a demo job."""
    return Path(workdir) / "data" / "demo-dishes.json"


def demo_spec(workdir: Path, **overrides) -> JobSpec:
    """The demo-cpu preset, ready to submit: the demo model (built once) on the bundled set."""
    from backend.models.demo import ensure_demo_model
    from backend.training.spec import preset

    model = ensure_demo_model(Path(workdir))
    data_file = write_demo_dataset(demo_data_file(workdir))
    settings = dict(model=model.location, data_file=str(data_file), image_root=str(EXAMPLES_DIR),
                    name=DEMO_JOB_NAMES["en"])
    return preset("demo-cpu", **{**settings, **overrides})
