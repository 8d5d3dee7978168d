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
        self._adapters: dict[str, str] = {}  # name -> folder, in load order

    # -- adapters: one base model in memory, LoRA adapters beside it, chosen per request --------

    @property
    def adapters(self) -> dict[str, str]:
        return dict(self._adapters)

    def load_adapter(self, name: str, folder: str) -> None:
        """Load a LoRA adapter (peft's format) next to the base weights, which are not copied.

        Loading the same name again with the same folder is a no-op; a new folder replaces it."""
        if self._adapters.get(name) == folder:
            return
        with self._lock:
            model = self.loaded.model
            if name in self._adapters:
                model.delete_adapter(name)
            model.load_adapter(folder, adapter_name=name)
            model.to(self.loaded.device)
            self._adapters[name] = folder
        log.info("loaded adapter %s from %s", name, folder)

    def _use_adapter(self, adapter: str | None) -> None:
        """Called under the lock: route the next forward passes through `adapter` (None: base)."""
        if not self._adapters:
            if adapter is not None:
                raise ValueError(f"no adapter named {adapter!r} is loaded")
            return
        model = self.loaded.model
        if adapter is None:
            model.disable_adapters()
            return
        if adapter not in self._adapters:
            raise ValueError(f"no adapter named {adapter!r} is loaded")
        model.enable_adapters()
        model.set_adapter(adapter)

    # -- prompts -------------------------------------------------------------------------------

    def _prompt_and_images(self, turns: list[Turn]) -> tuple[str, list]:
        if not turns or turns[-1].role != "user":
            raise ValueError("the conversation must end with a user turn")
        images = [open_image(path, self.loaded.max_pixels) for turn in turns for path in turn.images]
        prompt = self.loaded.processor.apply_chat_template(
            to_chat_messages(turns), add_generation_prompt=True, tokenize=False)
        return prompt, images

    def prepare(self, turns: list[Turn]) -> dict:
        """Pictures opened and downscaled, the chat template applied, everything tokenized."""
        return self.prepare_batch([turns])

    def prepare_batch(self, conversations: list[list[Turn]]) -> dict:
        """Several conversations in one left-padded batch (generation appends on the right)."""
        prompts, images = [], []
        for turns in conversations:
            prompt, pictures = self._prompt_and_images(turns)
            prompts.append(prompt)
            images.extend(pictures)
        inputs = self.loaded.processor(text=prompts, images=images or None, return_tensors="pt",
                                       padding=True, padding_side="left")
        return {k: (v.to(self.loaded.device) if hasattr(v, "to") else v) for k, v in inputs.items()}

    def generate_batch(self, conversations: list[list[Turn]], settings: GenerationSettings,
                       adapter: str | None = None) -> list[str]:
        """Answer several conversations in one batched generate call (for scoring)."""
        inputs = self.prepare_batch(conversations)
        with self._lock, torch.inference_mode():
            self._use_adapter(adapter)
            output = self.loaded.model.generate(**inputs, **self._generate_kwargs(settings))
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        return self.loaded.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

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
               cancel: Cancel | None = None, adapter: str | None = None) -> Iterator[str]:
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
                    self._use_adapter(adapter)
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
