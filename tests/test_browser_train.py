"""The Train tab as a person uses it, in a real browser (Debian's chromium, driven by playwright):
start the demo fine-tune, watch it run to the end, reload the page and find the job still there,
then look at it on a Chinese page, and put its checkpoint beside the base model in Compare.
Screenshots land in test-artifacts/train.png, train-zh.png and compare.png."""

from __future__ import annotations

import pytest
from gradio_client import Client

from backend.training.jobs import JobStore
from backend.training.worker import visible_gpus
from tests.conftest import ARTIFACTS, AppProcess, needs_chromium, own_workdir
from tests.test_train_compare_e2e import start_job, wait_for

pytestmark = needs_chromium

PROGRESS = "() => (document.querySelector('#train-progress')?.innerText || '')"
LINE_DRAWN = """() => [...document.querySelectorAll('#train-plot .mark-line path')].some(
    p => (p.getAttribute('d') || '').length > 200 && /^#|^rgb/.test(p.getAttribute('stroke') || ''))"""


@pytest.fixture(scope="module")
def train_app(demo_workdir, tmp_path_factory):
    """An app of its own: the jobs this test queues stay out of the shared work folder."""
    folder = own_workdir(demo_workdir, tmp_path_factory.mktemp("train-browser"))
    with AppProcess(["--workdir", str(folder)], tmp_path_factory.mktemp("logs") / "app.log") as app:
        app.workdir = folder
        yield app


@pytest.fixture
def finished_job(train_app) -> str:
    """A succeeded demo job: the one the first test started in the browser or, run alone, one queued here."""
    done = JobStore(train_app.workdir).list(("succeeded",))
    if done:
        return done[0].id
    client = Client(train_app.url, verbose=False)
    job_id = start_job(client, "demo", "compare-in-a-browser")
    assert wait_for(client, job_id)["state"] == "succeeded"
    return job_id


