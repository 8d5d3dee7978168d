"""Stored markup never reaches other visitors as markup (issue 32), in a real browser (Debian's chromium,
driven by playwright): a job whose name and error hold HTML and Markdown (links, pictures from another
server, a form), as a job queued by an older version or another client could be, shows in the Train tab,
in the Chat tab's notice and in a refusal toast as the characters it is. No element is made from it and
no request leaves for the servers it names. Screenshot: test-artifacts/hostile-names.png."""

from __future__ import annotations

import json
import sqlite3

import pytest

from backend.training.demo_data import demo_spec
from backend.training.jobs import JobStore
from tests.conftest import ARTIFACTS, AppProcess, needs_chromium, own_workdir

pytestmark = needs_chromium

NAME = ('<img src="http://pwned.invalid/name.png"> [link](http://pwned.invalid/md) '
        '![pic](http://pwned.invalid/pic.png) **bold** <form action="http://pwned.invalid/f"><button>go</button></form>')
ERROR = ('Training failed: <img src=http://pwned.invalid/err.png onerror="window.__pwned=1"> '
         '![e](http://pwned.invalid/err-md.png) [x](javascript:window.__pwned=2) www.pwned.invalid')
TYPED = '<img src="http://pwned.invalid/t.png">[t](http://pwned.invalid)'  # 63 characters
MADE = ("img", "a", "form", "button", "iframe", "em", "strong", "del")


def made_inside(page, selector: str) -> list[str]:
    """Elements inside `selector` that the hostile text made: any picture, link, form, button or frame,
    and its **bold** made bold (the page's own bold sentences, which may hold it as text, are not)."""
    return page.evaluate(f"""() => [...document.querySelectorAll({json.dumps(selector)})].flatMap(root =>
        [...root.querySelectorAll({json.dumps(", ".join(MADE))})].filter(e =>
            ['EM', 'STRONG', 'DEL'].includes(e.tagName) ? e.textContent.trim() === 'bold'
            : e.tagName === 'BUTTON' ? e.textContent.trim() === 'go' : true)
        .map(e => e.outerHTML.slice(0, 200)))""")


@pytest.fixture(scope="module")
def hostile_app(demo_workdir, tmp_path_factory):
    """A work folder holding a finished job with a hostile name and error, and a final adapter (enough
    for the model lists; no one chats with it here), written the way an older version's store holds it."""
    folder = own_workdir(demo_workdir, tmp_path_factory.mktemp("hostile-names"))
    store = JobStore(folder)
    job = store.submit(demo_spec(folder, name="plain"))
    assert store.claim(job.id, "an-older-worker", "cpu")
    store.finish(job.id, "failed", ERROR, 1)
    with sqlite3.connect(store.db_path) as db:
        db.execute("UPDATE jobs SET name = ? WHERE id = ?", (NAME, job.id))
    adapter = job.files.adapter
    adapter.mkdir(parents=True)
    for file in ("adapter_config.json", "adapter_model.safetensors"):
        (adapter / file).write_text("{}")
    (adapter / "training.json").write_text(json.dumps({"step": 5, "loss": 0.5}))
    with AppProcess(["--workdir", str(folder)], tmp_path_factory.mktemp("logs") / "app.log") as app:
        yield app


def test_a_hostile_job_name_and_error_show_as_text_and_fetch_nothing(browser, hostile_app):
    page = browser.new_page(viewport={"width": 1400, "height": 1100}, locale="en-US")
    asked = []
    page.on("request", lambda request: asked.append(request.url))
    page.goto(hostile_app.url)

    page.get_by_role("tab", name="Train").click()
    page.wait_for_function("() => (document.querySelector('#train-progress')?.innerText || '').includes('failed')",
                           timeout=30_000)
    progress = page.locator("#train-progress").inner_text()
    assert ERROR in progress, progress
    jobs = page.locator("#train-jobs").inner_text()
    assert "[link](http://pwned.invalid/md)" in jobs and '<img src="http://pwned.invalid/name.png">' in jobs, jobs
    assert NAME in page.locator("#train-job input").input_value()
    assert made_inside(page, "#train-progress, #train-jobs, #train-worker") == []

    # Start with markup typed as the name: refused with a sentence that shows the name as typed.
    page.get_by_placeholder("my-first-lora").fill(TYPED)
    page.locator("#train-start").click()
    toast = page.locator("[data-testid='toast-text']").first
    toast.wait_for(timeout=15_000)
    assert "cannot be a job's name" in toast.inner_text() and TYPED in toast.inner_text(), toast.inner_text()
    assert made_inside(page, "[data-testid='toast-text']") == []

    # Chat: the notice names the adapter, the job's name in it as text.
    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-model input").click()
    page.locator("ul[role=listbox] li", has_text="final").first.click()
    page.wait_for_function("() => (document.querySelector('#chat-notice')?.innerText || '').includes('adapter')",
                           timeout=15_000)
    notice = page.locator("#chat-notice").inner_text()
    assert f"{NAME} · final" in notice, notice
    assert made_inside(page, "#chat-notice") == []

    page.wait_for_timeout(1_000)  # a picture the page had made would have been asked for by now
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "hostile-names.png"), full_page=True)
    assert [url for url in asked if "pwned" in url] == []
    assert page.evaluate("() => window.__pwned") is None
    page.close()
