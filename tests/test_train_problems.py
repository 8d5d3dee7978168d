"""The Train tab says why a job cannot run in the page's language (ui/train_problems.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backend.training import jobs as jobs_module
from backend.training import spec as spec_module
from backend.training.spec import JobSpec, SpecError, preset
from ui.problems import say, say_all
from ui.train_problems import ZH


def every_problem(tmp_path: Path) -> list[str]:
    """As many of the spec's reasons as one spec and one form can give at once."""
    impossible = JobSpec(
        model=str(tmp_path / "no-model"), data_file=str(tmp_path / "no-data.json"),
        image_root=str(tmp_path / "no-images"), eval_file=str(tmp_path / "no-heldout.json"),
        lora_r=0, lora_alpha=0, lora_dropout=1.5, target_modules=["q.*"], learning_rate=5.0,
        lr_schedule="zigzag", warmup_ratio=2.0, weight_decay=-1, max_grad_norm=-1, epochs=0,
        batch_size=0, grad_accum=0, max_image_pixels=10, max_length=8, save_every=-1, keep_last=0,
        eval_every=-1, log_every=0, device="tpu", gpus=0, deepspeed="zero9", pack_tokens=0,
        vision_cache_gb=-1, data_workers=-1, threads=-1)
    problems = impossible.problems()
    try:
        JobSpec.from_dict({"epochs": None, "batch_size": "four", "colour": "red"})
    except SpecError as err:
        problems += err.problems
    try:
        preset("no-such-preset")
    except SpecError as err:
        problems += err.problems
    return problems


def test_every_reason_the_spec_and_the_job_store_can_give_has_a_chinese_sentence():
    for module, least in ((spec_module, 30), (jobs_module, 4)):
        source = Path(module.__file__).read_text(encoding="utf-8")
        keys = set(re.findall(r'(?:add|Problem)\(\s*"([a-z_]+)"', source))
        assert len(keys) >= least, keys  # the pattern still finds the module's reasons
        assert keys - set(ZH) == set()


def test_reasons_are_said_in_chinese_with_their_values_and_in_english_unchanged(tmp_path):
    problems = every_problem(tmp_path)
    assert len(problems) >= 30  # some reasons exclude each other (no model / a missing model folder)
    for problem in problems:
        assert say(problem, "en") == str(problem)
        chinese = say(problem, "zh")  # a placeholder the spec does not fill would raise here
        assert chinese != str(problem) and re.search(r"[\u4e00-\u9fff]", chinese), chinese
    said = say_all(problems, "zh")
    assert "轮数" not in said  # without the form's labels, settings are named as in the spec
    assert "epochs 必须是整数，现在是空的。" in said
    assert "batch_size 必须是整数，不能是 'four'。" in said
    assert f"模型文件夹 {tmp_path / 'no-model'} 不存在。" in said
    assert "任务至少需要 1 个 GPU" in said


def test_a_reason_without_a_translation_is_shown_in_english_not_dropped():
    assert say("Something only said in English.", "zh") == "Something only said in English."
    assert say_all(["One.", "Two."], "en") == "One. Two."


def test_a_reason_about_a_form_field_names_it_as_the_form_does():
    try:
        JobSpec.from_dict({"batch_size": None})
    except SpecError as err:
        problems = err.problems
    assert say_all(problems, "zh", {"batch_size": "批大小"}) == "批大小 必须是整数，现在是空的。"
    assert say_all(problems, "en", {"batch_size": "Batch size"}) == "Batch size must be a whole number, it is empty."
    assert say_all(problems, "en") == "batch_size must be a whole number, it is empty."


def test_what_a_job_action_cannot_do_is_said_in_chinese(tmp_path):
    from backend.training.jobs import JobError, JobStore

    store = JobStore(tmp_path)
    with pytest.raises(JobError) as refused:
        store.cancel("no-such-job")
    assert str(refused.value) == "There is no job no-such-job (it may have been deleted)."
    assert say(refused.value.args[0], "zh") == "没有任务 no-such-job（它可能已被删除）。"