def test_start_the_demo_fine_tune_watch_it_finish_and_find_it_after_a_reload(browser, train_app):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page.goto(train_app.url)
    page.get_by_role("tab", name="Train").click()
    # On a CPU the tab opens on the demo-cpu preset and the bundled dishes: one click starts it, once
    # the tab has shown what it holds (as a person sees it has: the worker's line).
    page.wait_for_function("() => (document.querySelector('#train-worker')?.innerText || '').includes('worker')",
                           timeout=30_000)
    page.locator("#train-start").click()
    try:
        page.wait_for_function(f"() => ({PROGRESS})().includes('succeeded')", timeout=300_000)
    except Exception as err:  # the page's and the app's last words, to tell a slow job from a stuck page
        raise AssertionError(f"{page.locator('#train-progress').inner_text()}\n{train_app.log()[-3000:]}") from err
    assert "100%" in page.locator("#train-progress").inner_text()
    log = page.locator("#train-log textarea").input_value()
    assert "packed batches: samples prepared" in log, log[-1500:]
    # The loss curve is drawn: vega's line mark has a path with a colour (a plot that took the series
    # for a number scale once drew axes and a legend but no line).
    page.wait_for_function(LINE_DRAWN, timeout=15_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "train.png"), full_page=True)

    page.reload()
    page.get_by_role("tab", name="Train").click()
    page.wait_for_function("() => (document.querySelector('#train-jobs')?.innerText || '').includes('succeeded')",
                           timeout=30_000)
    page.wait_for_function(f"() => ({PROGRESS})().includes('succeeded')", timeout=30_000)
    page.close()

    # The same job on a Chinese page: its state, progress, tables and curve are said in Chinese.
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    page.goto(train_app.url)
    page.get_by_role("tab", name="训练").click()
    page.wait_for_function(f"() => ({PROGRESS})().includes('已完成')", timeout=30_000)
    progress = page.locator("#train-progress").inner_text()
    assert "第 90/90 步" in progress and "损失" in progress and "succeeded" not in progress, progress
    jobs = page.locator("#train-jobs").inner_text()
    assert "状态" in jobs and "已完成" in jobs and "succeeded" not in jobs, jobs
    page.locator("#train-data input").wait_for()
    assert page.locator("#train-data input").input_value() == "内置菜品（对话，演示）"
    checkpoints = page.locator("#train-checkpoints").inner_text()
    assert "检查点" in checkpoints and "最终（第 90 步）" in checkpoints and "final" not in checkpoints, checkpoints
    page.wait_for_function(LINE_DRAWN, timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "train-zh.png"), full_page=True)
    # Chat: with the new checkpoint chosen, the notice no longer says the answers are gibberish
    # until trained; it says what the adapter on the random-weight model can answer.
    page.get_by_role("tab", name="对话").click()
    assert "训练之前它的回答是乱码" in page.locator("#chat-notice").inner_text()
    page.locator("#chat-model input").click()
    page.locator("ul[role=listbox] li", has_text="最终").first.click()
    page.wait_for_function("() => (document.querySelector('#chat-notice')?.innerText || '').includes('加上适配器')",
                           timeout=15_000)
    notice = page.locator("#chat-notice").inner_text()
    assert "demo: bundled dishes · 最终" in notice and "乱码" not in notice, notice
    page.locator("#chat-model input").click()
    page.locator("ul[role=listbox] li", has_text="基础模型").first.click()
    page.wait_for_function("() => (document.querySelector('#chat-notice')?.innerText || '').includes('乱码')",
                           timeout=15_000)
    # Compare opens on the base model against the new checkpoint, both named in Chinese.
    page.get_by_role("tab", name="对比").click()
    page.wait_for_function("() => (document.querySelector('#compare-right input')?.value || '').includes('最终')",
                           timeout=15_000)
    assert page.locator("#compare-left input").input_value() == "基础模型"
    assert page.locator("#compare-right input").input_value().startswith("demo: bundled dishes · 最终 · 损失 ")
    assert page.locator("#compare-set input").input_value() == "内置样例（全部）"
    # ...under a notice that says why both may answer gibberish (the demo model's random weights)
    assert "权重是随机的" in page.locator("#compare-notice").inner_text()
    page.close()


BOTH_ANSWERED = """() => ['#compare-left-chat', '#compare-right-chat'].every(side => {
    const bots = document.querySelectorAll(side + ' [data-testid="bot"]');
    return bots.length && bots[bots.length - 1].innerText.trim().length > 5; })"""


