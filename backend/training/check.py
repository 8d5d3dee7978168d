"""Did the model learn its training answers? Greedy answers compared with the trained ones, exactly.

Used by the training benchmark and the tests to hold the demo preset to its bar (at least 90% of the
trained questions answered word for word after a minute on a CPU). Generation goes through the
app's own engine, base model and adapter side by side, as Chat and Compare run them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from backend.inference.engine import GenerationSettings, Turn
from backend.inference.transformers_engine import TransformersEngine
from backend.models.loading import load, resolve
from backend.training.samples import Sample

log = logging.getLogger(__name__)


@dataclass
class ExactReport:
    asked: int = 0
    exact: int = 0
    misses: list[tuple[str, str, str]] = field(default_factory=list)  # (sample id, expected, got)

    @property
    def rate(self) -> float:
        return self.exact / self.asked if self.asked else 0.0


def load_engine(model_location: str, adapters: dict[str, Path] | None = None,
                device: str = "cpu") -> TransformersEngine:
    """The base model in the app's engine, with trained adapters loaded beside it by name."""
    engine = TransformersEngine(load(resolve(model_location), device=device))
    for name, folder in (adapters or {}).items():
        engine.load_adapter(name, str(folder))
    return engine


def questions(samples: list[Sample]) -> list[tuple[str, list[Turn], str]]:
    """(sample id, conversation up to an answer, that answer) for every answer of every sample:
    later answers are asked with the earlier trained answers before them, as they were trained."""
    asked = []
    for sample in samples:
        pictures = iter(str(p) for p in sample.images)
        turns: list[Turn] = []
        for message in sample.messages:
            images = tuple(next(pictures) for part in message["content"] if part.get("type") == "image")
            text = " ".join(part["text"] for part in message["content"] if part.get("type") == "text")
            if message["role"] == "assistant":
                asked.append((sample.id, list(turns), text))
            if message["role"] in ("user", "assistant"):
                turns.append(Turn(message["role"], text, images))
    return asked


def exact_answers(engine: TransformersEngine, samples: list[Sample], adapter: str | None = None,
                  batch_size: int = 24, max_new_tokens: int = 48) -> ExactReport:
    """Greedy answers (base model when `adapter` is None) compared with the trained answers."""
    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=0.0)
    report = ExactReport()
    asked = questions(samples)
    for start in range(0, len(asked), batch_size):
        chunk = asked[start : start + batch_size]
        answers = engine.generate_batch([turns for _, turns, _ in chunk], settings, adapter=adapter)
        for (sample_id, _, expected), got in zip(chunk, answers):
            report.asked += 1
            if got.strip() == expected:
                report.exact += 1
            else:
                report.misses.append((sample_id, expected, got.strip()))
    return report
