"""The Dataset tab in a real browser (Debian's chromium, driven by playwright): filter by a cuisine,
click a thumbnail, read the detail. Screenshots land in test-artifacts/ for a person to look at."""

from __future__ import annotations

from tests.conftest import ARTIFACTS, needs_chromium

pytestmark = needs_chromium


def open_dataset_tab(browser, url: str, locale: str, tab_name: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale=locale)
    page.goto(url)
    page.get_by_role("tab", name=tab_name).click()
    # The page-load event fills the gallery with the bundled sample's first page.
    page.locator("#ds-gallery button.thumbnail-item").first.wait_for(timeout=30_000)
    return page


def wait_for_thumbnails(page) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('#ds-gallery img')].every(i => i.complete && i.naturalWidth > 0)",
        timeout=15_000)


def test_filter_by_a_cuisine_click_a_thumbnail_and_see_its_answer(browser, app_server):
    page = open_dataset_tab(browser, app_server.url, "en-US", "Dataset")
    assert "(63 in all)" in page.locator("#ds-page-label").inner_text()
    # FoodieQA's question types in words on an English page too (main ingredient, not main-ingredient)
    page.wait_for_function(
        "() => (document.querySelector('#ds-table')?.innerText || '').includes('main ingredient')", timeout=15_000)
    assert "main-ingredient" not in page.inner_text("body")

    page.locator("#ds-filter-cuisine input").click()
    page.get_by_role("option", name="京菜 (11)").click()
    page.wait_for_function(
        "() => document.querySelector('#ds-page-label').innerText.includes('(11 in all)')", timeout=15_000)
    assert page.locator("#ds-gallery button.thumbnail-item").count() == 11
    assert "Any (11)" in page.locator("#ds-filter-task input").input_value()

    page.locator("#ds-gallery button.thumbnail-item").first.click()
    page.wait_for_function("() => document.querySelector('#ds-detail').innerText.includes('✅')",
                           timeout=15_000)
    detail = page.locator("#ds-detail").inner_text()
    assert "cuisine: 京菜" in detail and "answer" in detail
    page.locator("#ds-detail-pictures img").first.wait_for(timeout=15_000)
    wait_for_thumbnails(page)
    assert page.locator("#ds-record-id input, #ds-record-id textarea").first.input_value().startswith("sample-")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dataset.png"), full_page=True)
    page.close()


def test_the_tab_speaks_chinese_to_a_chinese_browser(browser, app_server):
    page = open_dataset_tab(browser, app_server.url, "zh-CN", "数据集")
    page.wait_for_function("() => document.querySelector('#ds-summary').innerText.includes('条记录')",
                           timeout=15_000)
    body = page.inner_text("body")
    for label in ("数据来源", "菜系", "生成训练样本", "保存训练集", "第 1 / 3 页"):
        assert label in body, label
    # FoodieQA's question types in words, in the table as in the filter (主料, not main-ingredient)
    page.wait_for_function("() => (document.querySelector('#ds-table')?.innerText || '').includes('主料')",
                           timeout=15_000)
    assert "main-ingredient" not in page.inner_text("body") and "cuisine_type" not in page.inner_text("body")
    wait_for_thumbnails(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dataset-zh.png"), full_page=True)
    page.close()


def test_an_internvl_jsonl_folder_loads_through_the_page(browser, app_server, tmp_path):
    """issue 27: a non-LLaVA format, typed in as a folder on the server, read by its content and said so."""
    from tests.test_data_formats import internvl_file

    folder = internvl_file(tmp_path / "internvl").parent
    page = open_dataset_tab(browser, app_server.url, "zh-CN", "数据集")
    page.get_by_label("服务器上的文件夹或文件").check()
    page.locator("#ds-folder textarea, #ds-folder input").first.fill(str(folder))
    page.locator("#ds-load").click()
    page.wait_for_function(
        "() => document.querySelector('#ds-summary').innerText.includes('按 InternVL jsonl 读取：3 条样本')",
        timeout=30_000)
    page.wait_for_function("() => document.querySelector('#ds-page-label').innerText.includes('共 3 条')",
                           timeout=15_000)
    assert page.locator("#ds-gallery button.thumbnail-item").count() == 3
    page.locator("#ds-record-id textarea, #ds-record-id input").first.fill("2")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#ds-detail').innerText.includes('重庆火锅')",
                           timeout=15_000)
    assert page.locator("#ds-detail-pictures img").count() == 3  # all three pictures of the sample
    wait_for_thumbnails(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dataset-internvl.png"), full_page=True)
    page.close()


def test_a_folder_picked_in_the_browser_keeps_its_subfolders(browser, app_server, tmp_path):
    """Gradio's File keeps base names only; the page's script lists the relative names (ui/app.py)."""
    import json
    import shutil

    from tests.conftest import EXAMPLES

    folder = tmp_path / "my-dishes"
    (folder / "照片" / "a").mkdir(parents=True)
    (folder / "照片" / "b").mkdir(parents=True)
    # the same base name in two subfolders: only the listing can tell them apart
    shutil.copy(EXAMPLES / "images" / "jiaozi-0.jpg", folder / "照片" / "a" / "1.jpg")
    shutil.copy(EXAMPLES / "images" / "yuebing-0.jpg", folder / "照片" / "b" / "1.jpg")
    rows = [{"id": name, "image": f"照片/{name}/1.jpg", "conversations": [
        {"from": "human", "value": "<image>\n这是什么？"}, {"from": "gpt", "value": answer}]}
        for name, answer in (("a", "饺子。"), ("b", "月饼。"))]
    (folder / "data.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    page = open_dataset_tab(browser, app_server.url, "en-US", "Dataset")
    page.get_by_label("Upload (files or a .zip)").check()
    page.locator("#ds-upload-folder input[type=file]").set_input_files(str(folder))
    page.wait_for_function(
        "() => (document.querySelector('#ds-upload-names textarea, #ds-upload-names input')?.value || '')"
        ".includes('my-dishes/照片/b/1.jpg')", timeout=15_000)
    page.wait_for_function("() => document.querySelectorAll('#ds-upload-folder .file-preview tr, "
                           "#ds-upload-folder .file').length >= 3 || "
                           "(document.querySelector('#ds-upload-folder')?.innerText || '').includes('data.json')",
                           timeout=30_000)
    page.locator("#ds-load").click()
    page.wait_for_function("() => document.querySelector('#ds-summary').innerText.includes('Read 2 records')",
                           timeout=30_000)
    assert "skipped" not in page.locator("#ds-summary").inner_text()
    page.close()
