"""Job specs and training data, checked before anything is queued: what a person typing settings
or bringing their own data sees as sentences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.training.samples import SampleError, read_samples, sample_from_record
from backend.training.spec import PRESETS, JobSpec, SpecError, preset

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.json"
    path.write_text(json.dumps([{"id": "1", "image": "images/jiaozi-0.jpg", "conversations": [
        {"from": "human", "value": "<image>\n这是什么菜？"}, {"from": "gpt", "value": "饺子。"}]}]))
    return path


def spec(data_file: Path, /, **changes) -> JobSpec:
    settings = dict(model=str(ROOT), data_file=str(data_file), image_root=str(EXAMPLES))
    return preset("demo-cpu", **{**settings, **changes})


def test_presets_are_valid_and_differ_where_they_should(data_file: Path) -> None:
    demo = spec(data_file).validate()
    big = preset("2b-gpu", model=str(ROOT), data_file=str(data_file)).validate(check_files=False)
    assert (big.lora_r, big.lora_alpha, big.learning_rate) == (128, 256, 3e-5)  # the course's recipe
    assert big.bf16 and big.device == "cuda" and big.gradient_checkpointing
    assert demo.device == "cpu" and demo.lora_r < big.lora_r
    assert set(PRESETS) == {"demo-cpu", "2b-gpu", "7b-qlora-24gb", "llava-two-stage"}
    qlora = preset("7b-qlora-24gb", model=str(ROOT), data_file=str(data_file)).validate(check_files=False)
    assert qlora.qlora and qlora.device == "cuda" and qlora.gradient_checkpointing and qlora.trains == "language-lora"
    two_stage = preset("llava-two-stage", model=str(ROOT), data_file=str(data_file)).validate(check_files=False)
    assert two_stage.trains == "language-lora+projector"  # stage 2: LoRA, the projector trained on


@pytest.mark.parametrize("changes, words", [
    ({"learning_rate": 0.0}, "learning rate must be above 0"),
    ({"learning_rate": -1e-4}, "learning rate must be above 0"),
    ({"learning_rate": 5.0}, "would destroy the model"),
    ({"lora_r": 0}, "rank must be at least 1"),
    ({"lora_alpha": 0}, "alpha must be above 0"),
    ({"lora_dropout": 1.0}, "dropout must be at least 0 and below 1"),
    ({"batch_size": 0}, "batch size must be at least 1"),
    ({"grad_accum": 0}, "accumulation must be at least 1"),
    ({"epochs": 0}, "at least 1 epoch"),
    ({"warmup_ratio": 1.0}, "warmup ratio"),
    ({"max_image_pixels": 100}, "too small to see anything"),
    ({"max_image_pixels": 10**9}, "far more than any model uses"),
    ({"keep_last": 0}, "Keep at least the last checkpoint"),
    ({"save_every": -1}, "Save every N steps"),
    ({"target_modules": []}, "at least one target module"),
    ({"target_modules": ["model.*q_proj"]}, "plain module names"),
    ({"device": "tpu"}, "device must be one of"),
    ({"gpus": 2}, "Several GPUs were asked for, but the device is cpu"),
    ({"deepspeed": "zero3"}, "DeepSpeed is no longer supported: to split a model across GPUs, remove \"deepspeed\" "
                             "from the spec and set \"shard\": true (torch's FSDP2)"),
    ({"shard": True, "score_set": "."}, "scored while training only in LoRA jobs that are not sharded"),
    ({"full_language_model": True, "merge": True}, "writes a whole model already"),
    ({"shard": True, "merge": True}, "A sharded job writes its adapter only"),
    ({"shard": True, "compile_layers": True}, "Compiled layers and sharding cannot be combined"),
    ({"model": ""}, "Choose a model"),
    ({"model": "/no/such/model"}, "model folder /no/such/model does not exist"),
    ({"data_file": "/no/such.json"}, "training data file /no/such.json does not exist"),
    ({"eval_file": "/no/held-out.json"}, "held-out data file"),
    ({"image_root": "/no/pictures"}, "image folder /no/pictures does not exist"),
    ({"trains": "language-lora+tower"}, "What trains is made of language-lora, vision-lora, projector, language-full"),
    ({"trains": "+"}, "What trains is made of"),
    ({"trains": "language-lora+language-full"}, "either with LoRA or whole, not both"),
    ({"qlora": True}, "QLoRA needs a GPU (bitsandbytes' 4-bit kernels run on CUDA)"),  # the demo preset: cpu
    ({"qlora": True, "device": "auto", "trains": "language-full"}, "the whole language model cannot train with it"),
    ({"paged_optimizer": True}, "The paged optimizer comes with QLoRA"),
    ({"projector_from": "/a/checkpoint"}, "needs the projector among what trains"),
])
def test_impossible_settings_are_refused_with_a_sentence(data_file: Path, changes: dict, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        spec(data_file, **changes).validate()
    assert words in str(caught.value)
    assert str(caught.value).endswith(".")


def test_every_problem_is_reported_at_once(data_file: Path) -> None:
    problems = spec(data_file, learning_rate=0.0, batch_size=0, lora_r=0).problems()
    assert len(problems) == 3


def test_a_hub_id_is_not_checked_as_a_folder(data_file: Path) -> None:
    assert spec(data_file, model="Qwen/Qwen2-VL-2B-Instruct").problems() == []


def test_spec_round_trips_through_json_and_rejects_typos_and_wrong_types(data_file: Path, tmp_path: Path) -> None:
    original = spec(data_file, name="我的菜")
    original.save(tmp_path / "spec.json")
    assert JobSpec.load(tmp_path / "spec.json") == original
    with pytest.raises(SpecError, match="no setting called 'learning_rat'"):
        JobSpec.from_dict({"learning_rat": 1e-4})
    with pytest.raises(SpecError, match="batch_size must be a whole number"):
        JobSpec.from_dict({"batch_size": "eight"})
    with pytest.raises(SpecError, match="epochs must be a whole number, it is empty"):
        JobSpec.from_dict({"epochs": None})  # an emptied number field in the Train tab
    with pytest.raises(SpecError, match="bf16 must be true or false"):
        JobSpec.from_dict({"bf16": 1})
    assert JobSpec.from_dict({"target_modules": "q_proj, v_proj"}).target_modules == ["q_proj", "v_proj"]


def test_an_older_jobs_spec_with_deepspeed_off_still_loads(data_file: Path, tmp_path: Path) -> None:
    """Every field is saved, so spec.json files of jobs from before DeepSpeed was retired hold
    "deepspeed": "": resuming them, or using their settings, must still work. One that asked for
    ZeRO is told why it cannot run."""
    original = spec(data_file)
    old = {**original.to_dict(), "deepspeed": ""}
    (tmp_path / "spec.json").write_text(json.dumps(old))
    assert JobSpec.load(tmp_path / "spec.json") == original
    with pytest.raises(SpecError) as caught:
        JobSpec.from_dict({**old, "deepspeed": "zero2"})
    assert [problem.key for problem in caught.value.problems] == ["deepspeed_retired"]


def test_an_older_jobs_lora_vision_becomes_what_trains(data_file: Path) -> None:
    """Jobs from before `trains` said `lora_vision`; off it asked for nothing new, on it meant LoRA on the
    vision tower too."""
    assert JobSpec.from_dict({"lora_vision": False}).trains == "language-lora"
    assert JobSpec.from_dict({"lora_vision": True}).parts == {"language-lora", "vision-lora"}
    with pytest.raises(SpecError, match="no setting called 'lora_vision'"):
        JobSpec.from_dict({"lora_vision": "yes"})


# --- the LLaVA / XTuner data contract -------------------------------------------------------------


def record(conversations: list[dict], **extra) -> dict:
    return {"id": "s1", "conversations": conversations, **extra}


def test_placeholders_become_image_parts_in_place() -> None:
    sample = sample_from_record(record([{"from": "human", "value": "<image>\n这是什么菜？"},
                                        {"from": "gpt", "value": "饺子。"},
                                        {"from": "human", "value": "什么味道？"},
                                        {"from": "gpt", "value": "鲜。"}], image="images/jiaozi-0.jpg"), EXAMPLES)
    assert sample.messages[0]["content"] == [{"type": "image"}, {"type": "text", "text": "这是什么菜？"}]
    assert [m["role"] for m in sample.messages] == ["user", "assistant", "user", "assistant"]
    assert sample.answers == ["饺子。", "鲜。"]
    assert sample.images == (EXAMPLES / "images/jiaozi-0.jpg",)


def test_pictures_without_a_marker_go_before_the_first_question() -> None:
    sample = sample_from_record(record([{"from": "human", "value": "Which two?"}, {"from": "gpt", "value": "Both."}],
                                       images=["images/jiaozi-0.jpg", "images/yuebing-0.jpg"]), EXAMPLES)
    assert [p["type"] for p in sample.messages[0]["content"]] == ["image", "image", "text"]


def test_text_only_samples_and_trailing_questions() -> None:
    sample = sample_from_record(record([{"from": "system", "value": "You know food."},
                                        {"from": "human", "value": "饺子是哪里的？"},
                                        {"from": "gpt", "value": "东北。"},
                                        {"from": "human", "value": "还有呢？"}]), EXAMPLES)
    assert sample.images == () and [m["role"] for m in sample.messages] == ["system", "user", "assistant"]


@pytest.mark.parametrize("bad, words", [
    (record([{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]),
     "1 <image> markers but 0 pictures"),
    (record([{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], image="images/nope.jpg"),
     "was not found"),
    (record([{"from": "human", "value": "q"}]), "no answer to learn"),
    (record([{"from": "robot", "value": "q"}, {"from": "gpt", "value": "a"}]), "unknown speaker"),
    ({"id": "s1"}, "no conversations"),
])
def test_unusable_samples_say_why(bad: dict, words: str) -> None:
    with pytest.raises(SampleError, match=words):
        sample_from_record(bad, EXAMPLES)


def test_a_file_with_some_bad_samples_keeps_the_good_ones(tmp_path: Path) -> None:
    good = record([{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}],
                  image="images/jiaozi-0.jpg")
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps([good, {"id": "broken"}, good]))
    samples, problems = read_samples(path, EXAMPLES)
    assert len(samples) == 2 and len(problems) == 1 and "broken" in problems[0]


def test_the_dataset_tabs_export_reads_back_as_training_samples(tmp_path: Path) -> None:
    """The contract with backend/data: what it exports for training, this reader trains on."""
    from backend.data import export_llava, read_bundled_own_data, read_bundled_sample, to_training_samples

    records = to_training_samples(read_bundled_sample().records) + list(read_bundled_own_data().records)
    exported = export_llava(records, tmp_path / "export.json", EXAMPLES)
    samples, problems = read_samples(exported, EXAMPLES)
    assert problems == [] and len(samples) == len(records) > 0
    assert all(s.answers and all(s.answers) for s in samples)
