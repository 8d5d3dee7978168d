"""One visitor's conversation, and the checks a new message passes before it reaches a model."""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.images import open_image
from backend.inference.engine import Cancel, Turn
from backend.problems import ProblemError

MAX_IMAGES_PER_MESSAGE = 4
MAX_MESSAGE_CHARS = 4000
DEFAULT_QUESTION = {"zh": "这是什么菜？", "en": "What dish is this?"}


class ChatInputError(ProblemError, ValueError):
    """A message that cannot be sent, with the reason in plain words (a Problem: ui/problems.py
    says it in Chinese)."""


@dataclass
class ChatSession:
    """Lives in the visitor's gr.State: never shared between browser sessions."""

    turns: list[Turn] = field(default_factory=list)
    answering: bool = False
    cancel: Cancel | None = None

    def clear(self) -> None:
        if self.cancel is not None:
            self.cancel.set()
        self.turns = []
        self.answering = False


def user_turn(text: str | None, files: list[str], max_pixels: int, lang: str) -> Turn:
    """Check a new message and turn it into a Turn; raises ChatInputError or ImageError.

    Every picture is opened here once, so a broken one is reported before the model is busy."""
    text = (text or "").strip()
    if not text and not files:
        raise ChatInputError("chat_empty", "Type a question or drop a dish photo first.")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ChatInputError("chat_too_long", "The message is {length} characters long; the limit is {limit}.",
                             length=len(text), limit=MAX_MESSAGE_CHARS)
    if len(files) > MAX_IMAGES_PER_MESSAGE:
        raise ChatInputError("chat_too_many_pictures", "At most {limit} pictures per message, please.",
                             limit=MAX_IMAGES_PER_MESSAGE)
    for path in files:
        open_image(path, max_pixels)
    return Turn("user", text or DEFAULT_QUESTION.get(lang, DEFAULT_QUESTION["en"]), tuple(files))