def test_compare_puts_base_and_checkpoint_side_by_side_and_scores_both(browser, train_app, finished_job):
    """After a job finished: one quick example asks both models at once; the checkpoint names the
    dish it was trained on, the random base does not; "Score both" fills the summary and the tables."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page.goto(train_app.url)
    page.get_by_role("tab", name="Compare").click()
    page.wait_for_function("() => (document.querySelector('#compare-right input')?.value || '').includes('final')",
                           timeout=30_000)
    right_name = page.locator("#compare-right input").input_value()
    # A visitor's pick on the right stays when they leave the tab and come back (no newer checkpoint)
    page.locator("#compare-right input").click()
    page.locator("ul[role=listbox] li", has_text="step 60").first.click()
    page.get_by_role("tab", name="Chat").click()
    page.get_by_role("tab", name="Compare").click()
    page.wait_for_timeout(2_000)  # the tab's opening replies
    assert "step 60" in page.locator("#compare-right input").input_value()
    page.locator("#compare-right input").click()
    page.locator("ul[role=listbox] li", has_text=right_name).first.click()
    page.wait_for_function(f"() => document.querySelector('#compare-right input')?.value === {right_name!r}",
                           timeout=15_000)
    page.locator("#compare-examples img").first.click()  # Lanzhou beef noodles, asked in English
    page.wait_for_function("() => (document.querySelector('#compare-input textarea')?.value || '')"
                           ".includes('What dish is this?')", timeout=15_000)
    page.locator("#compare-input textarea").press("Enter")
    page.wait_for_function(BOTH_ANSWERED, timeout=120_000)
    page.wait_for_timeout(1_000)  # the streams' last words
    left, right = (page.locator(f"#compare-{side}-chat").inner_text() for side in ("left", "right"))
    assert "What dish is this?" in left and "What dish is this?" in right
    assert page.locator("#compare-left-chat img").count() >= 1 and page.locator("#compare-right-chat img").count() >= 1
    # still the checkpoint on the right once every event the tab's opening set off has replied
    assert page.locator("#compare-right input").input_value() == right_name
    assert "This is Lanzhou beef noodles, a Northwestern dish." in right, right
    assert "Lanzhou beef noodles" not in left, left

    page.locator("#compare-score").click()
    # the progress bar over the summary gives way to the scores
    page.wait_for_function("() => (document.querySelector('#compare-summary')?.innerText || '').trim()"
                           ".startsWith('bundled sample (all)')", timeout=180_000)
    summary = page.locator("#compare-summary").inner_text()
    assert summary.startswith("bundled sample (all)") and "base model" in summary and right_name in summary, summary
    table = page.locator("#compare-per-question").inner_text()
    assert "Every question" in table and "sample-sivqa-0" in table, table[:500]
    offered = page.locator("#compare-csv").inner_text()  # the scores as a file to download
    assert "scores-" in offered and ".csv" in offered, offered
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)
    page.close()


def test_chat_with_it_opens_the_chat_on_the_jobs_newest_checkpoint(browser, train_app, finished_job):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page.goto(train_app.url)
    page.get_by_role("tab", name="Train").click()
    page.wait_for_function(
        f"() => (document.querySelector('#train-job input')?.value || '').includes('{finished_job}')", timeout=30_000)
    page.locator("#train-chat").click()
    page.wait_for_function("() => (document.querySelector('#chat-model input')?.value || '').includes('final')",
                           timeout=15_000)
    assert page.get_by_role("tab", name="Chat").get_attribute("aria-selected") == "true"
    # the notice follows the model: an adapter on the random-weight model, not "gibberish until trained"
    page.wait_for_function("() => !(document.querySelector('#chat-notice')?.innerText || '').includes('until you')",
                           timeout=15_000)
    page.locator("#chat-input textarea").wait_for()
    page.close()


def start_with_zero_gpus(browser, url: str, locale: str, tab: str, gpus_label: str, sentence: str):
    """Open the Train tab in `locale`, ask for 0 GPUs, press start, wait for `sentence`; the page."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale=locale)
    page.goto(url)
    page.get_by_role("tab", name=tab).click()
    page.get_by_label(gpus_label).fill("0")
    page.locator("#train-start").click()
    page.get_by_text(sentence).wait_for(timeout=15_000)
    return page


def test_an_impossible_number_in_the_form_is_a_sentence_and_the_page_stays_whole(browser, train_app):
    page = start_with_zero_gpus(browser, train_app.url, "en-US", "Train", "GPUs", "A job needs at least 1 GPU slot")
    page.get_by_label("Epochs").fill("")
    page.locator("#train-start").click()
    page.get_by_text("Epochs must be a whole number, it is empty").wait_for(timeout=15_000)
    # The spec's check answered, not Gradio's range check, which put every output in an error state.
    assert page.get_by_text("Error", exact=True).count() == 0
    assert page.locator(".toast-title").first.inner_text().split()[0] == "Warning"  # "Warning (2)": stacked
    assert page.locator("#train-jobs").is_visible()
    page.close()


def test_a_chinese_page_says_why_a_job_cannot_run_in_chinese(browser, train_app):
    page = start_with_zero_gpus(browser, train_app.url, "zh-CN", "训练", "GPU 数", "任务至少需要 1 个 GPU")
    assert page.get_by_text("A job needs at least 1 GPU slot").count() == 0
    # ...under a Chinese title: Gradio titles toasts "Warning" itself; the page's script retitles them.
    page.wait_for_function("() => (document.querySelector('.toast-title')?.innerText || '').startsWith('注意')",
                           timeout=5_000)
    page.close()


