"""The loop a person goes through, end to end through the running app (gradio_client only):
train the demo model in the Train tab, chat with the checkpoint, score it against the base.

These are the bars of the Train and Compare issues, checked the way a user would see them.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from tests.conftest import EXAMPLES
from tests.test_dataset_tab import load, save


def start_job(client: Client, source: str, name: str, scoring: str = "", **changes) -> str:
    """Queue a demo-cpu job on `source` with the preset's own values, as the form shows them (and
    `changes`), its checkpoints scored on `scoring` (an evaluation-set choice; "" for none)."""
    from backend.training.job_form import FIELDS
    from backend.training.spec import PRESETS, JobSpec

    values = [changes.get(f, PRESETS["demo-cpu"].get(f, getattr(JobSpec(), f))) for f in FIELDS]
    out = client.predict(source, "demo-cpu", name, "", *values, scoring, api_name="/train_start")
    picker = out[1]
    return picker["value"] if isinstance(picker, dict) else picker


def wait_for(client: Client, job_id: str, timeout: float = 400) -> dict:
    """The job's status (train_status: state, step, loss, ...) once it is neither queued nor running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.predict(job_id, api_name="/train_status")
        if status["state"] not in ("queued", "running"):
            return status
        time.sleep(2)
    raise AssertionError(f"job {job_id} still running after {timeout}s")


@pytest.fixture(scope="module")
def demo_job(app_server):
    client = Client(app_server.url, verbose=False)
    job_id = start_job(client, "demo", "e2e-demo")
    status = wait_for(client, job_id)
    assert status["state"] == "succeeded", status
    return job_id


def test_the_tuned_demo_model_answers_the_trained_questions_in_chat(app_server, demo_workdir, demo_job):
    samples = json.loads((demo_workdir / "data" / "demo-dishes.json").read_text(encoding="utf-8"))
    client = Client(app_server.url, verbose=False)
    exact = 0
    for sample in samples:
        question = sample["conversations"][0]["value"].replace("<image>\n", "")
        client.predict(api_name="/clear")
        job = client.submit({"text": question, "files": [handle_file(str(EXAMPLES / sample["image"]))]},
                            64, 0.0, 0.9, f"{demo_job}:final", api_name="/chat")
        chatbot = job.result(timeout=120)[0]
        reply = chatbot[-1]["content"][0]["text"].strip()
        exact += reply == sample["conversations"][1]["value"]
    assert exact >= 0.9 * len(samples), f"{exact}/{len(samples)} exact"


def test_a_checkpoint_beats_the_base_on_its_trained_questions_and_held_out_is_apart(app_server, demo_workdir):
    client = Client(app_server.url, verbose=False)
    load(client, "sample")
    save(client, "e2e-sivqa", tasks=["sivqa"], heldout=0.25, replace=True)
    folder = demo_workdir / "datasets" / "e2e-sivqa"
    assert (folder / "split.json").is_file()
    job_id = start_job(client, str(folder), "e2e-sivqa")
    assert wait_for(client, job_id)["state"] == "succeeded"

    def accuracies(set_name: str) -> list[float]:
        summary, *_, per_question, csv_file = client.predict("base", f"{job_id}:final", set_name, "zh", 16,
                                                              api_name="/score")
        assert set_name in summary
        # the CSV holds the per-question table under its headers, and was written in the work folder
        rows = list(csv.reader(io.StringIO(Path(csv_file["value"]).read_text(encoding="utf-8-sig"))))
        assert rows[0] == per_question["headers"] and len(rows) == len(per_question["value"]["data"]) + 1
        assert any((demo_workdir / "gradio-uploads" / "scores").glob("scores-*.csv"))
        return [float(x) for x in re.findall(r"\*\*: ([\d.]+)%", summary)]

    base, tuned = accuracies("trained · e2e-sivqa")
    assert tuned > base, f"trained questions: base {base}%, tuned {tuned}%"
    # Held-out questions are their own set and their own table: never mixed into the above.
    base_held, tuned_held = accuracies("held-out · e2e-sivqa")
    assert 0 <= base_held <= 100 and 0 <= tuned_held <= 100


