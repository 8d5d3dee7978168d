"""The page's toasts (gr.Info, gr.Warning, gr.Error). Gradio renders a toast's message as HTML, so
every sentence goes through backend/markdown_text.as_text first: a job's name, a path or an error
that holds "<img src=...>" shows as those characters and fetches nothing. ui/ raises no toast but
through these (tests/test_text_is_text.py checks)."""

from __future__ import annotations

import gradio as gr

from backend.markdown_text import as_text


def warn(sentence: str) -> None:
    gr.Warning(as_text(sentence, "html"))


def inform(sentence: str) -> None:
    gr.Info(as_text(sentence, "html"))


def failure(sentence: str) -> gr.Error:
    """The error to raise: `raise failure(...) from None`."""
    return gr.Error(as_text(sentence, "html"))
