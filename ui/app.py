"""The whole page: a header, then one tab per module. Each tab builds and wires itself."""

from __future__ import annotations

import gradio as gr

from backend.services import Services
from ui import chat, compare, dataset, train
from ui.i18n import make_i18n

CSS = """
.notice { border-left: 4px solid #e8a33d; padding-left: 0.6em; }
footer { display: none !important; }
"""


def build(services: Services) -> tuple[gr.Blocks, gr.I18n]:
    forced = services.settings.lang
    i18n = make_i18n(forced)
    # Uploads and output copies older than a day are deleted hourly, and all of them when the app
    # stops, so photos do not pile up (or outlive the in-memory record of who uploaded them).
    with gr.Blocks(title="Foodie Studio", delete_cache=(3600, 86400)) as page:
        gr.Markdown(i18n("title"))
        with gr.Tabs():
            with gr.Tab(i18n("tab_chat"), id="chat"):
                chat_tab = chat.build(services, i18n, forced)
            with gr.Tab(i18n("tab_dataset"), id="dataset"):
                dataset.build(services, i18n, forced)
            with gr.Tab(i18n("tab_train"), id="train"):
                watch_jobs, watch_outputs, (reload_sources, train_source) = train.build(services, i18n, forced)
            with gr.Tab(i18n("tab_compare"), id="compare"):
                refresh_compare, compare_pickers = compare.build(services, i18n, forced)
        # A reload re-attaches to running jobs and shows checkpoints that finished meanwhile.
        page.load(refresh_compare, list(compare_pickers[:2]), list(compare_pickers), api_name=False)
        page.load(watch_jobs, None, watch_outputs, api_name=False)
        page.load(reload_sources, [train_source], [train_source], api_name=False)
        page.load(chat_tab.on_load, [chat_tab.model], [chat_tab.model, chat_tab.header], api_name=False)
    return page, i18n
