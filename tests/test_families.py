"""The whole loop for every family the registry claims, on its tiny model of the real classes: it loads,
chats about a photo in pieces, trains LoRA through the training program (`python -m
backend.training.lora spec.json`, as the worker starts it), answers base and checkpoint side by side,
scores multiple-choice questions, and merges into a folder plain transformers loads.

Each family trains 3 steps of 2 samples (the bundled dishes) on the CPU: about ten seconds a family."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from backend.data import read_bundled_sample
from backend.evaluation.scoring import score
from backend.inference.engine import AdapterError, GenerationSettings, Turn
from backend.inference.transformers_engine import TransformersEngine
from backend.models.families import FAMILIES, TINY
from backend.models.loading import ModelLoadError, load, load_processor, resolve
from backend.training.demo_data import demo_records
from backend.training.samples import write_samples
from backend.training.spec import preset
from tests.conftest import EXAMPLES, ROOT, TINY_MODELS

PHOTO = str(EXAMPLES / "images" / "jiaozi-0.jpg")
QUICK = GenerationSettings(max_new_tokens=12)


@dataclass
class Trained:
    name: str  # the tiny model's name (families.TINY)
    model: Path
    job: Path  # the job's folder: adapter/, merged/, metrics.jsonl, result.json


def train(model: Path, job: Path, **changes) -> subprocess.CompletedProcess:
    """A real run of the training program on 6 bundled samples: 3 steps of 2, the final adapter merged."""
    job.mkdir(parents=True)
    data = write_samples(demo_records()[:6], job / "samples.json")
    spec = preset("demo-cpu", model=str(model), data_file=str(data), image_root=str(EXAMPLES), output_dir=str(job),
                  epochs=1, batch_size=2, save_every=0, merge=True, **changes)
    spec.save(job / "spec.json")
    return subprocess.run([sys.executable, "-m", "backend.training.lora", str(job / "spec.json")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module", params=TINY_MODELS)
def trained(request, tiny_models, tmp_path_factory) -> Trained:
    name = request.param
    job = tmp_path_factory.mktemp(f"job-{name}") / "job"
    done = train(tiny_models[name], job)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return Trained(name, tiny_models[name], job)


@pytest.fixture(scope="module")
def engine(trained) -> TransformersEngine:
    engine = TransformersEngine(load(resolve(str(trained.model))))
    engine.load_adapter("tuned", str(trained.job / "adapter"))
    return engine


def test_it_loads_and_answers_about_a_photo_in_pieces(trained, engine):
    # internvl2: the original InternVL2 layout, converted (the converted folder is no tiny model of ours)
    assert engine.loaded.source.family == TINY.get(trained.name, TINY["internvl"]).family
    turns = [Turn("user", "这是什么菜？", (PHOTO,))]
    pieces = list(engine.stream(turns, QUICK))
    assert len(pieces) > 1 and "".join(pieces).strip()
    turns += [Turn("assistant", "".join(pieces)), Turn("user", "味道怎么样？")]
    assert "".join(engine.stream(turns, QUICK)).strip()
    # the photo is in the prompt as the family's picture tokens
    prompt = engine.prepare(turns[:1])
    processor = engine.loaded.processor
    image_token = getattr(processor, "image_token_id", None) or processor.tokenizer.convert_tokens_to_ids(
        str(processor.image_token))  # BLIP-2's processor names the token only
    assert int((prompt["input_ids"] == image_token).sum()) > 0


def test_lora_trains_on_every_linear_layer_of_the_language_model(trained):
    result = json.loads((trained.job / "result.json").read_text())
    assert result["status"] == "succeeded", result
    losses = [json.loads(line)["loss"] for line in (trained.job / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert len(losses) == 3 and all(loss == loss and loss > 0 for loss in losses)
    config = json.loads((trained.job / "adapter" / "adapter_config.json").read_text())
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(str(trained.model))
    decoder = model.get_decoder()
    wanted = {name.rsplit(".", 1)[-1] for name, module in decoder.named_modules()
              if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] != "lm_head"}
    assert {name.rsplit(".", 1)[-1] for name in config["target_modules"]} == wanted
    log = (trained.job / "train.log").read_text()
    if trained.name == "qwen3_5":  # the linear-attention layers' own projections are there
        assert {"in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a", "out_proj"} <= wanted
        # no varlen kernel for its linear attention here: padded batches, and the log says why
        assert "padded batches, not packed rows: Qwen3.5: three of its four layers are Gated DeltaNet" in log
    packed = FAMILIES[TINY.get(trained.name, TINY["internvl"]).family].fast_path != ""
    assert ("packed batches: samples prepared" in log) == packed, log[-2000:]


def test_base_and_checkpoint_answer_side_by_side(trained, engine):
    turns = [Turn("user", "这是什么菜？", (PHOTO,))]
    texts = {0: "", 1: ""}
    for row, piece in engine.stream_many([(turns, None), (turns, "tuned")], QUICK):
        texts[row] += piece
    assert texts[0] == "".join(engine.stream(turns, QUICK))
    assert texts[1] == "".join(engine.stream(turns, QUICK, adapter="tuned"))
    assert texts[0] != texts[1], "three steps at the demo's learning rate change the greedy answer"


def test_multiple_choice_scores_the_same_batched_and_one_by_one(trained, engine):
    records = [r for r in read_bundled_sample().records if r.task == "sivqa"][:2]
    together = score(engine, records, adapter="tuned", batch_size=2)
    alone = score(engine, records, adapter="tuned", batch_size=1)
    assert len(together.questions) == 2 and together.adapter == "tuned"
    assert [q.reply for q in together.questions] == [q.reply for q in alone.questions]


def test_the_merged_model_loads_with_plain_transformers_and_answers_as_base_plus_adapter(trained, engine):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    merged = AutoModelForImageTextToText.from_pretrained(str(trained.job / "merged")).eval()
    tuned = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(str(trained.model)),
                                      str(trained.job / "adapter")).eval()
    inputs = engine.prepare([Turn("user", "这是什么菜？", (PHOTO,))])
    with torch.no_grad():
        want, got = tuned(**inputs).logits, merged(**inputs).logits
    assert (got - want).abs().max() <= 1e-3 * want.abs().max()
    assert (trained.job / "merged" / "config.json").is_file() and load_processor(resolve(str(trained.job / "merged")))


# ---- bad input ----------------------------------------------------------------------------------


def test_a_folder_of_an_unsupported_family_names_the_supported_ones(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(tmp_path / "llama")
    with pytest.raises(ModelLoadError) as refused:
        resolve(str(tmp_path / "llama"))
    assert refused.value.problem.key == "model_not_supported"
    assert all(family.label in str(refused.value) for family in FAMILIES.values())


def make_adapter(model: Path, folder: Path) -> str:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from backend.training.targets import lora_targets

    base = AutoModelForImageTextToText.from_pretrained(str(model))
    peft = get_peft_model(base, LoraConfig(r=4, target_modules=lora_targets(base, ["all-linear"]),
                                           init_lora_weights=False))
    peft.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("other", ["llava", "smolvlm"], ids=["same widths, other family", "other widths"])
def test_a_checkpoint_of_another_base_model_is_refused_and_the_served_model_is_untouched(tiny_models, tmp_path,
                                                                                         other):
    """A LLaVA adapter has Qwen2-VL's layer names and widths here (both tiny): its base's config says
    it is another family. SmolVLM's layers have other names and widths: they do not fit."""
    engine = TransformersEngine(load(resolve(str(tiny_models["qwen2_vl"]))))
    turns = [Turn("user", "这是什么菜？", (PHOTO,))]
    before = "".join(engine.stream(turns, QUICK))
    weights = {name: p.clone() for name, p in engine.loaded.model.named_parameters()}
    adapter = make_adapter(tiny_models[other], tmp_path / other)
    with pytest.raises(AdapterError) as refused:
        engine.load_adapter("other", adapter)
    assert refused.value.problem.key == "adapter_other_base" and "Pick a checkpoint trained on this model" in str(
        refused.value)
    assert engine.adapters == {} and engine._peft is None
    assert all(torch.equal(p, weights[name]) for name, p in engine.loaded.model.named_parameters())
    assert "".join(engine.stream(turns, QUICK)) == before


