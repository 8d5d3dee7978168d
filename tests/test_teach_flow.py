"""Teach it a dish, through the running app (gradio_client only): two wrong answers about two photos
corrected in Chat, a replay set chosen, "Train on my notes", then Compare on the last note: the new
checkpoint says the correction, the base does not, and the table labels trained-on and held-out."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from backend.data import load_training_set
from backend.data.sources import read_source
from tests.conftest import EXAMPLES, AppProcess, own_workdir
from tests.test_dataset_tab import load, save

CORRECTIONS = {"jiaozi-0.jpg": "这是东北水饺，皮薄馅大。", "xihu-cuyu-2.jpg": "这是西湖醋鱼，酸甜鲜嫩。"}


@pytest.fixture(scope="module")
def teach_app(demo_workdir, tmp_path_factory):
    folder = own_workdir(demo_workdir, tmp_path_factory.mktemp("teach"))
    with AppProcess(["--workdir", str(folder), "--lang", "zh"], folder / "app.log") as app:
        yield app, folder


def wait_for(client: Client, job_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.predict(job_id, api_name="/train_status")
        if status["state"] not in ("queued", "running"):
            return status
        time.sleep(1)
    raise AssertionError(f"job {job_id} still running after {timeout}s")


def test_two_corrections_and_a_replay_set_teach_the_checkpoint_what_the_base_does_not_say(teach_app):
    app, workdir = teach_app
    client = Client(app.url, verbose=False)
    # a correction before any answer opens nothing (the page says why: tests/test_taste_notes.py)
    assert client.predict(api_name="/correct")[0] == {"__type__": "update"}  # gr.skip(): left as it was

    for name, right in CORRECTIONS.items():
        client.predict(api_name="/clear")
        client.predict({"text": "这是什么菜？", "files": [handle_file(str(EXAMPLES / "images" / name))]}, 32, 0.0, 0.9,
                       "base", api_name="/chat")
        target, _ = client.predict(api_name="/correct")
        assert "这是什么菜？" in target
        client.predict("text", right, "", "", api_name="/chat_correct_save")

    load(client, "sample")
    save(client, "replay-sivqa", tasks=["sivqa"], heldout=0.25, replace=True)
    client.predict("replay-sivqa", api_name="/note_replay")

    job_id, progress, *_ = client.predict(api_name="/teach_train")
    assert "教学：2 条笔记" in progress
    status = wait_for(client, job_id)
    assert status["state"] == "succeeded", status

    # the notes on disk: photos copied in, a saved set in the usual format, read as any LLaVA file is
    folder = workdir / "datasets" / "taste-notes"
    notes = json.loads((folder / "notes.json").read_text(encoding="utf-8"))
    assert [n["answer"] for n in notes] == list(CORRECTIONS.values())
    assert all((folder / n["photo"]).is_file() and (folder / n["photo"]).parent == folder / "photos" for n in notes)
    saved = load_training_set(folder)
    assert [r.turns[-1].text for r in saved.train] == list(CORRECTIONS.values())
    read = read_source("folder", str(folder / "train.json"), None, workdir, None, "test").result
    assert not read.problems and len(read.records) == 2
    spec = json.loads((workdir / "jobs" / job_id / "spec.json").read_text(encoding="utf-8"))
    assert spec["notes"] == [n["id"] for n in notes] and spec["replay_set"] == "replay-sivqa"
    assert spec["replay_samples"] == len(load_training_set(workdir / "datasets" / "replay-sivqa").train)

    # Compare on the newest note: base on the left, the new checkpoint on the right
    message, left, right, shown_job = client.predict(job_id, api_name="/teach_compare")
    assert message["text"] == "这是什么菜？" and Path(message["files"][0]).read_bytes() == (
        EXAMPLES / "images" / "xihu-cuyu-2.jpg").read_bytes()
    assert left["value"] == "base" and right["value"] == f"{job_id}:final" and shown_job == job_id
    left_chat, right_chat = client.predict({"text": message["text"], "files": [handle_file(message["files"][0])]},
                                           "base", f"{job_id}:final", 64, api_name="/compare")
    assert right_chat[-1]["content"][0]["text"] == CORRECTIONS["xihu-cuyu-2.jpg"]
    assert left_chat[-1]["content"][0]["text"] != CORRECTIONS["xihu-cuyu-2.jpg"]

    # and the same question on its other note (trained on) and on other dishes' photos (held out)
    photos, table = client.predict(job_id, api_name="/compare_taught")
    rows = table["data"]
    assert rows[0][1] == "训练过" and {row[1] for row in rows[1:]} == {"留出"}
    assert rows[0][3] == rows[0][5] == CORRECTIONS["jiaozi-0.jpg"]  # learned: it says the note's answer
    assert len(photos) == len(rows)


def test_a_failed_teaching_job_says_why_in_chat_and_the_notes_stay(demo_workdir, tmp_path):
    from backend.problems import Problem
    from backend.services import Services
    from backend.settings import Settings
    from backend.taste_notes import TasteNotes
    from backend.training.jobs import JobStore
    from backend.training.teach import teach_spec
    from ui.teach import progress_markdown

    workdir = own_workdir(demo_workdir, tmp_path / "work")
    services = Services(Settings(workdir=workdir), None, None, 112 * 112, [], JobStore(workdir))
    notes = TasteNotes(workdir)
    notes.add(EXAMPLES / "images" / "jiaozi-0.jpg", "这是什么菜？", "饺子。")
    job = services.jobs.submit(teach_spec(workdir, str(next((workdir / "models").iterdir())), True, notes, "zh"))
    services.jobs.claim(job.id, "test", "cpu")
    services.jobs.finish(job.id, "failed", Problem("disk_full", "The disk holding {folder} is full.",
                                                   folder="/runs"), 1)
    line, polling, succeeded = progress_markdown(services, job.id, "zh")
    assert "失败" in line and "磁盘已满" in line and "笔记都还在" in line
    assert not polling and not succeeded
    assert [n.answer for n in notes.notes()] == ["饺子。"]
