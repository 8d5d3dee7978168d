"""Inference with plain transformers `generate`, on CPU or GPU. Works for every family we load.

One model serves every browser session. Generation runs one request at a time behind a lock:
Qwen2-VL keeps per-call rope state on the model object (`rope_deltas`), so two generate calls
on one model at once would corrupt each other. The UI's queue puts further requests in line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from backend.images import open_image
from backend.inference.engine import Cancel, GenerationSettings, Turn
from backend.models.loading import LoadedModel

log = logging.getLogger(__name__)


class _StopWhenCancelled(StoppingCriteria):
    def __init__(self, cancel: Cancel) -> None:
        self.cancel = cancel

    def __call__(self, input_ids, scores, **kwargs) -> bool:
        return self.cancel.is_set


def to_chat_messages(turns: list[Turn]) -> list[dict]:
    """Our turns -> the chat-template message format that every processor understands."""
    messages = []
    for turn in turns:
        content: list[dict] = [{"type": "image"} for _ in turn.images]
        content.append({"type": "text", "text": turn.text})
        messages.append({"role": turn.role, "content": content})
    return messages


class TransformersEngine:
    name = "transformers"

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self._lock = threading.Lock()

    def prepare(self, turns: list[Turn]) -> dict:
        """Pictures opened and downscaled, the chat template applied, everything tokenized."""
        if not turns or turns[-1].role != "user":
            raise ValueError("the conversation must end with a user turn")
        processor = self.loaded.processor
        images = [open_image(path, self.loaded.max_pixels) for turn in turns for path in turn.images]
        prompt = processor.apply_chat_template(to_chat_messages(turns), add_generation_prompt=True,
                                               tokenize=False)
        inputs = processor(text=[prompt], images=images or None, return_tensors="pt")
        return {k: (v.to(self.loaded.device) if hasattr(v, "to") else v) for k, v in inputs.items()}

    def _generate_kwargs(self, settings: GenerationSettings) -> dict:
        sampling = settings.temperature > 0
        kwargs: dict = {"max_new_tokens": settings.max_new_tokens, "do_sample": sampling}
        if sampling:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
        else:  # quiet the warnings about sampling settings a greedy call ignores
            kwargs.update(temperature=None, top_p=None, top_k=None)
        tokenizer = self.loaded.processor.tokenizer
        if tokenizer.pad_token_id is not None:
            kwargs["pad_token_id"] = tokenizer.pad_token_id
        return kwargs

    def stream(self, turns: list[Turn], settings: GenerationSettings,
               cancel: Cancel | None = None) -> Iterator[str]:
        cancel = cancel or Cancel()
        inputs = self.prepare(turns)  # bad pictures fail here, before anything is queued
        streamer = TextIteratorStreamer(self.loaded.processor.tokenizer, skip_prompt=True,
                                        skip_special_tokens=True)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with self._lock, torch.inference_mode():
                    if cancel.is_set:
                        return
                    self.loaded.model.generate(
                        **inputs, streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_StopWhenCancelled(cancel)]),
                        **self._generate_kwargs(settings))
            except BaseException as err:  # handed to the reader, who raises it
                failure.append(err)
            finally:
                streamer.end()

        worker = threading.Thread(target=run, name="generate", daemon=True)
        worker.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        finally:
            # The reader may have gone (browser closed, Stop pressed): let generate end early.
            cancel.set()
        worker.join()
        if failure:
            raise failure[0]