def test_use_its_settings_puts_a_jobs_numbers_back_in_the_form(browser, train_app):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page.goto(train_app.url)
    page.get_by_role("tab", name="Train").click()
    page.get_by_label("Job name").fill("reuse-me")
    page.get_by_label("Epochs").fill("1")
    page.get_by_label("LoRA rank r").fill("8")
    page.locator("#train-start").click()
    page.wait_for_function("() => (document.querySelector('#train-job input')?.value || '').includes('reuse-me')",
                           timeout=30_000)
    # Another preset, another name: the form no longer shows what the job ran with.
    page.get_by_label("2b-gpu").check()
    page.wait_for_function("() => [...document.querySelectorAll('input')].some(i => i.value === '128')")
    page.get_by_label("Job name").fill("")
    page.locator("#train-reuse").click()
    page.get_by_text("The form now holds job").wait_for(timeout=15_000)
    # The preset radio was set too, and its own numbers did not overwrite the job's.
    page.wait_for_timeout(1_000)
    assert page.get_by_label("demo-cpu").is_checked()
    assert page.get_by_label("Epochs").input_value() == "1"
    assert page.get_by_label("LoRA rank r").input_value() == "8"
    assert page.get_by_label("Job name").input_value() == "reuse-me"
    assert page.locator("#train-data input").input_value() == "bundled dishes (chat, demo)"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "train-reuse.png"), full_page=True)
    page.get_by_role("button", name="⏹ Cancel").click()
    page.close()


@pytest.mark.skipif(bool(visible_gpus()), reason="this machine has a GPU: the 2b-gpu preset can run here")
def test_a_gpu_preset_on_a_machine_without_a_gpu_is_refused_before_it_is_queued(browser, train_app):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    page.goto(train_app.url)
    page.get_by_role("tab", name="训练").click()
    page.locator("#train-jobs").wait_for()
    jobs_before = page.locator("#train-jobs").inner_text()
    page.get_by_label("2b-gpu").check()
    page.get_by_label("任务名称").fill("needs-a-gpu")
    page.locator("#train-start").click()
    page.locator(".toast-body").get_by_text("训练 worker 在这台机器上看不到 GPU；请把“设备”改为 cpu 或 auto").wait_for(
        timeout=15_000)
    page.wait_for_timeout(1_000)
    assert "needs-a-gpu" not in page.locator("#train-jobs").inner_text()
    assert "needs-a-gpu" not in jobs_before
    page.close()


