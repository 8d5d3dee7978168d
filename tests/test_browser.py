"""What a person clicks, in a real browser: Debian's chromium, driven by playwright.

Screenshots land in test-artifacts/ for a person to look at after the run."""

from __future__ import annotations

import base64

from tests.conftest import ARTIFACTS, EXAMPLES, needs_chromium

pytestmark = needs_chromium


def open_page(browser, url: str, locale: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale=locale)
    page.goto(url)
    page.locator("#chat-input textarea").wait_for(timeout=30_000)
    return page


def drop_file(page, selector: str, path) -> None:
    """Drag and drop for real: a File in a DataTransfer, dispatched as the browser would."""
    payload = base64.b64encode(path.read_bytes()).decode()
    page.evaluate(
        """([selector, name, payload]) => {
            const bytes = Uint8Array.from(atob(payload), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, {type: 'image/jpeg'}));
            const target = document.querySelector(selector);
            for (const type of ['dragenter', 'dragover', 'drop']) {
                target.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: transfer}));
            }
        }""",
        [selector, path.name, payload],
    )


def test_drop_a_photo_ask_and_see_the_answer(browser, app_server):
    page = open_page(browser, app_server.url, "en-US")
    drop_file(page, "#chat-input .full-container", EXAMPLES / "images" / "peking-duck-1.jpg")
    page.locator("#chat-input img").first.wait_for(timeout=15_000)  # the thumbnail of the dropped photo
    page.locator("#chat-input textarea").fill("What dish is this?")
    page.keyboard.press("Enter")

    bot = page.locator("#chatbot .message.bot, #chatbot [data-testid='bot']").last
    bot.wait_for(timeout=30_000)
    page.wait_for_function(
        "() => { const b = document.querySelectorAll('#chatbot [data-testid=\"bot\"]');"
        " return b.length && b[b.length-1].innerText.trim().length > 5 && !b[b.length-1].innerText.includes('…'); }",
        timeout=60_000)
    assert "What dish is this?" in page.locator("#chatbot").inner_text()
    assert page.locator("#chatbot img").count() >= 1, "the dropped photo shows in the conversation"
    assert "demo model" in page.inner_text("body"), "the page says why the answer is gibberish"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-en.png"), full_page=True)
    page.close()


def test_a_quick_example_fills_the_photo_and_question_in_chinese(browser, app_server):
    page = open_page(browser, app_server.url, "zh-CN")
    assert page.get_by_role("tab", name="数据集").is_visible(), "the tabs follow the browser's language"
    page.get_by_text("演示模型：微型 Qwen2-VL，随机权重").wait_for(timeout=15_000)  # which model serves the page
    assert page.locator("#chat-model input").input_value() == "基础模型"
    page.locator("#quick-examples button.thumbnail-item").first.click()
    page.wait_for_function(
        "() => document.querySelector('#chat-input textarea').value.includes('这是什么菜')", timeout=15_000)
    page.locator("#chat-input img").first.wait_for(timeout=15_000)
    page.locator("#chat-input textarea").press("Enter")
    page.wait_for_function(
        "() => { const b = document.querySelectorAll('#chatbot [data-testid=\"bot\"]');"
        " return b.length && b[b.length-1].innerText.trim().length > 5 && !b[b.length-1].innerText.includes('…'); }",
        timeout=60_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-zh.png"), full_page=True)
    page.close()


def test_the_quick_examples_are_captioned_in_the_pages_language(browser, app_server):
    """Built before any visitor's language is known, the galleries are captioned again on page load."""
    for locale, tab, caption, other in (("en-US", "Compare", "Lanzhou beef noodles · Northwestern", "兰州牛肉面"),
                                        ("zh-CN", "对比", "兰州牛肉面 · 西北菜", "Lanzhou")):
        page = open_page(browser, app_server.url, locale)
        for gallery in ("#quick-examples", "#compare-examples"):
            if gallery == "#compare-examples":
                page.get_by_role("tab", name=tab).click()
            shown = f"() => (document.querySelector('{gallery}')?.innerText || '').includes('{caption}')"
            page.wait_for_function(shown, timeout=15_000)
            assert other not in page.locator(gallery).inner_text()
        page.close()
