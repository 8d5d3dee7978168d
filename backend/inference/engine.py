"""The one interface every inference engine offers, and the types that cross it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Turn:
    """One message of a conversation. Pictures are file paths; the engine opens them."""

    role: str  # "user" or "assistant"
    text: str
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy: the same question gets the same answer
    top_p: float = 0.9

    def __post_init__(self) -> None:
        if not 1 <= self.max_new_tokens <= 8192:
            raise ValueError("max new tokens must be between 1 and 8192")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must be between 0 and 2")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top-p must be above 0 and at most 1")


@dataclass
class Cancel:
    """Set by whoever reads a stream to make the engine stop generating for it."""

    event: threading.Event = field(default_factory=threading.Event)

    def set(self) -> None:
        self.event.set()

    @property
    def is_set(self) -> bool:
        return self.event.is_set()


class AdapterError(ValueError):
    """A checkpoint folder that cannot be loaded, said in a sentence."""


def check_adapter_folder(folder: str) -> None:
    """Read the adapter's config and every tensor header; AdapterError if anything is off.

    A checkpoint whose copy was cut short, or whose folder was half deleted, must be refused
    with a sentence, not half-loaded into the one model every visitor shares."""
    import json
    from pathlib import Path

    from safetensors import safe_open

    path = Path(folder)
    try:
        json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        with safe_open(str(path / "adapter_model.safetensors"), "pt") as weights:
            if not list(weights.keys()):
                raise ValueError("it holds no weights")
    except Exception as err:  # json, OS and safetensors errors alike mean the same to a person
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AdapterError(f"The checkpoint in {folder} cannot be loaded ({reason}); it may be "
                           "incomplete or damaged. Pick another checkpoint.") from None


class Engine(Protocol):
    name: str

    def stream(self, turns: list[Turn], settings: GenerationSettings,
               cancel: Cancel | None = None, adapter: str | None = None) -> Iterator[str]:
        """Yield the answer to the last user turn piece by piece, as text. `adapter` names a
        loaded LoRA adapter; None is the base model."""
        ...

    def generate_batch(self, conversations: list[list[Turn]], settings: GenerationSettings,
                       adapter: str | None = None) -> list[str]:
        """Answer many conversations at once; for scoring."""
        ...

    def stream_many(self, requests: list[tuple[list[Turn], str | None]], settings: GenerationSettings,
                    cancel: Cancel | None = None) -> Iterator[tuple[int, str]]:
        """Answer several (conversation, adapter) pairs together; yield (index, text piece)."""
        ...

    def load_adapter(self, name: str, folder: str) -> None:
        """Make a LoRA adapter available under `name`, beside the one base model."""
        ...
