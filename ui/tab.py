"""The one contract between a tab and the page: every ui/<tab>.py has `build(...) -> Tab`, and
ui/app.py wires tabs to each other through their Tab alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr


@dataclass(frozen=True)
class Handler:
    """An event handler with the widgets it reads and the widgets it sets."""

    fn: Callable
    inputs: list[gr.components.Component]
    outputs: list[gr.components.Component]


@dataclass(frozen=True)
class Tab:
    # Widgets other tabs may read or set, by name (e.g. Chat's "model": the picker a checkpoint is
    # opened on).
    widgets: dict[str, gr.components.Component]
    # Run when a page loads and whenever the tab is opened: the tab says its server-made words in
    # the visitor's language and shows what other tabs made meanwhile (a new checkpoint, a saved
    # set), keeping what the visitor picked.
    on_open: Handler | None = None
    # Events other tabs may listen to, by name: each is the event method itself (a button's .click),
    # called as event(fn, inputs, outputs, ...).
    events: dict[str, Callable] = field(default_factory=dict)
    # What other tabs may run in this tab, by name, after setting its widgets (e.g. Compare's
    # side-by-side answers, once Chat has put a photo and two models in place).
    actions: dict[str, Handler] = field(default_factory=dict)
