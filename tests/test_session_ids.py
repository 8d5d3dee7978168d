"""ui/session_ids.py: a visitor's Gradio session keeps the same entries however many questions they ask,
where Gradio's own SessionState adds one per answer (an updated input box read by the next event)."""

from __future__ import annotations

import gradio as gr
from gradio import state_holder
from gradio_client import Client

from tests.conftest import free_port
from ui.session_ids import keep_replacement_ids


def entries_after(calls: int) -> list[int]:
    """Chat's pattern in a small app: a box that is input to an event which also updates it. The session's
    entry count after the first call and after each later one."""
    with gr.Blocks() as page:
        box = gr.MultimodalTextbox(file_types=["image"])
        out = gr.Textbox()
        box.submit(lambda m: ((m or {}).get("text", ""), gr.MultimodalTextbox(value=None, interactive=True)),
                   [box], [out, box], api_name="ask")
    port = free_port()
    page.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        counts = []
        for _ in range(calls):
            client.predict({"text": "什么菜？", "files": []}, api_name="/ask")
            (session,) = page.state_holder.session_data.values()
            counts.append(len(session.config_values))
        return counts
    finally:
        page.close()


def test_a_session_keeps_its_entries_however_many_questions_are_asked() -> None:
    keep_replacement_ids()
    assert not keep_replacement_ids()  # once per process
    patched = state_holder.SessionState.__setitem__
    counts = entries_after(12)
    assert counts[-1] == counts[1], counts

    # Gradio's own grows with every answer: the day it does not, ui/session_ids.py can go
    state_holder.SessionState.__setitem__ = patched.gradios_own
    try:
        counts = entries_after(12)
    finally:
        state_holder.SessionState.__setitem__ = patched
    assert counts[-1] >= counts[1] + 10, counts
