"""The users' own line, in a real browser from a fresh app: drop a dish photo, ask, correct the
answer, click "Train on my notes", wait, click "Compare": the new checkpoint on the right says the
correction, the base model on the left does not. The clicks from "answer shown" to "comparison
shown" are counted (the bar: at most 5); typing the correction is no click."""

from __future__ import annotations

import pytest

from tests.conftest import ARTIFACTS, EXAMPLES, AppProcess, needs_chromium, own_workdir
from tests.test_browser import drop_file

pytestmark = needs_chromium

CORRECTION = "这是西湖醋鱼，酸甜鲜嫩。"
LAST_BOT = ("() => { const b = document.querySelectorAll('{chat} [data-testid=\"bot\"]');"
            " return b.length && b[b.length-1].innerText.trim() === {text}; }")


@pytest.fixture(scope="module")
def fresh_app(demo_workdir, tmp_path_factory):
    folder = own_workdir(demo_workdir, tmp_path_factory.mktemp("teach-browser"))
    with AppProcess(["--workdir", str(folder)], folder / "app.log") as app:
        yield app


def last_answer(page, chat: str) -> str:
    return page.locator(f"{chat} [data-testid='bot']").last.inner_text().strip()


def test_drop_a_photo_ask_correct_train_and_compare_in_at_most_five_clicks(browser, fresh_app):
    page = browser.new_page(viewport={"width": 1400, "height": 1400}, locale="zh-CN")
    page.goto(fresh_app.url)
    page.locator("#chat-input textarea").wait_for(timeout=30_000)
    train = page.locator("#teach-train")
    train.wait_for(timeout=15_000)
    # no notes yet: the button is disabled, and its tooltip says why
    page.wait_for_function("() => document.querySelector('#teach-train').disabled", timeout=15_000)
    page.wait_for_function("() => document.querySelector('#teach-train').title.includes('纠正它')", timeout=15_000)

    drop_file(page, "#chat-input .full-container", EXAMPLES / "images" / "xihu-cuyu-2.jpg")
    page.locator("#chat-input img").first.wait_for(timeout=15_000)
    page.locator("#chat-input textarea").fill("这是什么菜？")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => { const b = document.querySelectorAll('#chatbot [data-testid=\"bot\"]');"
        " return b.length && b[b.length-1].innerText.trim().length > 5 && !b[b.length-1].innerText.includes('…'); }",
        timeout=60_000)
    # the answer is whole once the input is back (the conversation keeps it from then on)
    page.wait_for_function("() => !document.querySelector('#chat-input textarea').disabled", timeout=30_000)
    wrong = last_answer(page, "#chatbot")
    assert wrong != CORRECTION

    clicks = 0

    def click(selector: str) -> None:
        nonlocal clicks
        page.locator(selector).click()
        clicks += 1

    click("#chat-correct")  # 1: the form opens on that answer
    page.locator("#chat-correct-answer textarea").wait_for(timeout=15_000)
    page.locator("#chat-correct-answer textarea").fill(CORRECTION)
    click("#chat-correct-save")  # 2: the note is saved, the button comes alive
    page.wait_for_function("() => !document.querySelector('#teach-train').disabled", timeout=15_000)
    page.locator("#teach-count").get_by_text("1 条美食笔记").wait_for(timeout=15_000)
    click("#teach-train")  # 3: a job on the worker, its progress right here
    page.locator("#teach-progress").get_by_text("教学：1 条笔记").wait_for(timeout=15_000)
    page.locator("#teach-compare").wait_for(state="visible", timeout=240_000)  # the job is done
    click("#teach-compare")  # 4: the Compare tab, on that photo and question

    page.wait_for_function(LAST_BOT.replace("{chat}", "#compare-right-chat").replace("{text}", repr(CORRECTION)),
                           timeout=60_000)
    page.wait_for_function(
        "() => { const b = document.querySelectorAll('#compare-left-chat [data-testid=\"bot\"]');"
        " return b.length && b[b.length-1].innerText.trim().length > 0; }", timeout=60_000)
    assert last_answer(page, "#compare-left-chat") != CORRECTION  # the base model never learned it
    assert page.locator("#compare-right input").input_value().startswith("教学：1 条笔记")
    assert page.locator("#compare-left input").input_value() == "基础模型"
    # underneath, other dishes' photos, labelled held out
    page.wait_for_function("() => (document.querySelector('#compare-taught-table')?.innerText || '').includes('留出')",
                           timeout=90_000)
    assert clicks <= 5, clicks
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "teach-compare.png"), full_page=True)

    # a reload (or an app restart) finds the teaching job again: Chat shows it, done, with Compare
    page.reload()
    page.locator("#teach-progress").get_by_text("教学：1 条笔记").wait_for(timeout=30_000)
    page.locator("#teach-compare").wait_for(state="visible", timeout=15_000)
    page.close()