def test_targets_that_match_nothing_or_miss_a_layer_type_are_refused_before_training(tiny_models, tmp_path):
    """Three of Qwen3.5's four layers are linear attention: the Llama-shaped list misses them."""
    from backend.training.errors import TrainingError
    from backend.training.job_folder import JobFiles
    from backend.training.lora import train as run
    from backend.training.processes import StopFlag

    llama_shaped = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    for targets, key, said in [(llama_shaped, "targets_miss_layers", "in_proj_qkv"),
                               (["q_proj", "v_porj"], "targets_not_linear", "v_porj")]:
        job = tmp_path / key
        job.mkdir()
        data = write_samples(demo_records()[:2], job / "samples.json")
        spec = preset("demo-cpu", model=str(tiny_models["qwen3_5"]), data_file=str(data), image_root=str(EXAMPLES),
                      output_dir=str(job), epochs=1, target_modules=targets)
        with pytest.raises(TrainingError) as refused:
            run(spec, JobFiles(job), StopFlag())
        assert refused.value.problem.key == key and said in str(refused.value), str(refused.value)
        if key == "targets_miss_layers":
            assert "linear attention layers (3 of 4 layers: 0, 1, 2)" in str(refused.value)
        assert not JobFiles(job).metrics.exists() or "loss" not in JobFiles(job).metrics.read_text()


