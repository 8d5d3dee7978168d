"""What Chat and Compare share: turns shown as Chatbot messages, the textbox's value read back, the
quick examples as a gallery shows them, and the one concurrency limit of every handler that runs
the model."""

from __future__ import annotations

from backend.inference.engine import Turn
from backend.markdown_text import as_text
from backend.services import Services

# Every handler that runs the model shares this id, so the app never runs more generations at
# once than the engine can (the transformers engine: one); others wait in Gradio's queue.
MODEL_CONCURRENCY_ID = "model"


def to_chatbot(turns: list[Turn]) -> list[dict]:
    """Our turns -> Chatbot messages: each picture its own bubble, then the text."""
    messages: list[dict] = []
    for turn in turns:
        for path in turn.images:
            messages.append({"role": turn.role, "content": {"path": path}})
        # A person's words are shown as typed; a model's answer keeps its Markdown formatting.
        view = "answer" if turn.role == "assistant" else "markdown"
        messages.append({"role": turn.role, "content": as_text(turn.text, view)})
    return messages


def files_of(message: dict | None) -> list[str]:
    """The paths of the files in a MultimodalTextbox value."""
    files = (message or {}).get("files") or []
    return [f if isinstance(f, str) else (f.get("path") or "") for f in files]


def example_pictures(services: Services, lang: str) -> list[tuple[str, str]]:
    """The quick examples as a gallery shows them: each picture with its dish and cuisine in `lang`."""
    return [(str(ex.image), ex.caption(lang)) for ex in services.examples]


def example_message(services: Services, index: int, lang: str) -> dict:
    """A quick example as a textbox value: its photo and its question in `lang`."""
    example = services.examples[index]
    return {"text": example.question(lang), "files": [str(example.image)]}
