"""Tabs that are not built yet: each says what it will do, so the whole product is visible."""

from __future__ import annotations

import gradio as gr


def build(i18n: gr.I18n, key: str) -> None:
    gr.Markdown(i18n(key))