def test_a_job_started_again_from_its_settings_is_the_same_job(app_server, demo_workdir):
    """"Use its settings" puts a job's data, preset and numbers back in the form; started from there
    with nothing changed, the new job's spec is the old one's."""
    from backend.training.job_form import FIELDS
    from backend.training.spec import PRESETS, JobSpec

    client = Client(app_server.url, verbose=False)
    values = dict(((f, PRESETS["demo-cpu"].get(f, getattr(JobSpec(), f))) for f in FIELDS),
                  epochs=2, lora_r=8, learning_rate=0.002, save_every=5)
    out = client.predict("demo", "demo-cpu", "again", "", *(values[f] for f in FIELDS), api_name="/train_start")
    first = out[1]["value"] if isinstance(out[1], dict) else out[1]
    client.predict(first, api_name="/train_cancel")

    form = client.predict(first, api_name="/train_reuse")
    assert list(form[:4]) == ["demo", "demo-cpu", "again", ""]
    assert dict(zip(FIELDS, form[4:])) == values

    out = client.predict(*form, api_name="/train_start")
    second = out[1]["value"] if isinstance(out[1], dict) else out[1]
    assert second != first
    # the job's settings in a line under its progress, to tell jobs apart
    assert "LoRA r 8 · alpha 64 · lr 0.002 · 2 epochs · batch 8 × 1 accumulation" in out[2], out[2]
    client.predict(second, api_name="/train_cancel")
    specs = [json.loads((demo_workdir / "jobs" / job / "spec.json").read_text(encoding="utf-8"))
             for job in (first, second)]
    assert specs[0].pop("output_dir") != specs[1].pop("output_dir")
    assert specs[0] == specs[1]
    for job in (first, second):
        client.predict(job, api_name="/train_delete")


def test_the_same_model_on_both_sides_is_scored_once_by_task_named_in_words(app_server):
    client = Client(app_server.url, verbose=False)
    summary, by_task, *_, per_question, _ = client.predict("base", "base", "bundled sample (all)", "en", 16,
                                                           api_name="/score")
    assert summary.count("%") == 1 and "scored once" in summary, summary
    assert len(by_task["headers"]) == 2  # the group and one model
    # tasks named as the Dataset tab names them, the total row last
    assert [row[0] for row in by_task["value"]["data"]] == ["multi-image", "single-image", "text", "all"]
    assert len(per_question["headers"]) == 6  # id, question, right answer; one model's pick, reply, mark


def test_what_flipped_and_the_general_probe_beside_the_scores(app_server, demo_job):
    """After scoring base against a checkpoint: the questions that flipped, per dish, and the probe,
    named as what it is (200 questions, never trained on; near chance on the demo model)."""
    client = Client(app_server.url, verbose=False)
    summary, *_ = client.predict("base", f"{demo_job}:final", "bundled sample (all)", "en", 16, api_name="/score")
    assert summary.count("%") == 2  # the set's score, one for each model
    probe, _, _, flips_line, _, flip_table, by_dish, _ = client.predict(True, api_name="/score_extras")
    assert "General (probe)" in probe and "200 questions" in probe and "never trained on" in probe
    assert "near chance" in probe
    fixed, broken = (int(n) for n in re.findall(r"(\d+) (?:went wrong|right →)", flips_line))
    assert len(flip_table["data"]) == fixed + broken
    assert by_dish["headers"][:2] == ["dish", "questions"]


def test_blind_votes_from_two_visitors_are_both_counted(app_server, demo_job):
    pair = ("base", f"{demo_job}:final")
    visitors = [Client(app_server.url, verbose=False) for _ in range(2)]
    for client, vote in zip(visitors, ("/taste_vote_a", "/taste_vote_b")):
        first = client.predict(*pair, "bundled sample (all)", "en", api_name="/taste_start")
        assert first[1].startswith("Question 1 of")  # the question shown, its sides hidden
        assert first[2].startswith("**A**") and first[3].startswith("**B**")
        client.predict(api_name=vote)
    revealed = visitors[0].predict(api_name="/taste_reveal")
    assert re.search(r"\b2 votes so far", revealed), revealed
    assert "win rate" in revealed and "95% interval" in revealed
