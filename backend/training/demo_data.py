"""The bundled training set: the 12 example dishes x 3 pictures, asked about in Chinese and English.

It lets the demo model learn something real in a minute on a CPU, and it is the data the training
benchmark and tests use. Written in the same LLaVA format as any data the Dataset tab exports.
"""

from __future__ import annotations

import json
from pathlib import Path

from backend.models.tiny import EXAMPLES_DIR
from backend.quick_examples import DEMO_QUESTION
from backend.training.samples import write_samples
from backend.training.spec import JobSpec

# the Chat tab's quick examples ask the same, so a trained demo model answers the one clicked
QUESTION_ZH, QUESTION_EN = DEMO_QUESTION["zh"], DEMO_QUESTION["en"]


def demo_records(examples_dir: Path = EXAMPLES_DIR) -> list[dict]:
    """One Chinese and one English question for each bundled picture (72 samples)."""
    dishes = json.loads((examples_dir / "dishes.json").read_text(encoding="utf-8"))
    records = []
    for dish in dishes:
        pictures = sorted((examples_dir / "images").glob(f"{dish['id']}-*.jpg"))
        for picture in pictures:
            relative = picture.relative_to(examples_dir).as_posix()
            records.append({
                "id": f"{picture.stem}-zh", "image": relative,
                "conversations": [
                    {"from": "human", "value": f"<image>\n{QUESTION_ZH}"},
                    {"from": "gpt", "value": f"这是{dish['name_zh']}，属于{dish['cuisine_zh']}。"}]})
            records.append({
                "id": f"{picture.stem}-en", "image": relative,
                "conversations": [
                    {"from": "human", "value": f"<image>\n{QUESTION_EN}"},
                    {"from": "gpt", "value": f"This is {dish['name_en']}, a {dish['cuisine_en']} dish."}]})
    return records


def write_demo_dataset(path: Path, examples_dir: Path = EXAMPLES_DIR) -> Path:
    """Write the bundled set to `path`; its image root is `examples_dir`."""
    return write_samples(demo_records(examples_dir), path)


def demo_spec(workdir: Path, **overrides) -> JobSpec:
    """The demo-cpu preset, ready to submit: the demo model (built once) on the bundled set."""
    from backend.models.demo import ensure_demo_model
    from backend.training.spec import preset

    model = ensure_demo_model(Path(workdir))
    data_file = write_demo_dataset(Path(workdir) / "data" / "demo-dishes.json")
    settings = dict(model=model.location, data_file=str(data_file), image_root=str(EXAMPLES_DIR),
                    name="demo: bundled dishes")
    return preset("demo-cpu", **{**settings, **overrides})
