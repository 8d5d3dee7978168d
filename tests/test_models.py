"""Every family we claim loads from a folder laid out like a hub checkpoint and chats."""

from __future__ import annotations

import json

import pytest

from backend.inference.engine import GenerationSettings, Turn
from backend.inference.transformers_engine import TransformersEngine
from backend.models.loading import ModelLoadError, load, resolve
from tests.conftest import EXAMPLES, FAMILIES

PHOTO = str(EXAMPLES / "images" / "yuebing-0.jpg")
GREEDY = GenerationSettings(max_new_tokens=12)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_loads_and_answers_about_a_photo_over_two_turns(tiny_models, family):
    source = resolve(str(tiny_models[family]))
    assert source.family == family and source.is_tiny
    engine = TransformersEngine(load(source))
    turns = [Turn("user", "这是什么菜？", (PHOTO,))]
    first = "".join(engine.stream(turns, GREEDY))
    assert first.strip(), "a random model still produces tokens"
    turns += [Turn("assistant", first), Turn("user", "味道怎么样？")]
    second = "".join(engine.stream(turns, GREEDY))
    assert second.strip()
    # the follow-up sees the whole history, photo included: its prompt is longer than the first
    assert engine.prepare(turns)["input_ids"].shape[1] > engine.prepare(turns[:1])["input_ids"].shape[1]


def test_the_saved_processor_names_the_familys_own_class(tiny_models):
    config = json.loads((tiny_models["qwen2_vl"] / "processor_config.json").read_text())
    assert config["processor_class"] == "Qwen2VLProcessor"


def test_greedy_answers_repeat(tiny_models):
    engine = TransformersEngine(load(resolve(str(tiny_models["qwen2_vl"]))))
    turns = [Turn("user", "What dish is this?", (PHOTO,))]
    assert "".join(engine.stream(turns, GREEDY)) == "".join(engine.stream(turns, GREEDY))


def test_a_missing_folder_is_a_sentence(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve(str(tmp_path / "no-such-model"))


def test_a_folder_without_config_is_a_sentence(tmp_path):
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        resolve(str(tmp_path))


def test_a_text_only_model_is_refused_by_name(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "llama")
    with pytest.raises(ModelLoadError, match="'llama' model, not a vision-language model"):
        resolve(str(tmp_path / "llama"))


def test_an_unreachable_hub_id_is_a_sentence(monkeypatch):
    import huggingface_hub.constants

    # huggingface_hub reads HF_HUB_OFFLINE once, at import; set both so no retries are waited out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="local folder"):
        resolve("no-such-owner/no-such-model")


def test_a_gpu_this_machine_does_not_have_is_a_sentence():
    import torch

    from backend.models.loading import pick_device

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ModelLoadError) as refused:
        pick_device(f"cuda:{count}")  # one past the last
    if count == 0:
        assert refused.value.problem.key == "device_no_gpu"
        assert str(refused.value) == "--device cuda:0: torch sees no GPU on this machine; use --device cpu or auto."
    else:
        assert refused.value.problem.key == "device_no_such_gpu"
        assert f"torch sees {count} GPU(s) here, cuda:0 to cuda:{count - 1}." in str(refused.value)
    assert pick_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "mps"])
def test_a_device_the_app_does_not_know_is_refused_by_its_command_line(device, capsys):
    from backend.settings import from_args

    with pytest.raises(SystemExit):
        from_args(["--device", device])
    assert f"--device must be auto, cpu, cuda or cuda:N, not {device}" in capsys.readouterr().err
