"""The Compare tab: base and tuned side by side on one photo and question, what a teaching job
changed photo by photo, and the scores (ui/compare_scores.py).

Both answers come from one batched generate call (each row routed through its own adapter),
so they stream at the same time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import gradio as gr
import pandas as pd

from backend.catalog import BASE_KEY, ensure_adapter, find_choice, model_choices
from backend.chat import ChatInputError, user_turn
from backend.data import ThumbnailCache
from backend.evaluation.question_sets import question_sets
from backend.evaluation.taught import HELD_OUT, answer_both, probes
from backend.inference.engine import GenerationSettings
from backend.markdown_text import as_text
from backend.services import Services
from backend.taste_notes import Correction, NoteError
from backend.training.jobs import JobError
from ui.compare_scores import scoring_section
from ui.compare_tasting import tasting_section
from ui.i18n import model_label, request_lang, set_label, text
from ui.messages import MODEL_CONCURRENCY_ID, example_message, example_pictures, files_of, to_chatbot
from ui.problems import say
from ui.tab import Handler, Tab
from ui.teach import correction_form, opened, teaching_target
from ui.toasts import failure, warn
from ui.upload_guard import foreign_uploads

log = logging.getLogger(__name__)

def _dropdown_choices(services: Services, lang: str = "en") -> list[tuple[str, str]]:
    return [(model_label(c, lang, services.engine.name), c.key) for c in model_choices(services.jobs)]


def newest(options: list[tuple[str, str]]) -> str:
    """The newest job's final checkpoint (model_choices lists the base, then the newest job's
    checkpoints, final first), or the base model while there is none."""
    return options[1][1] if len(options) > 1 else BASE_KEY


def side_by_side(message: dict | None, left_key: str, right_key: str, max_new_tokens: float,
                 forced_lang: str | None, services: Services,
                 request: gr.Request | None = None) -> Iterator[tuple]:
    """Inputs: the textbox value, the two model keys. Outputs (streamed): two chatbots, and at the end
    what was asked and answered (a Correction of the right side's answer, for "Correct it")."""
    lang = request_lang(request, forced_lang)
    if foreign_uploads(files_of(message), request):  # another visitor's photo, named by its path
        warn(text("upload_not_yours", lang))
        yield gr.skip(), gr.skip(), gr.skip()
        return
    try:
        choices = model_choices(services.jobs)
        left, right = find_choice(choices, left_key), find_choice(choices, right_key)
        turn = user_turn((message or {}).get("text"), files_of(message), services.max_pixels, lang)
        adapters = [ensure_adapter(services.engine, left), ensure_adapter(services.engine, right)]
    except (ChatInputError, ValueError, OSError) as err:  # ImageError is a ValueError
        warn(say(err, lang))
        yield gr.skip(), gr.skip(), gr.skip()
        return
    shown = to_chatbot([turn])
    answers = ["", ""]
    yield shown, shown, None
    settings = GenerationSettings(int(max_new_tokens))
    def both() -> tuple[list, list]:
        return tuple([*shown, {"role": "assistant", "content": as_text(answer, "answer")}] for answer in answers)

    try:
        for row, piece in services.engine.stream_many([([turn], a) for a in adapters], settings):
            answers[row] += piece
            yield *both(), gr.skip()
    except (ValueError, RuntimeError) as err:
        log.exception("side-by-side generation failed")
        warn(text("failed", lang, detail=say(err, lang)))
        return
    photo = turn.images[-1] if turn.images else ""
    yield *both(), Correction(photo, turn.text, answers[1]) if photo else None


def build(services: Services, i18n: gr.I18n, forced_lang: str | None) -> Tab:
    lang_state = gr.State(forced_lang)
    initial = _dropdown_choices(services)
    # why the answers and scores below are gibberish, where the served model has random weights
    source = services.source
    gr.Markdown(i18n("cmp_demo_notice" if source.is_demo else "tiny_notice"), elem_classes=["notice"],
                visible=source.is_demo or source.is_tiny, elem_id="compare-notice")
    with gr.Row():
        left = gr.Dropdown(initial, value=BASE_KEY, label=i18n("cmp_left"), allow_custom_value=True,
                           elem_id="compare-left")
        right = gr.Dropdown(initial, value=newest(initial), label=i18n("cmp_right"), allow_custom_value=True,
                            elem_id="compare-right")
        refresh = gr.Button(i18n("cmp_refresh"), size="sm", scale=0)
    textbox = gr.MultimodalTextbox(placeholder=i18n("input_placeholder"), file_types=["image"],
                                   sources=["upload"], label=i18n("input_label"), show_label=False,
                                   elem_id="compare-input")
    gallery = gr.Gallery(value=example_pictures(services, forced_lang or "zh"),
                         columns=12, height=110, allow_preview=False, buttons=[], show_label=False,
                         elem_id="compare-examples")
    with gr.Row():
        left_chat = gr.Chatbot(show_label=False, height=360, feedback_options=None, elem_id="compare-left-chat")
        right_chat = gr.Chatbot(show_label=False, height=360, feedback_options=None, elem_id="compare-right-chat")
    with gr.Row():
        max_new_tokens = gr.Slider(1, 1024, value=128, step=1, label=i18n("max_new_tokens"), scale=3)
        correct = gr.Button(i18n("teach_correct"), size="sm", scale=1, elem_id="compare-correct")
    asked = gr.State(None)  # what this visitor's last comparison asked and answered (a Correction)
    form = correction_form(services, i18n, forced_lang, "compare")
    # A teaching job's comparison, photo by photo (Chat's "Compare" fills it): hidden until then
    teaching_job = gr.Textbox(visible=False, elem_id="compare-teaching-job")
    with gr.Group(visible=False, elem_id="compare-taught") as taught:
        gr.Markdown(i18n("cmp_taught_title"))
        taught_photos = gr.Gallery(columns=8, height=150, object_fit="contain", allow_preview=False, buttons=[],
                                   show_label=False, elem_id="compare-taught-photos")
        taught_table = gr.Dataframe(interactive=False, wrap=True, elem_id="compare-taught-table",
                                    column_widths=["6%", "9%", "13%", "18%", "27%", "27%"])

    scores = scoring_section(services, i18n, forced_lang, left, right, lang_state)
    question_set = scores.question_set
    tasting_section(services, i18n, forced_lang, left, right, question_set, scores.prompt_lang, lang_state)

    def refresh_models(left_key, right_key, request: gr.Request):
        lang = request_lang(request, forced_lang)
        options = _dropdown_choices(services, lang)
        keys = {key for _, key in options}
        if right_key not in keys:  # deleted meanwhile
            right_key = newest(options)
        sets = question_sets([c for c in model_choices(services.jobs) if c.key in (left_key, right_key)],
                             services.settings.data)
        return (gr.Dropdown(choices=options, value=left_key if left_key in keys else BASE_KEY),
                gr.Dropdown(choices=options, value=right_key),
                gr.Dropdown(choices=[(set_label(name, lang), name) for name in sets], value=next(iter(sets), None)))

    # The newest checkpoint this page has seen, kept in the page (a hidden textbox), not in a
    # server-side gr.State: the page load and the tab's select both run on_open, and each must read
    # it from the same moment as the dropdowns it came with. A State read on the server could be one
    # reply newer than the right dropdown's value sent with it, and then on_open kept the base model
    # there as if the visitor had picked it.
    newest_seen = gr.Textbox(visible=False)

    def on_open(left_key, right_key, seen, request: gr.Request):
        """The page or the tab opened: the models and question sets now, the pictures' captions in
        the page's language. A checkpoint newer than any this page saw goes on the right; otherwise
        the visitor's choice stays."""
        lang = request_lang(request, forced_lang)
        newest_now = newest(_dropdown_choices(services, lang))
        if newest_now != seen:
            right_key = newest_now
        return (*refresh_models(left_key, right_key, request), example_pictures(services, lang), newest_now)

    # A visitor's pick (.input), not .change: on_open sets both dropdowns and the question sets
    # itself, and a change event it set off would only ask again with values from that moment.
    for trigger in (refresh.click, left.input, right.input):
        trigger(refresh_models, [left, right], [left, right, question_set], api_name=False)

    def pick_example(event: gr.SelectData, lang, request: gr.Request):
        return example_message(services, event.index, request_lang(request, lang))

    gallery.select(pick_example, [lang_state], [textbox], api_name=False)

    def run_side_by_side(message, left_key, right_key, max_new_tokens, lang, request: gr.Request):
        yield from side_by_side(message, left_key, right_key, max_new_tokens, lang, services, request)

    textbox.submit(run_side_by_side, [textbox, left, right, max_new_tokens, lang_state],
                   [left_chat, right_chat, asked], api_name="compare", concurrency_limit=1,
                   concurrency_id=MODEL_CONCURRENCY_ID)

    def correct_answer(found: Correction | None, request: gr.Request):
        lang = request_lang(request, forced_lang)
        if found is None:
            warn(say(NoteError("note_no_answer", "There is no answer to correct yet: ask about a dish photo "
                                     "first."), lang))
            return None, gr.skip(), gr.skip(), gr.skip()
        return opened(found, lang)

    correct.click(correct_answer, [asked], form.outputs, api_name="compare_correct")
    thumbs = ThumbnailCache(services.settings.workdir / "cache" / "thumbs")

    def taught_comparison(job_id: str, request: gr.Request):
        """Inputs: a teaching job. Outputs: the section, its photos and its table: the base model and
        the job's checkpoint on the job's other notes (trained on) and on dishes it has no note
        about (held out)."""
        lang = request_lang(request, forced_lang)
        try:
            job = services.jobs.get(job_id)
            choice = find_choice(model_choices(services.jobs), f"{job.id}:final")
            asked_ = probes(job.spec, services.notes, services.settings.workdir)
            rows = answer_both(services.engine, asked_, ensure_adapter(services.engine, choice))
        except (ValueError, OSError, RuntimeError) as err:
            warn(say(err, lang))
            return gr.Group(visible=False), gr.skip(), gr.skip()
        words = {HELD_OUT: text("cmp_taught_heldout", lang)}
        label = [words.get(r.probe.label, text("cmp_taught_trained", lang)) for r in rows]
        photos = [(str(thumbs.thumbnail(r.probe.photo) or r.probe.photo), f"{i + 1} · {word}")
                  for i, (r, word) in enumerate(zip(rows, label))]
        table = pd.DataFrame([[i + 1, word, r.probe.question, r.probe.expected, r.base, r.tuned]
                              for i, (r, word) in enumerate(zip(rows, label))],
                             columns=[text(f"cmp_taught_col_{c}", lang)
                                      for c in ("photo", "which", "question", "note", "base", "tuned")])
        return gr.Group(visible=bool(rows)), photos, table

    def open_on_teaching_job(job_id: str, request: gr.Request):
        """The teaching job's newest note in the textbox, base on the left, its checkpoint on the right."""
        lang = request_lang(request, forced_lang)
        try:
            photo, question, key = teaching_target(services, job_id)
            find_choice(model_choices(services.jobs), key)
        except (ValueError, JobError) as err:
            raise failure(say(err.args[0] if isinstance(err, JobError) else err, lang)) from None
        options = _dropdown_choices(services, lang)
        return ({"text": question, "files": [photo]}, gr.Dropdown(choices=options, value=BASE_KEY),
                gr.Dropdown(choices=options, value=key), job_id, gr.Group(visible=False))

    run_answers = Handler(run_side_by_side, [textbox, left, right, max_new_tokens, lang_state],
                          [left_chat, right_chat, asked])
    return Tab(widgets={"left": left, "right": right, "textbox": textbox},
               on_open=Handler(on_open, [left, right, newest_seen], [left, right, question_set, gallery, newest_seen]),
               actions={"open_on_teaching_job": Handler(open_on_teaching_job, [],
                                                        [textbox, left, right, teaching_job, taught]),
                        "answer": run_answers,
                        "taught": Handler(taught_comparison, [teaching_job], [taught, taught_photos, taught_table])})
