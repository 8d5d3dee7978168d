"""The Chat tab: drop a dish photo, ask, watch the answer stream, follow up.

The chain follows Gradio's multimodal chat demo, folded into one streaming handler so API
clients get the same behaviour as the browser: check the message, add it, stream the answer
(input disabled meanwhile), then re-enable the input.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import gradio as gr

from backend.catalog import BASE_KEY, ensure_adapter, find_choice, model_choices
from backend.chat import ChatInputError, ChatSession, user_turn
from backend.images import ImageError
from backend.inference.engine import Cancel, GenerationSettings, Turn
from backend.markdown_text import as_text
from backend.quick_examples import EXAMPLE_QUESTIONS
from backend.services import Services
from backend.taste_notes import NoteError, correction_target
from ui.i18n import markdown, model_label, request_lang, text
from ui.messages import MODEL_CONCURRENCY_ID, example_message, example_pictures, files_of, to_chatbot
from ui.problems import say
from ui.tab import Handler, Tab
from ui.teach import correction_form, newest_teaching_job, notes_panel, opened
from ui.toasts import warn
from ui.upload_guard import foreign_uploads

log = logging.getLogger(__name__)

UPDATE_EVERY_S = 0.08


def model_dropdown(services: Services, lang: str = "en") -> list[tuple[str, str]]:
    """The base model, the newest teaching job's checkpoints (what "Train on my notes" made), then
    every other checkpoint, newest job first."""
    choices = model_choices(services.jobs)
    taught = newest_teaching_job(services)
    first = [c for c in choices if taught and c.key.startswith(f"{taught}:")]
    ordered = [choices[0], *first, *(c for c in choices[1:] if c not in first)]
    return [(model_label(c, lang, services.engine.name), c.key) for c in ordered]


def model_header(services: Services, lang: str) -> str:
    """The model the app serves and its engine, e.g. "**Qwen2-VL: /models/qwen2-vl-2b** · lmdeploy"."""
    source = services.source
    label = text("demo_source", lang) if source.is_demo else source.label
    return f"**{as_text(label)}** · {as_text(services.engine.name)}"


def model_notice(services: Services, key: str | None, lang: str) -> str:
    """What the page says above the chat about the chosen model when the served model has random
    weights: why the base says gibberish, or what an adapter trained on it can answer. Empty for a
    real model."""
    source = services.source
    if not (source.is_demo or source.is_tiny):
        return ""
    base_notice = text("demo_notice" if source.is_demo else "tiny_notice", lang)
    choice = next((c for c in model_choices(services.jobs) if c.key == key), None)
    if choice is None or choice.step is None:  # the base model, or a checkpoint deleted meanwhile
        return base_notice
    base = text("demo_model_name", lang) if source.is_demo else source.label
    return markdown("tuned_notice", lang, base=base, adapter=model_label(choice, lang))


def refresh_models(services: Services, current: str | None, lang: str = "en") -> gr.Dropdown:
    """New checkpoints appear; a deleted one falls back to the base model."""
    options = model_dropdown(services, lang)
    return gr.Dropdown(choices=options, value=current if current in {k for _, k in options} else BASE_KEY)


def chat(message: dict | None, session: ChatSession, max_new_tokens: float, temperature: float,
         top_p: float, model_key: str | None, forced_lang: str | None, services: Services,
         request: gr.Request | None = None) -> Iterator[tuple]:
    """Inputs: the textbox value {text, files}, the session, generation settings, the model
    (base or a checkpoint). Outputs (streamed): chatbot messages, the session, the textbox."""
    lang = request_lang(request, forced_lang)
    keep_input = gr.MultimodalTextbox(value=message, interactive=True)
    if session.answering:
        warn(text("busy", lang))
        yield to_chatbot(session.turns), session, keep_input
        return
    if foreign_uploads(files_of(message), request):  # another visitor's photo, named by its path
        warn(text("upload_not_yours", lang))
        yield to_chatbot(session.turns), session, keep_input
        return
    try:
        settings = GenerationSettings(int(max_new_tokens), float(temperature), float(top_p))
        turn = user_turn((message or {}).get("text"), files_of(message), services.max_pixels, lang)
        choice = find_choice(model_choices(services.jobs), model_key or BASE_KEY)
        adapter = ensure_adapter(services.engine, choice)
    except (ChatInputError, ValueError, OSError) as err:  # ImageError is a ValueError too
        detail = say(err, lang)
        warn(text("bad_image", lang, detail=detail) if isinstance(err, ImageError) else detail)
        yield to_chatbot(session.turns), session, keep_input
        return

    session.turns.append(turn)
    session.answering, session.cancel = True, Cancel()
    answer = ""
    shown = to_chatbot(session.turns)
    yield shown + [{"role": "assistant", "content": "…"}], session, gr.MultimodalTextbox(
        value=None, interactive=False)
    try:
        last_sent = 0.0
        for piece in services.engine.stream(session.turns, settings, session.cancel, adapter):
            answer += piece
            # Every update re-sends the conversation through Gradio's postprocessing (pictures
            # included); a small model makes tokens faster than that, so send at most every
            # UPDATE_EVERY_S and let pieces accumulate in between. The first goes at once.
            if time.monotonic() - last_sent >= UPDATE_EVERY_S:
                last_sent = time.monotonic()
                bubble = {"role": "assistant", "content": as_text(answer, "answer")}
                yield shown + [bubble], session, gr.MultimodalTextbox(interactive=False)
    except (ImageError, ValueError, RuntimeError) as err:
        log.exception("generation failed")
        warn(text("failed", lang, detail=say(err, lang)))
    finally:
        # Runs on normal end, on error and when Stop (or a closed tab) cancels this handler.
        stopped = session.cancel.is_set
        session.cancel.set()
        session.turns.append(Turn("assistant", answer or (text("stopped", lang) if stopped else "")))
        session.answering = False
    yield to_chatbot(session.turns), session, gr.MultimodalTextbox(value=None, interactive=True)


def stop(session: ChatSession) -> tuple[ChatSession, gr.MultimodalTextbox]:
    if session.cancel is not None:
        session.cancel.set()
    return session, gr.MultimodalTextbox(interactive=True)


def clear(session: ChatSession) -> tuple[list, ChatSession, gr.MultimodalTextbox]:
    session.clear()
    return [], ChatSession(), gr.MultimodalTextbox(value=None, interactive=True)


def build(services: Services, i18n: gr.I18n, forced_lang: str | None) -> Tab:
    session = gr.State(ChatSession())
    lang_state = gr.State(forced_lang)

    random_weights = services.source.is_demo or services.source.is_tiny
    notice = gr.Markdown(i18n("demo_notice" if services.source.is_demo else "tiny_notice"), elem_classes=["notice"],
                         visible=random_weights, elem_id="chat-notice")

    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(show_label=False, height=480, buttons=["copy", "copy_all"],
                                 feedback_options=None, elem_id="chatbot")
            textbox = gr.MultimodalTextbox(
                placeholder=i18n("input_placeholder"), file_types=["image"], file_count="multiple",
                sources=["upload"], stop_btn=True, label=i18n("input_label"), show_label=False,
                elem_id="chat-input")
            with gr.Row():
                question_buttons = {key: gr.Button(i18n(f"q_{key}"), size="sm") for key in EXAMPLE_QUESTIONS}
                clear_button = gr.Button(i18n("clear"), size="sm", variant="secondary")
                correct = gr.Button(i18n("teach_correct"), size="sm", elem_id="chat-correct")
            form = correction_form(services, i18n, forced_lang, "chat")
            notes = notes_panel(services, i18n, forced_lang)
        with gr.Column(scale=2):
            header = gr.Markdown(model_header(services, forced_lang or "en"))
            model_pick = gr.Dropdown(model_dropdown(services), value=BASE_KEY, label=i18n("model_label"),
                                     allow_custom_value=True, elem_id="chat-model")
            gallery = gr.Gallery(
                value=example_pictures(services, forced_lang or "zh"),
                label=i18n("quick_examples"), columns=4, height=300, allow_preview=False, buttons=[],
                elem_id="quick-examples")
            with gr.Accordion(i18n("settings"), open=False):
                max_new_tokens = gr.Slider(1, 2048, value=256, step=1, label=i18n("max_new_tokens"))
                temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label=i18n("temperature"))
                top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label=i18n("top_p"))

    def run_chat(message, session, max_new_tokens, temperature, top_p, model_key, lang, request: gr.Request):
        yield from chat(message, session, max_new_tokens, temperature, top_p, model_key, lang, services, request)

    answer = textbox.submit(
        run_chat, [textbox, session, max_new_tokens, temperature, top_p, model_pick, lang_state],
        [chatbot, session, textbox], api_name="chat", concurrency_limit=1,
        concurrency_id=MODEL_CONCURRENCY_ID)
    textbox.stop(stop, [session], [session, textbox], cancels=[answer], api_name="stop")
    clear_button.click(clear, [session], [chatbot, session, textbox], cancels=[answer], api_name="clear")

    def pick_example(lang: str | None, event: gr.SelectData, request: gr.Request):
        return example_message(services, event.index, request_lang(request, lang))

    gallery.select(pick_example, [lang_state], [textbox], api_name="pick_example")

    for key, button in question_buttons.items():
        def ask(message, lang, request: gr.Request, key=key):
            question = EXAMPLE_QUESTIONS[key][request_lang(request, lang)]
            return {"text": question, "files": files_of(message)}

        button.click(ask, [textbox, lang_state], [textbox], api_visibility="private")

    def correct_answer(state: ChatSession, request: gr.Request):
        """Inputs: the conversation. Outputs: the correction form, opened on its newest answer."""
        lang = request_lang(request, forced_lang)
        try:
            return opened(correction_target(state.turns, sees_pictures=services.max_pixels > 0), lang)
        except NoteError as err:
            warn(say(err, lang))
            return None, gr.skip(), gr.skip(), gr.skip()

    correct.click(correct_answer, [session], form.outputs, api_name="correct")
    refresh_notes, notes_outputs = notes.refresh
    form.saved.then(refresh_notes, None, notes_outputs, api_name=False)

    def refresh_picker(key, request: gr.Request):
        return refresh_models(services, key, request_lang(request, forced_lang))

    open_notes, notes_inputs, notes_shown = notes.on_open

    def on_open(key, teaching_job, request: gr.Request):
        """The models now (a checkpoint trained meanwhile, one deleted), the header and the quick
        examples' captions in the page's language, the taste notes and the newest teaching job."""
        lang = request_lang(request, forced_lang)
        return (refresh_models(services, key, lang), model_header(services, lang), example_pictures(services, lang),
                *open_notes(teaching_job, request))

    model_pick.focus(refresh_picker, [model_pick], [model_pick], api_name=False)
    if random_weights:  # the notice says what the chosen model (base, or base + adapter) can answer
        def on_pick(key, request: gr.Request):
            return model_notice(services, key, request_lang(request, forced_lang))

        model_pick.change(on_pick, [model_pick], [notice], api_name=False)
    return Tab(widgets={"model": model_pick, "textbox": textbox, "chatbot": chatbot, "teaching_job": notes.job},
               on_open=Handler(on_open, [model_pick, *notes_inputs], [model_pick, header, gallery, *notes_shown]),
               events={"compare_taught": notes.compare.click})
