"""The Train tab says why a job cannot run in the page's language (ui/locales/zh.toml's [problems])."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backend.training import jobs as jobs_module
from backend.training import spec as spec_module
from backend.training.spec import JobSpec, SpecError, preset
from ui.problems import ZH, say, say_all


def every_problem(tmp_path: Path) -> list[str]:
    """As many of the spec's reasons as one spec and one form can give at once."""
    impossible = JobSpec(
        model=str(tmp_path / "no-model"), data_file=str(tmp_path / "no-data.json"),
        image_root=str(tmp_path / "no-images"), eval_file=str(tmp_path / "no-heldout.json"),
        lora_r=0, lora_alpha=0, lora_dropout=1.5, target_modules=["q.*"], learning_rate=5.0,
        lr_schedule="zigzag", warmup_ratio=2.0, weight_decay=-1, max_grad_norm=-1, epochs=0,
        batch_size=0, grad_accum=0, max_image_pixels=10, max_length=8, save_every=-1, keep_last=0,
        eval_every=-1, log_every=0, device="tpu", gpus=0, pack_tokens=0,
        vision_cache_gb=-1, data_workers=-1, threads=-1)
    problems = impossible.problems()
    try:
        JobSpec.from_dict({"epochs": None, "batch_size": "four", "colour": "red", "deepspeed": "zero9"})
    except SpecError as err:
        problems += err.problems
    try:
        preset("no-such-preset")
    except SpecError as err:
        problems += err.problems
    return problems


def test_every_reason_the_spec_and_the_job_store_can_give_has_a_chinese_sentence():
    from backend.training import qlora, trained_parts, two_stage

    for module, least in ((spec_module, 30), (jobs_module, 4), (qlora, 2), (trained_parts, 6), (two_stage, 2)):
        source = Path(module.__file__).read_text(encoding="utf-8")
        keys = set(re.findall(r'(?:add|Problem|TrainingError)\(\s*"([a-z_]+)"', source))
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


def test_every_reason_a_job_ends_with_has_a_chinese_sentence_with_the_same_values():
    from backend.training import checkpoints, lora, worker
    from tests.test_data_problems import fields, raised_sentences

    # TrainingError in every module of the training program (wherever a reason moves), and the
    # Problems the job's end is told with (spec.py's are the form's, checked with the form)
    folder = Path(lora.__file__).parent
    sentences = raised_sentences(sorted(folder.glob("*.py")), errors=("TrainingError",), problems_in=())
    sentences |= raised_sentences([Path(module.__file__) for module in (worker, lora, checkpoints)],
                                  errors=("TrainingError",), problems_in=(folder,))
    # and why the model could not be used (backend/models/loading.py)
    from backend.models import loading
    sentences |= raised_sentences([Path(loading.__file__)], errors=("ModelLoadError",), problems_in=())
    assert {"cancelled", "resume_from_step", "no_usable_sample", "out_of_memory_packed", "disk_full_final",
            "training_failed", "model_config_unreadable", "weights_unloadable"} <= set(sentences), sorted(sentences)
    assert set(sentences) - set(ZH) == set()
    for key, sentence in sentences.items():
        assert fields(ZH[key]) == fields(sentence), key


def test_why_a_job_ended_is_kept_with_its_key_and_said_in_the_pages_language(tmp_path, demo_workdir):
    """The worker's reason (here: cancelled before a checkpoint) goes into jobs.sqlite with its key
    and values; read back, the Train tab says it in Chinese, and in English as it was written."""
    import pandas as pd

    from backend.training import views
    from backend.training.demo_data import demo_spec
    from backend.training.jobs import JobStore
    from backend.training.worker import outcome
    from ui.train import job_table

    store = JobStore(tmp_path / "runs")
    job = store.submit(demo_spec(demo_workdir))
    assert store.claim(job.id, "test-worker", "cpu")
    store.cancel(job.id)
    state, error = outcome(store.get(job.id), exit_status=None)
    store.finish(job.id, state, error, None)
    ended = JobStore(tmp_path / "runs").get(job.id)  # as another process (the app) reads it
    assert ended.state == "cancelled"
    assert ended.error == "Cancelled. No checkpoint was saved yet, so resume starts from the beginning."
    assert say(ended.error, "zh") == "已取消。还没有保存过检查点，继续训练会从头开始。"
    table = job_table(views.job_rows(store), "zh")
    assert isinstance(table, pd.DataFrame) and table.iloc[0, -1] == "已取消。还没有保存过检查点，继续训练会从头开始。"
    assert job_table(views.job_rows(store), "en").iloc[0, -1] == ended.error
    store.resume(job.id)
    assert store.get(job.id).error is None


def test_a_jobs_database_of_an_older_version_gains_the_new_column(tmp_path):
    import sqlite3

    from backend.training.jobs import SCHEMA, JobStore

    old = SCHEMA.replace("    error_problem    TEXT,                       -- that sentence's key and values as JSON "
                         "(problems.py)\n", "")
    assert old != SCHEMA
    (tmp_path / "jobs").mkdir()
    with sqlite3.connect(tmp_path / "jobs.sqlite") as conn:
        conn.executescript(old)
        conn.execute("INSERT INTO jobs (id, name, spec, state, created, error) VALUES "
                     "('old-job', '', '{}', 'failed', 0, 'An old sentence.')")
    store = JobStore(tmp_path)
    assert store.get("old-job").error == "An old sentence."  # kept, said in English everywhere
    assert say(store.get("old-job").error, "zh") == "An old sentence."


def test_a_model_the_training_program_cannot_use_is_said_in_the_pages_language(tmp_path, demo_workdir):
    """A real job (the worker and the training program's own process) on a model folder that holds a
    text-only model: the reason it failed is kept with its key, and a Chinese page says it in Chinese."""
    import time

    from backend.training.demo_data import demo_spec
    from backend.training.jobs import JobStore
    from backend.training.worker import Worker

    model = tmp_path / "a-llama"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    store = JobStore(tmp_path / "runs")
    job = store.submit(demo_spec(demo_workdir, model=str(model)))
    worker = Worker(store, gpus=[])
    deadline = time.monotonic() + 120
    while store.get(job.id).state in ("queued", "running") and time.monotonic() < deadline:
        worker.tick()
        time.sleep(0.2)
    ended = JobStore(tmp_path / "runs").get(job.id)  # as the app reads it
    assert ended.state == "failed", ended
    assert ended.error.startswith(f"{model} is a 'llama' model, not a vision-language model Foodie Studio supports")
    assert say(ended.error, "zh").startswith(f"{model} 是 'llama' 模型，不是 Foodie Studio 支持的视觉语言模型（")


def test_a_checkpoint_deleted_since_it_was_picked_is_said_in_the_pages_language():
    from backend.catalog import BASE_KEY, ModelChoice, ModelGone, find_choice

    with pytest.raises(ModelGone) as gone:
        find_choice([ModelChoice(BASE_KEY)], "20261201-104322-b44a:final")
    assert say(gone.value, "zh") == ("检查点 20261201-104322-b44a:final 已不存在（它的任务被删除了）；"
                                     "请在列表里重新选一个模型。")
    assert say(gone.value, "en") == ("The checkpoint 20261201-104322-b44a:final is no longer there (its job was "
                                     "deleted); pick a model from the list again.")
    assert isinstance(gone.value, ValueError)  # Chat and Compare warn on ValueError and carry on