def test_the_whole_loop_in_one_page_without_a_reload(browser, train_app):
    """Save a training set in Dataset, train on it in Train, find its checkpoint on Compare's right:
    each tab shows what the one before made, without reloading the page."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page.goto(train_app.url)
    page.get_by_role("tab", name="Dataset").click()
    page.locator("#ds-name input, #ds-name textarea").first.fill("loop-set")
    page.locator("#ds-save").click()
    page.wait_for_function("() => (document.querySelector('#ds-saved')?.innerText || '').includes('Saved loop-set')",
                           timeout=30_000)

    page.get_by_role("tab", name="Train").click()
    page.locator("#train-data input").click()
    page.locator("ul[role=listbox] li", has_text="loop-set").first.click(timeout=15_000)
    page.get_by_label("Job name").fill("loop")
    page.locator("#train-start").click()
    page.wait_for_function("() => (document.querySelector('#train-job input')?.value || '').includes('loop')",
                           timeout=30_000)
    page.wait_for_function(f"() => ({PROGRESS})().includes('succeeded')", timeout=300_000)

    page.get_by_role("tab", name="Compare").click()
    page.wait_for_function(
        "() => (document.querySelector('#compare-right input')?.value || '').startsWith('loop · final')",
        timeout=15_000)
    page.wait_for_function("() => (document.querySelector('#compare-set input')?.value || '').includes('loop-set')",
                           timeout=15_000)
    # a choice of the visitor's own stays when the tab is opened again and nothing new finished
    page.locator("#compare-right input").click()
    page.locator("ul[role=listbox] li", has_text="base model").first.click()
    page.get_by_role("tab", name="Chat").click()
    page.get_by_role("tab", name="Compare").click()
    page.wait_for_timeout(2_000)
    assert page.locator("#compare-right input").input_value() == "base model"
    page.close()


def test_a_job_scored_at_each_checkpoint_plots_its_accuracy_and_names_the_best(browser, train_app):
    """A demo job on a saved set, each checkpoint scored on the set's held-out questions: the Train
    tab plots the accuracy, named with the set, its size and "held out", and says the best."""
    from tests.test_dataset_tab import load, save

    client = Client(train_app.url, verbose=False)
    load(client, "sample")
    save(client, "scored-sivqa", tasks=["sivqa"], heldout=0.3, replace=True)
    folder = train_app.workdir.resolve() / "datasets" / "scored-sivqa"
    job_id = start_job(client, str(folder), "scored-job", str(folder), epochs=3, save_every=3)
    status = wait_for(client, job_id)
    assert status["state"] == "succeeded", status
    page = browser.new_page(viewport={"width": 1400, "height": 1200}, locale="en-US")
    page.goto(train_app.url)
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-job input").fill(job_id)
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => ({PROGRESS})().includes('Best checkpoint: step')", timeout=30_000)
    assert "held-out · scored-sivqa" in page.locator("#train-progress").inner_text()
    page.wait_for_function("""() => [...document.querySelectorAll('#train-accuracy .mark-line path, '
        + '#train-accuracy .mark-symbol path')].length > 0""", timeout=30_000)
    assert "held-out · scored-sivqa (" in page.locator("#train-accuracy").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "train-accuracy.png"), full_page=True)
    page.close()


def test_export_offers_the_jobs_checkpoints_and_the_zip_to_download(browser, train_app, finished_job):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page.goto(train_app.url)
    page.get_by_role("tab", name="Train").click()
    page.wait_for_function(
        f"() => (document.querySelector('#train-job input')?.value || '').includes('{finished_job}')", timeout=30_000)
    page.get_by_text("📦 Export a checkpoint").click()
    # the picker follows the watched job: its final adapter first
    page.wait_for_function("() => (document.querySelector('#export-checkpoint input')?.value || '').includes('final')",
                           timeout=15_000)
    page.locator("#export-start").click()
    page.wait_for_function("() => (document.querySelector('#export-result')?.innerText || '').includes('Exported')",
                           timeout=60_000)
    assert f"exports/{finished_job}-final" in page.locator("#export-result").inner_text()
    with page.expect_download() as download:
        page.locator("#export-zip [data-testid=download-link]").click()
    assert download.value.suggested_filename == f"{finished_job}-final-adapter.zip"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "train-export.png"), full_page=True)
    page.close()


@pytest.mark.skipif(bool(visible_gpus()), reason="this machine has a GPU: QLoRA is offered here")
def test_qlora_is_switched_off_with_its_reason_and_its_preset_refused_without_a_gpu(browser, train_app):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page.goto(train_app.url)
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-jobs").wait_for()
    assert page.get_by_label("QLoRA (4-bit base)").is_disabled()
    page.get_by_text("Not offered here: QLoRA needs a GPU").wait_for(timeout=5_000)
    assert page.get_by_label("What trains").input_value() == "LoRA on the language model"  # the choice in words
    page.get_by_label("7b-qlora-24gb").check()  # the preset turns QLoRA on: Start says why it cannot run
    page.get_by_label("Job name").fill("needs-qlora")
    page.locator("#train-start").click()
    page.locator(".toast-body").get_by_text("QLoRA needs a GPU (bitsandbytes' 4-bit kernels run on CUDA), and the "
                                            "training worker sees none on this machine").wait_for(timeout=15_000)
    page.wait_for_timeout(1_000)
    assert "needs-qlora" not in page.locator("#train-jobs").inner_text()
    page.close()
