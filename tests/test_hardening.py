"""Many users, faults and access, against real `python app.py` processes: one app per work folder,
a full queue, uploads served only to their uploader, a data folder that disappears while browsed."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from tests.conftest import EXAMPLES, ROOT, AppProcess, free_port, own_workdir
from tests.test_dataset_tab import browse, load, record, rows

PHOTO = EXAMPLES / "images" / "peking-duck-0.jpg"


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# --- one app per work folder ---------------------------------------------------------------------------

def test_a_second_app_on_the_same_work_folder_is_refused_and_the_first_keeps_serving(demo_workdir, tmp_path):
    workdir = own_workdir(demo_workdir, tmp_path / "work")
    first = AppProcess(["--workdir", str(workdir)], tmp_path / "first.log")
    try:
        first.wait_ready()
        deadline = time.monotonic() + 60  # the page answers before its training worker has taken its own lock
        while not (workdir / "worker.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        before, lock_before = files_under(workdir), (workdir / "app.lock").read_text()
        started = time.monotonic()
        second = subprocess.run([sys.executable, "app.py", "--workdir", str(workdir), "--port", str(free_port())],
                                cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert time.monotonic() - started < 30  # refused before loading any model
        assert second.returncode == 3, second.stderr
        assert "Traceback" not in second.stderr
        assert (f"Another Foodie Studio (process {first.proc.pid}, http://127.0.0.1:{first.port}) is already "
                f"using the work folder {workdir.resolve()}") in second.stderr
        assert files_under(workdir) == before and (workdir / "app.lock").read_text() == lock_before
        assert Client(first.url, verbose=False).predict(api_name="/clear")[0] == []  # still serving
    finally:
        first.stop()


def test_a_port_in_use_is_a_sentence_before_the_model_loads(demo_workdir, tmp_path):
    workdir = own_workdir(demo_workdir, tmp_path / "work")
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        port = other_program.getsockname()[1]
        started = time.monotonic()
        app = subprocess.run([sys.executable, "app.py", "--workdir", str(workdir), "--port", str(port)],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 30, "refused before loading any model"
    assert app.returncode == 4, app.stderr
    assert "Traceback" not in app.stderr
    assert (f"Cannot listen on 127.0.0.1:{port} (Address already in use). Another program, or another Foodie "
            f"Studio with its own --workdir, may be using that port") in app.stderr, app.stderr
    assert f"--port {port + 1}" in app.stderr
    # the work folder is free again: the next app on it starts
    with AppProcess(["--workdir", str(workdir)], tmp_path / "next.log") as next_app:
        assert Client(next_app.url, verbose=False).predict(api_name="/clear")[0] == []


def test_a_work_folder_that_cannot_be_made_is_a_sentence(tmp_path):
    a_file = tmp_path / "runs"
    a_file.write_text("not a folder")
    app = subprocess.run([sys.executable, "app.py", "--workdir", str(a_file), "--port", str(free_port())],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert app.returncode == 3 and "Traceback" not in app.stderr, app.stderr
    assert (f"Cannot use {a_file} as the work folder (a file of that name is there); give --workdir a folder "
            "this user can create and write to.") in app.stderr
    assert a_file.read_text() == "not a folder"


def upload(url: str) -> Path:
    """One photo sent the way a browser sends it; returns where the app stored it."""
    with httpx.Client(base_url=url) as visitor:
        visitor.get("/")
        return Path(visitor.post("/gradio_api/upload", files={"files": ("mine.jpg", PHOTO.read_bytes())}).json()[0])


def test_after_a_sigkill_the_next_app_starts_on_the_same_folder(demo_workdir, tmp_path):
    workdir = own_workdir(demo_workdir, tmp_path / "work")
    first = AppProcess(["--workdir", str(workdir)], tmp_path / "first.log")
    first.wait_ready()
    orphan = upload(first.url)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    first.stop()
    assert json.loads((workdir / "app.lock").read_text())["pid"] == first.proc.pid  # the file stays...
    second = AppProcess(["--workdir", str(workdir)], tmp_path / "second.log")
    try:
        second.wait_ready()  # ...but the kernel released the lock with the process
        assert json.loads((workdir / "app.lock").read_text())["pid"] == second.proc.pid
        assert not orphan.exists()  # the killed run's uploads, whose owners are forgotten, are gone
    finally:
        second.stop()


# --- a full queue -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_queue_app(demo_workdir, tmp_path_factory):
    root = tmp_path_factory.mktemp("small-queue")
    workdir = own_workdir(demo_workdir, root / "work")
    with AppProcess(["--workdir", str(workdir), "--queue-size", "1"], root / "app.log") as app:
        app.workdir = workdir
        yield app


def test_visitors_beyond_the_queue_size_are_told_the_app_is_busy(small_queue_app):
    clients = [Client(small_queue_app.url, verbose=False) for _ in range(4)]
    # 2048 new tokens keep the demo model busy for seconds: one answers, one waits, the rest overflow.
    jobs = [c.submit({"text": "你好", "files": []}, 2048, 0.0, 0.9, "base", api_name="/chat") for c in clients]
    answered, busy = 0, []
    for job in jobs:
        try:
            chatbot = job.result(timeout=300)[0]
            assert chatbot[-1]["role"] == "assistant"
            answered += 1
        except Exception as err:  # gradio_client raises QueueError with its own sentence
            busy.append(f"{type(err).__name__}: {err}")
    assert answered >= 1 and busy and answered + len(busy) == 4
    assert all(line == "QueueError: Queue is full! Please try again." for line in busy), busy
    # Nothing was left broken: the next visitor is served.
    assert Client(small_queue_app.url, verbose=False).predict(
        {"text": "再来", "files": []}, 4, 0.0, 0.9, "base", api_name="/chat")[0][-1]["role"] == "assistant"
    assert small_queue_app.proc.poll() is None


def test_a_stopped_app_deletes_the_uploads_it_kept(small_queue_app):
    stored = upload(small_queue_app.url)
    assert stored.is_file() and stored.is_relative_to(small_queue_app.workdir / "gradio-uploads")
    small_queue_app.stop()  # SIGTERM: a clean shutdown, even with visitors still connected
    assert small_queue_app.proc.returncode == 0
    assert not stored.exists()


# --- uploads are served back only to their uploader -------------------------------------------------------

def fetch(url: str, path: str, cookies=None) -> httpx.Response:
    return httpx.get(f"{url}gradio_api/file={path}", cookies=cookies)


def test_an_upload_is_served_only_to_the_visitor_who_sent_it(app_server):
    owner, stranger = httpx.Client(base_url=app_server.url), httpx.Client(base_url=app_server.url)
    with owner, stranger:
        owner.get("/"), stranger.get("/")  # each browser gets its visitor cookie on its first request
        assert owner.cookies["foodie_visitor"] != stranger.cookies["foodie_visitor"]
        path = owner.post("/gradio_api/upload", files={"files": ("dinner.jpg", PHOTO.read_bytes())}).json()[0]
        assert fetch(app_server.url, path, owner.cookies).content == PHOTO.read_bytes()
        refused = fetch(app_server.url, path, stranger.cookies)
        assert refused.status_code == 403 and refused.text == "This file was uploaded by another visitor."
        assert fetch(app_server.url, path).status_code == 403  # no cookie at all


def test_a_chat_photo_comes_back_to_its_sender_only(app_server, tmp_path):
    mine = tmp_path / "my-dinner.jpg"
    shutil.copy(PHOTO, mine)
    client = Client(app_server.url, verbose=False, download_files=False)
    for photo, private in ((mine, True), (PHOTO, False)):
        chatbot = client.predict({"text": "这是什么菜？", "files": [handle_file(str(photo))]}, 4, 0.0, 0.9, "base",
                                 api_name="/chat")[0]
        shown = chatbot[-3]["content"][0]["file"]["path"]
        assert Path(shown).name == photo.name
        assert fetch(app_server.url, shown, client.cookies).status_code == 200
        # Paths are content hashes: the bundled example's bytes and name land on the copy the page
        # already shows everyone, which must stay public.
        assert fetch(app_server.url, shown).status_code == (403 if private else 200)


def test_the_work_folder_is_not_served_but_its_thumbnails_are(app_server, demo_workdir):
    for private in ("worker.log", "jobs.sqlite", "app.lock"):
        assert (demo_workdir / private).exists()
        assert fetch(app_server.url, str(demo_workdir.resolve() / private)).status_code == 403, private
    client = Client(app_server.url, verbose=False, download_files=False)
    thumbnail = browse(client)["gallery"]["value"][0]["image"]["path"]  # a copy the app made: public
    assert fetch(app_server.url, thumbnail).status_code == 200


# --- the data folder disappears while it is browsed ---------------------------------------------------------

def foodieqa_copy(folder: Path) -> Path:
    shutil.copytree(EXAMPLES / "images", folder / "images")
    for name in ("sivqa_tidy.json", "mivqa_tidy.json", "textqa_tidy.json"):
        shutil.copy(EXAMPLES / name, folder / name)
    return folder


def test_a_data_folder_deleted_while_browsed_is_a_sentence_and_can_be_loaded_again(app_server, tmp_path):
    folder = foodieqa_copy(tmp_path / "FoodieQA")
    client = Client(app_server.url, verbose=False, download_files=False)
    loaded = load(client, "folder", str(folder))
    first_id = rows(loaded["table"])[0][0]
    shutil.rmtree(folder)

    page = browse(client, page=2)
    assert "is no longer there" in page["page_label"] and str(folder) in page["page_label"]
    assert rows(page["table"])  # the records are still in memory
    shown = record(client, first_id)
    assert shown["record_id"] == first_id and "is no longer there" in shown["detail"]
    again = load(client, "folder", str(folder))
    assert f"There is nothing at {folder}" in again["summary"]
    with urllib.request.urlopen(app_server.url, timeout=10) as response:
        assert response.status == 200

    foodieqa_copy(folder)
    reloaded = load(client, "folder", str(folder))
    assert rows(reloaded["table"]) == rows(loaded["table"]) and reloaded["summary"] == loaded["summary"]
    assert "no longer there" not in browse(client, page=2)["page_label"]
