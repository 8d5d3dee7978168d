"""The page's words in Chinese and English, loaded from ui/locales/en.toml and zh.toml.

Each language is one file, grouped by tab; the words of every tab are one flat table per language
(a key names one string wherever it is used). Labels go through gr.I18n, so the browser shows its
own language without a round trip. Sentences made on the server (warnings, status lines) use
`text(key, lang)`, where lang comes from --lang or the browser's Accept-Language header. Why
something failed comes from the backend as an English Problem; zh.toml's [problems] says it in
Chinese (ui/problems.py).
"""

from __future__ import annotations

import re
import string
import tomllib
from pathlib import Path

import gradio as gr

from backend.evaluation.question_sets import BUNDLED_SET, HELD_OUT, PROBE_SET, TRAINED, set_kind
from backend.markdown_text import Markdown, as_text

LANGS = ("en", "zh")
LOCALES = Path(__file__).resolve().parent / "locales"
# Sections of a locale file that are not the page's words: tables the UI looks values up in.
TABLES = ("problems", "setting_kinds", "question_types", "format_words")


def load_locale(lang: str, folder: Path = LOCALES) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """(the page's words as one table, the lookup TABLES) of <folder>/<lang>.toml. A key in two
    sections is an error: each key names one string wherever it is used."""
    sections = tomllib.loads((folder / f"{lang}.toml").read_text(encoding="utf-8"))
    words: dict[str, str] = {}
    for name, section in sections.items():
        if name in TABLES:
            continue
        clash = words.keys() & section.keys()
        if clash:
            raise KeyError(f"ui/locales/{lang}.toml: {sorted(clash)} in more than one section")
        words.update(section)
    return words, {name: sections.get(name, {}) for name in TABLES}


_LOADED = {lang: load_locale(lang) for lang in LANGS}
STRINGS: dict[str, dict[str, str]] = {lang: words for lang, (words, _) in _LOADED.items()}
PROBLEMS_ZH: dict[str, str] = _LOADED["zh"][1]["problems"]  # Problem key -> its Chinese sentence
SETTING_KINDS_ZH: dict[str, str] = _LOADED["zh"][1]["setting_kinds"]
QUESTION_TYPES_ZH: dict[str, str] = _LOADED["zh"][1]["question_types"]
FORMAT_WORDS_ZH: dict[str, str] = _LOADED["zh"][1]["format_words"]


def text(key: str, lang: str, **values: object) -> str:
    template = STRINGS.get(lang, STRINGS["en"]).get(key) or STRINGS["en"][key]
    return template.format(**values) if values else template


def markdown(key: str, lang: str, **values: object) -> Markdown:
    """text() for a Markdown view: each value that is not a number goes in as the characters it is
    (backend/markdown_text.py: as_text), or as is where it is Markdown already; a value inside a code
    span of the sentence ("in `{folder}`") only loses its backticks."""
    template = STRINGS.get(lang, STRINGS["en"]).get(key) or STRINGS["en"][key]
    in_code, ticks = set(), 0
    for literal, name, _, _ in string.Formatter().parse(template):
        ticks += literal.count("`")
        if name and ticks % 2:
            in_code.add(name)
    safe = {name: value if isinstance(value, (int, float)) else
            as_text(value, "code" if name in in_code else "markdown") for name, value in values.items()}
    return Markdown(template.format(**safe))


def make_i18n(forced: str | None) -> gr.I18n:
    """Follow the browser, or show one language everywhere when --lang forces it."""
    if forced:
        table = STRINGS[forced]
        return gr.I18n(en=table, zh=table, **{"zh-CN": table, "zh-TW": table, "en-US": table})
    return gr.I18n(en=STRINGS["en"], zh=STRINGS["zh"], **{"zh-CN": STRINGS["zh"], "zh-TW": STRINGS["zh"]})


def request_lang(request: gr.Request | None, forced: str | None) -> str:
    """--lang if given, else the browser's first preference among ours."""
    if forced:
        return forced
    header = ""
    if request is not None:
        header = (request.headers.get("accept-language") or "") if request.headers else ""
    for part in header.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "en"


# ---- values said in words --------------------------------------------------------------------


def model_label(choice, lang: str, engine_name: str = "") -> str:
    """A model of the catalog (backend.catalog.ModelChoice) named in `lang`: what it trained where that is
    more than LoRA on the language model, and whether `engine_name` serves it merged."""
    from backend.catalog import served_merged
    from backend.training.spec import LANGUAGE_LORA

    if choice.step is None:
        return text("model_base", lang)
    label = text("model_final" if choice.final else "model_step", lang, job=choice.job_name, step=choice.step)
    label = label if choice.loss is None else text("model_loss", lang, label=label, loss=choice.loss)
    if choice.trains != LANGUAGE_LORA:
        label = text("model_trains", lang, label=label, parts=trains_words(choice.trains, lang))
    return text("model_merged", lang, label=label) if served_merged(engine_name, choice) else label


def trains_words(trains: str, lang: str) -> str:
    """What a job trains (spec.trains), in words: "LoRA + projector"."""
    from backend.training.spec import trained_parts

    order = ["language-lora", "language-full", "vision-lora", "projector"]
    parts = sorted(trained_parts(trains), key=lambda part: order.index(part) if part in order else len(order))
    return " + ".join(text(f"trains_{part.replace('-', '_')}", lang) for part in parts)


def set_label(name: str, lang: str) -> str:
    """A question set's name ("trained · <set>", "held-out · <set>", "FoodieQA · <folder>") in `lang`;
    the name itself stays the set's key."""
    if name in (BUNDLED_SET, PROBE_SET):
        return text("set_bundled" if name == BUNDLED_SET else "set_probe", lang)
    kind, training_set = set_kind(name)
    key = {TRAINED: "set_trained", HELD_OUT: "set_heldout"}.get(kind)
    return text(key, lang, name=training_set) if key else name


def task_word(task: str, lang: str) -> str:
    """A task id (sivqa, mivqa, textqa, conversation) as the Dataset tab names it; others as they are."""
    key = f"task_{task}"
    return text(key, lang) if key in STRINGS["en"] else task


def question_type_word(question_type: str, lang: str) -> str:
    """A FoodieQA question type (its own label, an open set) in `lang`: in Chinese where zh.toml
    names it, as words on an English page ("main-ingredient" as "main ingredient")."""
    if lang == "zh":
        return QUESTION_TYPES_ZH.get(question_type, question_type)
    return re.sub(r"[_-]+", " ", question_type).strip() or question_type


def format_label(label: str, lang: str) -> str:
    """How a data format is named ("InternVL jsonl", "CSV/TSV/Excel table"): a name, said as it is, but
    for the plain words in it, which zh.toml's [format_words] says in Chinese."""
    if lang != "zh":
        return label
    for english, chinese in FORMAT_WORDS_ZH.items():
        label = label.replace(english, chinese)
    return label


def value_word(facet: str, value: str, lang: str) -> str:
    """A task's or a question type's value in `lang` (the Dataset and Compare tabs name them alike);
    any other facet's value as it is."""
    word = {"task": task_word, "question_type": question_type_word}.get(facet)
    return word(value, lang) if word else value
