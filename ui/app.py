"""The whole page: a header, then one tab per module. Each tab builds and wires itself and hands the
page a Tab (ui/tab.py); what crosses tabs (a job opened in Chat, a tab opened showing what another
made since) is wired here, through those Tabs alone."""

from __future__ import annotations

import json

import gradio as gr

from backend.catalog import newest_checkpoint
from backend.services import Services
from ui import chat, compare, dataset, train
from ui.i18n import make_i18n, request_lang, text
from ui.session_ids import keep_replacement_ids
from ui.tab import Tab
from ui.toasts import warn

CSS = """
.notice { border-left: 4px solid #e8a33d; padding-left: 0.6em; }
footer { display: none !important; }
.tooltip-text { display: none !important; }
.ds-hidden { display: none !important; }
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


# Gradio's buttons take no tooltip. A disabled button whose reason the page should give on hover gets
# it from a hidden text beside it (elem_id "<button>-why", class tooltip-text), in the page's language.
TOOLTIPS_JS = """
() => {
    const retip = () => document.querySelectorAll(".tooltip-text[id$='-why']").forEach(why => {
        const button = document.getElementById(why.id.slice(0, -"-why".length));
        const tip = button && button.disabled ? why.textContent.trim() : "";
        if (button && button.title !== tip) button.title = tip;
    });
    new MutationObserver(retip).observe(document.body, {childList: true, subtree: true, attributes: true,
                                                         attributeFilter: ["disabled"]});
    retip();
}
"""


# Gradio's File keeps only each file's base name, so a folder picked in the Dataset tab would lose its
# subfolders ("照片/红烧肉.jpg"). When a folder is picked, this lists each file's path inside it (and its
# size, to match it to the upload) into a hidden box that the Load button sends along.
FOLDER_LISTING_JS = """
() => document.addEventListener("change", event => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "file" || !input.closest("#ds-upload-folder")) return;
    const box = document.querySelector("#ds-upload-names textarea, #ds-upload-names input");
    if (!box) return;
    box.value = JSON.stringify([...input.files].map(f => ({name: f.webkitRelativePath || f.name, size: f.size})));
    box.dispatchEvent(new Event("input", {bubbles: true}));
}, true)
"""


def page_js(forced_lang: str | None) -> str:
    """The page's start-up script, with the language rule's inputs filled in."""
    toasts = f"({TOAST_TITLES_JS.strip()})({json.dumps(forced_lang or '')}, {json.dumps(TOAST_TITLES)})"
    return f"() => {{ ({TOOLTIPS_JS.strip()})(); {toasts}; ({FOLDER_LISTING_JS.strip()})(); }}"


TABS = {"chat": chat, "dataset": dataset, "train": train, "compare": compare}  # id -> module, in page order


def build(services: Services) -> tuple[gr.Blocks, gr.I18n]:
    keep_replacement_ids()  # or each chat answer leaves a copy of the input box in the visitor's session
    forced = services.settings.lang
    i18n = make_i18n(forced)
    # Uploads and output copies older than a day are deleted hourly, and all of them when the app
    # stops, so photos do not pile up (or outlive the in-memory record of who uploaded them).
    with gr.Blocks(title="Foodie Studio", delete_cache=(3600, 86400)) as page:
        gr.Markdown(i18n("title"))
        built: dict[str, Tab] = {}
        with gr.Tabs() as tabs:
            for tab_id, module in TABS.items():
                with gr.Tab(i18n(f"tab_{tab_id}"), id=tab_id) as tab_widget:
                    built[tab_id] = module.build(services, i18n, forced)
                opened = built[tab_id].on_open
                if opened is not None:
                    # A reload re-attaches to running jobs and shows checkpoints that finished
                    # meanwhile; opening a tab shows what the others made since, without a reload.
                    page.load(opened.fn, opened.inputs, opened.outputs, api_name=False)
                    tab_widget.select(opened.fn, opened.inputs, opened.outputs, api_name=False)
        wire_across_tabs(services, forced, tabs, built)
    return page, i18n


def wire_across_tabs(services: Services, forced: str | None, tabs: gr.Tabs, built: dict[str, Tab]) -> None:
    """What one tab does to another: the Train tab's "chat with it" opens the Chat tab on the job's
    newest checkpoint; Chat's "Compare" opens the Compare tab on what "Train on my notes" taught."""
    chat_model = built["chat"].widgets["model"]

    def open_in_chat(request: gr.Request, job_id):
        lang = request_lang(request, forced)
        key = newest_checkpoint(services.jobs, job_id)
        if key is None:
            warn(text("tr_no_checkpoint", lang, job=job_id) if job_id else text("tr_pick_job", lang))
            return gr.skip(), gr.skip()
        return gr.Tabs(selected="chat"), chat.refresh_models(services, key, lang)

    built["train"].events["chat_with"](open_in_chat, [built["train"].widgets["job"]], [tabs, chat_model],
                                      api_name=False)

    # Chat's "Compare" after "Train on my notes": the Compare tab on the note just taught, base left and
    # the new checkpoint right; both answers stream, then the same on the job's other photos.
    compare_tab = built["compare"]
    opening, answering, taught = (compare_tab.actions[name] for name in ("open_on_teaching_job", "answer", "taught"))

    def open_compare(job_id, request: gr.Request):
        return gr.Tabs(selected="compare"), *opening.fn(job_id, request)

    (built["chat"].events["compare_taught"](open_compare, [built["chat"].widgets["teaching_job"]],
                                            [tabs, *opening.outputs], api_name="teach_compare")
     .success(answering.fn, answering.inputs, answering.outputs, api_name=False)
     .success(taught.fn, taught.inputs, taught.outputs, api_name="compare_taught"))