def test_lmdeploy_serves_only_the_families_it_can(monkeypatch, tmp_path):
    """On a GPU with LMDeploy installed, auto picks it for Qwen3-VL; SmolVLM2 and BLIP-2, which LMDeploy
    0.18 does not serve, stay on transformers, and --engine lmdeploy for them is a sentence."""
    from backend.inference import lmdeploy_server
    from backend.models.loading import ModelSource
    from backend.services import choose_engine
    from backend.settings import Settings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(lmdeploy_server, "default_command", lambda workdir: ("lmdeploy",))
    assert choose_engine(Settings(workdir=tmp_path), ModelSource("m", "qwen3_vl"))[0] == "lmdeploy"
    for family in ("smolvlm", "blip-2"):
        name, why = choose_engine(Settings(workdir=tmp_path), ModelSource("m", family))
        assert name == "transformers" and f"LMDeploy does not serve {FAMILIES[family].label}" in why
        with pytest.raises(ModelLoadError, match="--engine transformers"):
            choose_engine(Settings(workdir=tmp_path, engine="lmdeploy"), ModelSource("m", family))


def test_lora_on_the_vision_tower_is_asked_for_and_trains_on_padded_batches(tiny_models):
    from transformers import AutoModelForImageTextToText

    from backend.training.model import model_type_of, packs, why_padded
    from backend.training.targets import lora_targets

    model = AutoModelForImageTextToText.from_pretrained(str(tiny_models["qwen3_vl"]))
    language = lora_targets(model, ["all-linear"])
    both = lora_targets(model, ["all-linear"], vision=True)
    tower = set(both) - set(language)
    assert tower and all(".visual." in name for name in tower) and not any("lm_head" in name for name in both)
    spec = preset("demo-cpu", model=str(tiny_models["qwen3_vl"]), data_file="x.json",
                  trains="language-lora+vision-lora")
    kind = model_type_of(spec)
    assert packs(spec.with_changes(trains="language-lora"), kind) and not packs(spec, kind)
    assert "vision tower" in why_padded(spec, model_type_of(spec))
