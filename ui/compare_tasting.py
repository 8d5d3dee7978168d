"""The Compare tab's blind tasting: the two picked models answer one photo question at a time, shown
as A and B in an order drawn per question; the visitor picks the better or a tie, and once revealed
sees the win rate of all visitors' votes for the pair (backend/evaluation/tasting.py)."""

from __future__ import annotations

import logging

import gradio as gr

from backend.catalog import ensure_adapter, find_choice, model_choices
from backend.data import ThumbnailCache
from backend.evaluation.question_sets import question_sets
from backend.evaluation.tasting import TIE, TastingSession, Votes, tasting_questions
from backend.inference.engine import GenerationSettings, Turn
from backend.markdown_text import as_text
from backend.services import Services
from ui.i18n import model_label, request_lang, set_label, text
from ui.messages import MODEL_CONCURRENCY_ID
from ui.problems import say
from ui.toasts import failure

log = logging.getLogger(__name__)

ANSWERS = GenerationSettings(max_new_tokens=96)


def answer_pair(services: Services, session: TastingSession) -> tuple[str, str]:
    """The question shown, answered by the model on A and the one on B."""
    question = session.current
    turn = [Turn("user", question.text, (str(question.photo),))]
    choices = model_choices(services.jobs)
    answers = []
    for key in session.sides():
        adapter = ensure_adapter(services.engine, find_choice(choices, key))
        answers.append(services.engine.generate_batch([turn], ANSWERS, adapter)[0].strip())
    return answers[0], answers[1]


def tally_markdown(services: Services, pair: tuple[str, str], lang: str) -> str:
    """The pair's votes so far, from every visitor, with the right model's win rate."""
    tally = Votes(services.settings.workdir).tally(pair)
    choices = {c.key: c for c in model_choices(services.jobs)}
    names = [model_label(choices[key], lang) if key in choices else key for key in pair]
    rate, low, high = tally.second_win_rate()
    return text("cmp_taste_tally", lang, left=as_text(names[0]), right=as_text(names[1]), votes=tally.votes,
                left_wins=tally.first_wins, right_wins=tally.second_wins, ties=tally.ties,
                rate=100 * rate, low=100 * low, high=100 * high)


def tasting_section(services: Services, i18n: gr.I18n, forced_lang: str | None, left: gr.Dropdown,
                    right: gr.Dropdown, question_set: gr.Dropdown, prompt_lang: gr.Radio,
                    lang_state: gr.State) -> None:
    with gr.Accordion(i18n("cmp_taste"), open=False, elem_id="compare-tasting"):
        gr.Markdown(i18n("cmp_taste_help"))
        start = gr.Button(i18n("cmp_taste_start"), elem_id="taste-start")
        with gr.Row():
            photo = gr.Image(type="filepath", interactive=False, show_label=False, height=220, scale=1,
                             elem_id="taste-photo")
            question = gr.Markdown(elem_id="taste-question")
        with gr.Row():
            answer_a = gr.Markdown(elem_id="taste-a", elem_classes=["notice"])
            answer_b = gr.Markdown(elem_id="taste-b", elem_classes=["notice"])
        with gr.Row():
            vote_a = gr.Button(i18n("cmp_taste_a"), elem_id="taste-vote-a")
            vote_tie = gr.Button(i18n("cmp_taste_tie"), elem_id="taste-vote-tie")
            vote_b = gr.Button(i18n("cmp_taste_b"), elem_id="taste-vote-b")
        reveal = gr.Button(i18n("cmp_taste_reveal"), size="sm", elem_id="taste-reveal")
        revealed = gr.Markdown(elem_id="taste-revealed")
    session = gr.State(None)  # this visitor's TastingSession
    shown = [session, photo, question, answer_a, answer_b, revealed]
    # The photo as a copy in the work folder's cache: a picture the app shows from a data folder must
    # never land on the path of a visitor's upload of the same file (ui/upload_guard.py)
    previews = ThumbnailCache(services.settings.workdir / "cache" / "previews", size=512)

    def show_next(state: TastingSession, lang: str) -> tuple:
        """The next question of the visitor's queue with both answers, or the end of the queue."""
        asked = state.next()
        if asked is None:
            return state, None, text("cmp_taste_done", lang, count=len(state.queue)), "", "", ""
        first, second = answer_pair(services, state)
        number = text("cmp_taste_number", lang, index=state.position + 1, count=len(state.queue))
        shown_photo = previews.thumbnail(asked.photo) or asked.photo
        return (state, str(shown_photo), f"{number}\n\n**{as_text(asked.text)}**", f"**A**: {as_text(first, 'answer')}",
                f"**B**: {as_text(second, 'answer')}", "")

    def begin(left_key, right_key, set_name, asked_lang, lang, request: gr.Request):
        """Inputs: the two models, the question set, the prompt language. Outputs: a new queue and
        its first question answered by both, sides hidden."""
        page = request_lang(request, lang)
        try:
            choices = model_choices(services.jobs)
            pair = (find_choice(choices, left_key).key, find_choice(choices, right_key).key)
            if pair[0] == pair[1]:
                raise failure(text("cmp_taste_same", page))
            picked = [c for c in choices if c.key in pair]
            records = question_sets(picked, services.settings.data).get(set_name or "")
            if records is None:
                raise failure(text("cmp_taste_no_set", page))
            queue = tasting_questions(records, asked_lang or "zh")
            if not queue:
                raise failure(text("cmp_taste_no_photos", page, set=set_label(set_name, page)))
            return show_next(TastingSession.start(pair, set_name, queue, request.session_hash or "api"), page)
        except (ValueError, OSError, RuntimeError) as err:
            raise failure(say(err, page)) from None

    start.click(begin, [left, right, question_set, prompt_lang, lang_state], shown, api_name="taste_start",
                concurrency_limit=1, concurrency_id=MODEL_CONCURRENCY_ID)

    def voter(choice: str):
        def vote(state: TastingSession | None, lang, request: gr.Request):
            """Inputs: none but the visitor's tasting. Outputs: the next question (the vote is kept)."""
            page = request_lang(request, lang)
            if state is None or state.current is None:
                raise failure(text("cmp_taste_not_started", page))
            Votes(services.settings.workdir).vote(state.pair, state.current.record_id, request.session_hash or "api",
                                                  state.winner(choice))
            try:
                return show_next(state, page)
            except (ValueError, OSError, RuntimeError) as err:
                raise failure(say(err, page)) from None
        return vote

    for button, choice in ((vote_a, "A"), (vote_tie, TIE), (vote_b, "B")):
        button.click(voter(choice), [session, lang_state], shown, api_name=f"taste_vote_{choice.lower()}",
                     concurrency_limit=1, concurrency_id=MODEL_CONCURRENCY_ID)

    def show_tally(state: TastingSession | None, lang, request: gr.Request):
        page = request_lang(request, lang)
        if state is None:
            raise failure(text("cmp_taste_not_started", page))
        sides = ""
        if state.current is not None:
            choices = {c.key: c for c in model_choices(services.jobs)}
            a, b = (model_label(choices[k], page) if k in choices else k for k in state.sides())
            sides = text("cmp_taste_sides", page, a=as_text(a), b=as_text(b)) + "\n\n"
        return sides + tally_markdown(services, state.pair, page)

    reveal.click(show_tally, [session, lang_state], [revealed], api_name="taste_reveal")
