"""Text from people, datasets and models, put into a Markdown view (the Chatbot, a dataset's
details) as the characters it is."""

from __future__ import annotations

import html


def as_text(value: str) -> str:
    """`value` escaped for Markdown views: "<script>" or "<img onerror=...>" is shown to the reader
    as typed, instead of being dropped without a word by Gradio's sanitiser (or, without it, run)."""
    return html.escape(value, quote=False)
