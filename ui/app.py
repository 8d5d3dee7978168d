"""The whole page: a header, then one tab per module. Each tab builds and wires itself; what crosses
tabs (a job opened in Chat, a tab that shows what another made since) is wired here."""

from __future__ import annotations

import json

import gradio as gr

from backend.services import Services
from ui import chat, compare, dataset, train
from ui.i18n import make_i18n, request_lang, text

CSS = """
.notice { border-left: 4px solid #e8a33d; padding-left: 0.6em; }
footer { display: none !important; }
"""

# Gradio titles its toasts with their level in English ("Warning") and ignores gr.Warning's title=.
# On a Chinese page this script puts the Chinese word in their place, under the same rule as the
# server's sentences (--lang, else the browser's first language among ours: ui.i18n.request_lang).
# If a Gradio release renames .toast-title, the titles simply stay English.
TOAST_TITLES = {"zh": {"Info": "提示", "Warning": "注意", "Error": "错误", "Success": "完成"}}

TOAST_TITLES_JS = """
(forced, titles) => {
    const ours = (navigator.languages || [navigator.language]).map(l => l.toLowerCase().slice(0, 2))
        .find(l => l === "zh" || l === "en");
    const words = titles[forced || ours];
    if (!words) return;
    const retitle = () => document.querySelectorAll(".toast-title").forEach(title => {
        for (const node of title.childNodes) {
            const word = node.nodeType === Node.TEXT_NODE && words[node.data.trim()];
            if (word) node.data = word + " ";
        }
    });
    new MutationObserver(retitle).observe(document.body, {childList: true, subtree: true, characterData: true});
}
"""


def page_js(forced_lang: str | None) -> str:
    """The page's start-up script, with the language rule's inputs filled in."""
    return f"() => ({TOAST_TITLES_JS.strip()})({json.dumps(forced_lang or '')}, {json.dumps(TOAST_TITLES)})"


def build(services: Services) -> tuple[gr.Blocks, gr.I18n]:
    forced = services.settings.lang
    i18n = make_i18n(forced)
    # Uploads and output copies older than a day are deleted hourly, and all of them when the app
    # stops, so photos do not pile up (or outlive the in-memory record of who uploaded them).
    with gr.Blocks(title="Foodie Studio", delete_cache=(3600, 86400)) as page:
        gr.Markdown(i18n("title"))
        with gr.Tabs() as tabs:
            with gr.Tab(i18n("tab_chat"), id="chat"):
                chat_tab = chat.build(services, i18n, forced)
            with gr.Tab(i18n("tab_dataset"), id="dataset"):
                dataset.build(services, i18n, forced)
            with gr.Tab(i18n("tab_train"), id="train") as train_tab:
                watch_jobs, watch_outputs, (reload_sources, train_source), (chat_with, train_job) = train.build(
                    services, i18n, forced)
            with gr.Tab(i18n("tab_compare"), id="compare") as compare_tab:
                open_compare, compare_in, compare_out = compare.build(services, i18n, forced)

        def open_in_chat(request: gr.Request, job_id):
            """The Train tab's "chat with it": the Chat tab, on the job's newest checkpoint."""
            lang = request_lang(request, forced)
            key = train.newest_checkpoint(services.jobs, job_id)
            if key is None:
                gr.Warning(text("tr_no_checkpoint", lang, job=job_id) if job_id else text("tr_pick_job", lang))
                return gr.skip(), gr.skip()
            return gr.Tabs(selected="chat"), chat.refresh_models(services, key, lang)

        chat_with.click(open_in_chat, [train_job], [tabs, chat_tab.model], api_name=False)
        # Opening a tab shows what the others made meanwhile, without a reload: a training set saved in
        # the Dataset tab is in Train's data list, a checkpoint trained in Train is on Compare's right.
        train_tab.select(reload_sources, [train_source], [train_source], api_name=False)
        compare_tab.select(open_compare, list(compare_in), list(compare_out), api_name=False)
        # A reload re-attaches to running jobs and shows checkpoints that finished meanwhile.
        page.load(open_compare, list(compare_in), list(compare_out), api_name=False)
        page.load(watch_jobs, None, watch_outputs, api_name=False)
        page.load(reload_sources, [train_source], [train_source], api_name=False)
        page.load(chat_tab.on_load, [chat_tab.model], [chat_tab.model, chat_tab.header, chat_tab.examples],
                  api_name=False)
    return page, i18n
