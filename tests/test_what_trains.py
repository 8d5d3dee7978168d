"""What a job trains (spec.trains, backend/training/trained_parts.py): each choice of the Train tab
changes the parameters it names and no others, its checkpoint carries them (LoRA weights, and the
full weights of what trained whole), the end-of-job merge puts them in place, and Chat and
Compare's engine loads every kind beside one base and answers as the merged model does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from backend.inference.engine import GenerationSettings, Turn
from backend.inference.transformers_engine import TransformersEngine
from backend.models.loading import load, resolve
from backend.training.errors import TrainingError
from backend.training.job_folder import JobFiles, read_metrics
from backend.training.lora import train
from backend.training.processes import StopFlag
from backend.training.spec import TRAINS_CHOICES, preset
from tests.test_training_packed import EXAMPLES, RECORDS

PHOTO = str(EXAMPLES / "images" / "jiaozi-0.jpg")
QUICK = GenerationSettings(max_new_tokens=8)


def train_choice(model: Path, trains: str, folder: Path, **changes) -> JobFiles:
    """A short real job (4 steps, a high learning rate so every trained weight moves), with its merged model."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "samples.json"
    data.write_text(json.dumps(RECORDS, ensure_ascii=False), encoding="utf-8")
    spec = preset("demo-cpu", model=str(model), data_file=str(data), image_root=str(EXAMPLES), epochs=2, batch_size=2,
                  save_every=0, max_image_pixels=112 * 112, max_length=4096, output_dir=str(folder / "job"),
                  trains=trains, merge=True, learning_rate=1e-2, **changes)
    files = JobFiles(Path(spec.output_dir))
    files.root.mkdir()
    assert train(spec, files, StopFlag()) == 0
    return files


@pytest.fixture(scope="module")
def jobs(tiny_models, tmp_path_factory) -> dict[str, JobFiles]:
    root = tmp_path_factory.mktemp("what-trains")
    return {trains: train_choice(tiny_models["qwen2_vl"], trains, root / trains.replace("+", "-"))
            for trains in TRAINS_CHOICES}


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).state_dict()


# Names in the tiny Qwen2-VL, by rules a reader can check against the model, not by trained_parts.py
def language_linear(name: str, shape) -> bool:
    return name.startswith("model.language_model.layers.") and name.endswith("_proj.weight")


def tower_linear(name: str, shape) -> bool:
    return name.startswith("model.visual.blocks.") and name.endswith(".weight") and len(shape) == 2


def merger(name: str, shape) -> bool:
    return name.startswith("model.visual.merger.")


def decoder(name: str, shape) -> bool:
    return name.startswith("model.language_model.layers.") or name == "model.language_model.norm.weight"


EXPECTED = {
    "language-lora": (language_linear,),
    "language-lora+vision-lora": (language_linear, tower_linear),
    "language-lora+projector": (language_linear, merger),
    "language-full": (decoder,),
}


@pytest.mark.parametrize("trains", TRAINS_CHOICES)
def test_each_choice_changes_what_it_trains_and_nothing_else(tiny_models, jobs, trains):
    base, merged = weights(tiny_models["qwen2_vl"]), weights(jobs[trains].merged)
    assert base.keys() == merged.keys()
    changed = {name for name in base if not torch.equal(base[name], merged[name])}
    expected = {name for name, tensor in base.items() if any(rule(name, tensor.shape) for rule in EXPECTED[trains])}
    assert expected and changed == expected, (sorted(changed ^ expected)[:8])
    losses = [record["loss"] for record in read_metrics(jobs[trains].metrics) if "loss" in record]
    assert losses[-1] < losses[0]


def test_the_checkpoint_carries_the_full_weights_of_what_trained_whole(jobs):
    from safetensors import safe_open

    def keys(trains: str) -> list[str]:
        with safe_open(str(jobs[trains].adapter / "adapter_model.safetensors"), "pt") as saved:
            return list(saved.keys())

    assert all(".lora_" in key for key in keys("language-lora"))
    projector = [key for key in keys("language-lora+projector") if ".lora_" not in key]
    assert projector and all(".visual.merger." in key for key in projector)
    assert not any(".lora_" in key for key in keys("language-full"))  # no LoRA at all: the decoder whole


@pytest.fixture(scope="module")
def engine(tiny_models, jobs) -> TransformersEngine:
    """Chat and Compare's engine with every kind loaded beside one base."""
    engine = TransformersEngine(load(resolve(str(tiny_models["qwen2_vl"]))))
    for trains, files in jobs.items():
        engine.load_adapter(trains, str(files.adapter))
    return engine


def test_every_kind_loads_beside_one_base_and_answers_as_its_merged_model(engine, jobs):
    turns = [Turn("user", "这是什么菜？", (PHOTO,))]
    requests = [(turns, None), *((turns, trains) for trains in TRAINS_CHOICES)]
    answers = {row: "" for row in range(len(requests))}
    for row, piece in engine.stream_many(requests, QUICK):  # base beside every kind, as Compare asks
        answers[row] += piece
    for row, (_, trains) in enumerate(requests[1:], start=1):
        merged = TransformersEngine(load(resolve(str(jobs[trains].merged))))
        assert answers[row] == merged.generate_batch([turns], QUICK)[0], trains
    assert len({answers[row] for row in answers}) > 2  # the kinds answer differently from the base and each other


def test_a_family_without_a_projector_is_refused_with_a_sentence(tiny_models, tmp_path):
    with pytest.raises(TrainingError) as caught:
        train_choice(tiny_models["blip_2"], "language-lora+projector", tmp_path)
    assert caught.value.problem.key == "no_projector"
    assert "BLIP-2 reaches its language model through a Q-Former" in str(caught.value)
