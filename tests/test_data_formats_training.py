"""Each format, read from a file written as its project documents it (tests/test_data_formats.py),
saved as a training set and trained on: the demo model takes a few steps on it and its loss is a
number. What reads must also train: a sample whose pictures or turns were lost on the way would fail
here, in the training program's own reader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from backend.data import build_training_set
from backend.training.demo_data import demo_spec
from backend.training.job_folder import JobFiles, read_metrics
from backend.training.lora import train
from backend.training.processes import StopFlag
from tests import test_data_formats as docs


def imagefolder(folder: Path) -> Path:
    docs.photos(folder)
    docs.write_jsonl(folder / "metadata.jsonl", [
        {"file_name": f"images/{docs.DUCK}", "question": "这是什么菜？", "answer": "北京烤鸭。"},
        {"file_name": f"images/{docs.NOODLES}", "question": "这是什么菜？", "answer": "兰州牛肉面。"}])
    return folder


def table(folder: Path) -> Path:
    docs.photos(folder)
    (folder / "dishes.csv").write_bytes("\n".join(",".join(r) for r in docs.TABLE).encode("gbk"))
    return folder


def hf_datasets(folder: Path) -> Path:
    import datasets

    docs.photos(folder / "src")
    pictures = [str(folder / "src" / "images" / n) for n in (docs.DUCK, docs.NOODLES)]
    data = datasets.Dataset.from_dict({"image": pictures, "问题": ["这是什么菜？"] * 2,
                                       "答案": ["北京烤鸭。", "兰州牛肉面。"]})
    data.cast_column("image", datasets.Image()).save_to_disk(str(folder / "saved"))
    return folder / "saved"


def sharegpt(folder: Path) -> Path:
    return docs.sharegpt_folder(folder) / "mllm_demo.json"


def dataset_info(folder: Path) -> Path:
    return docs.sharegpt_folder(folder)


MAKERS = {"llava": docs.llava_file, "internvl": docs.internvl_file, "sharegpt": sharegpt,
          "llamafactory": dataset_info, "alpaca": docs.alpaca_file, "swift": docs.swift_file,
          "openai": docs.openai_file, "qwenvl": docs.qwen_file, "minicpm": docs.minicpm_file,
          "imagefolder": imagefolder, "datasets": hf_datasets, "question_rows": docs.question_rows_file,
          "table": table}


@pytest.mark.parametrize("key", list(MAKERS))
def test_a_set_saved_from_each_format_trains_the_demo_model(key, tmp_path, demo_workdir):
    source = MAKERS[key](tmp_path / "data")
    result = docs.read(source, pick="food_sharegpt" if key == "llamafactory" else "", scratch=tmp_path / "scratch")
    assert result.records, result.problems
    saved = build_training_set(result.records, tmp_path / "set", heldout_ratio=0.0, seed=0)
    rows = json.loads((saved.folder / "train.json").read_text(encoding="utf-8"))
    assert len(rows) == len(result.records)
    assert sum(len(r.get("images", [r["image"]] if "image" in r else [])) for r in rows) == sum(
        len(r.images) for r in result.records), "every picture is in the saved samples"
    spec = demo_spec(demo_workdir, data_file=str(saved.folder / "train.json"),
                     image_root=saved.manifest["image_root"], epochs=2, batch_size=2, save_every=0,
                     output_dir=str(tmp_path / "job"))
    files = JobFiles(Path(spec.output_dir))
    files.root.mkdir()
    assert train(spec, files, StopFlag()) == 0
    losses = [r["loss"] for r in read_metrics(files.metrics) if "loss" in r]
    assert len(losses) >= 2 and all(math.isfinite(loss) for loss in losses)
