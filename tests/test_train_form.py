"""The Train form refilled from a job's saved spec ("use its settings"): which data, which preset,
which numbers. Through the running app, tests/test_train_compare_e2e.py starts a job again from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from backend.catalog import newest_checkpoint
from backend.data import build_training_set, read_bundled_sample
from backend.training.demo_data import demo_spec
from backend.training.job_form import DEMO_SOURCE, FIELDS, form_from_spec, preset_values
from backend.training.jobs import JobStore
from backend.training.spec import preset
from tests.conftest import own_workdir


@pytest.fixture
def workdir(demo_workdir: Path, tmp_path: Path) -> Path:
    """A work folder with the demo model (copied) and one saved training set."""
    folder = own_workdir(demo_workdir, tmp_path / "work")
    build_training_set(read_bundled_sample().records, folder / "datasets" / "sivqa-set", heldout_ratio=0.25,
                       tasks=("sivqa",))
    return folder


def queued_spec(workdir: Path, spec):
    """The spec as the job store keeps it (its paths resolved), the way the form meets it later."""
    job = JobStore(workdir / "runs").submit(spec)
    return JobStore(workdir / "runs").get(job.id).spec


def test_a_demo_job_fills_the_form_as_it_was_started(workdir: Path) -> None:
    spec = queued_spec(workdir, demo_spec(workdir, epochs=2, lora_r=8, learning_rate=0.002))
    fill = form_from_spec(spec, workdir, spec.model)
    assert fill.source == DEMO_SOURCE and fill.preset == "demo-cpu"
    assert fill.name == "" and fill.model == ""  # the form named the job and chose the app's model itself
    expected = dict(zip(FIELDS, preset_values("demo-cpu")), epochs=2, lora_r=8, learning_rate=0.002)
    assert fill.values == [expected[field] for field in FIELDS]
    assert fill.other_settings == []


def test_a_saved_set_job_finds_its_set_its_preset_and_its_own_name(workdir: Path) -> None:
    folder = workdir / "datasets" / "sivqa-set"
    spec = preset("2b-gpu", model="Qwen/Qwen2-VL-2B-Instruct", data_file=str(folder / "train.json"),
                  eval_file=str(folder / "heldout.json"), image_root=str(workdir), name="sivqa r16",
                  lora_r=16, gradient_checkpointing=False, device="cpu")
    fill = form_from_spec(queued_spec(workdir, spec), workdir, "/models/demo")
    assert fill.source == str(folder.resolve()) and fill.preset == "2b-gpu"
    assert fill.name == "sivqa r16" and fill.model == "Qwen/Qwen2-VL-2B-Instruct"
    values = dict(zip(FIELDS, fill.values))
    assert values["lora_r"] == 16 and values["gradient_checkpointing"] is False and values["epochs"] == 3
    assert fill.other_settings == []


def test_a_job_whose_set_was_deleted_leaves_the_data_to_pick_again(workdir: Path) -> None:
    folder = workdir / "datasets" / "sivqa-set"
    spec = queued_spec(workdir, demo_spec(workdir, data_file=str(folder / "train.json"), name="sivqa-set"))
    shutil.rmtree(folder)
    fill = form_from_spec(spec, workdir, spec.model)
    assert fill.source is None
    assert fill.name == "sivqa-set"  # the set's name stays: it says which data the job had


def test_settings_the_form_does_not_show_are_named(workdir: Path) -> None:
    """A job queued from a script, with settings no preset has: the form cannot carry them, and says which."""
    spec = queued_spec(workdir, demo_spec(workdir, merge=True, seed=7, lora_dropout=0.1))
    fill = form_from_spec(spec, workdir, spec.model)
    assert fill.preset == "demo-cpu"
    assert fill.other_settings == ["lora_dropout", "merge", "seed"]


def test_a_job_that_saved_no_checkpoint_has_none_to_chat_with(workdir: Path) -> None:
    """"Chat with it" warns instead of opening the Chat tab on nothing (the browser test opens a real one)."""
    store = JobStore(workdir / "runs")
    queued = store.submit(demo_spec(workdir))
    assert newest_checkpoint(store, queued.id) is None
    assert newest_checkpoint(store, None) is None
