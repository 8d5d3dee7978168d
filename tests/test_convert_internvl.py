"""InternVL2 in its original layout: refused with a sentence on converting it, and converted to
transformers' own InternVL giving the very logits of the model it was written from."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from backend.inference.engine import Turn
from backend.models.loading import ModelLoadError, load, load_processor, resolve
from tests.conftest import EXAMPLES, ROOT
from tests.internvl2_original import build_reference, write_original


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    root = tmp_path_factory.mktemp("internvl2")
    reference = build_reference(root / "reference")
    return reference, write_original(reference, root / "InternVL2-tiny")


def test_the_original_layout_is_refused_with_the_command_that_converts_it(original):
    _, folder = original
    with pytest.raises(ModelLoadError) as refused:
        resolve(str(folder))
    assert refused.value.problem.key == "model_original_internvl"
    assert "python -m backend.models.convert_internvl" in str(refused.value)


def test_the_converted_model_gives_the_original_models_logits(original, tmp_path):
    from transformers import AutoModelForImageTextToText

    reference, folder = original
    done = subprocess.run([sys.executable, "-m", "backend.models.convert_internvl", str(folder), str(tmp_path / "hf")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    source = resolve(str(tmp_path / "hf"))
    assert source.family == "internvl"
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["text_config"]["model_type"] == "llama" and config["text_config"]["rope_parameters"]["factor"] == 2.0
    assert config["text_config"]["architectures"] == ["LlamaForCausalLM"]  # what LMDeploy's loader looks up

    from backend.inference.transformers_engine import TransformersEngine

    engine = TransformersEngine(load(source))
    turns = [Turn("user", "这是什么菜？", (str(EXAMPLES / "images" / "jiaozi-0.jpg"),))]
    inputs = engine.prepare(turns)
    want_inputs = TransformersEngine(load(resolve(str(reference)))).prepare(turns)
    assert torch.equal(inputs["input_ids"], want_inputs["input_ids"])  # the same prompt, pictures and all
    with torch.no_grad():
        got = AutoModelForImageTextToText.from_pretrained(str(tmp_path / "hf")).eval()(**inputs).logits
        want = AutoModelForImageTextToText.from_pretrained(str(reference)).eval()(**inputs).logits
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (got - want).abs().max()
    assert load_processor(source).image_token == "<IMG_CONTEXT>"


def test_a_folder_that_is_not_the_original_layout_is_not_converted(tiny_models, tmp_path):
    from backend.models.convert_internvl import main

    assert main([str(tiny_models["qwen2_vl"]), str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out").exists()
