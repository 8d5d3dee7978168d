"""Inference with plain transformers `generate`, on CPU or GPU. Works for every family we load.

One model serves every browser session. Generation runs one `generate` call at a time behind a
lock: Qwen2-VL keeps per-call rope state on the model object (`rope_deltas`), so two calls on
one model at once would corrupt each other. The UI's queue puts further requests in line, and
scoring and side-by-side comparison put several answers into one batched call instead.

LoRA adapters are loaded with peft beside the one base model (no copy of the base weights).
Each row of a batch names its adapter, or none for the base model, so "base vs tuned" is a
single batched call whose two answers stream at the same time.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from backend.images import open_image
from backend.inference.engine import (
    Cancel,
    GenerationSettings,
    Turn,
    check_adapter_fits,
    check_adapter_folder,
    check_whole_model_fits,
    decoder_prefix,
    is_whole_model,
    language_lora_only,
    linear_layers,
    trains_decoder_whole,
)
from backend.models.families import FAMILIES
from backend.models.loading import LoadedModel
from backend.problems import ProblemError

log = logging.getLogger(__name__)

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


@dataclass(frozen=True)
class Prepared:
    """A batch made ready on the CPU (pictures opened, prompts encoded), to run on the model later: in
    `groups` the family can batch, each (its rows, the processor's tensors, what the run needs besides)."""

    rows: int
    groups: list[tuple[list[int], dict, Any]]

    @property
    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for _, inputs, _ in self.groups for v in inputs.values()
                   if isinstance(v, torch.Tensor))
_DONE = object()


class PictureNeeded(ProblemError, ValueError):
    """A question without a photo for a model that answers only about one (BLIP-2)."""


class _StopWhenCancelled(StoppingCriteria):
    def __init__(self, cancel: Cancel) -> None:
        self.cancel = cancel

    def __call__(self, input_ids, scores, **kwargs) -> bool:
        return self.cancel.is_set


class _BatchTextStreamer(BaseStreamer):
    """Turns the tokens `generate` produces for each row into text pieces on a queue.

    transformers' TextIteratorStreamer takes one row only; this keeps a token list per row and
    emits what its decoded text gained, holding back an incomplete multi-byte character."""

    def __init__(self, tokenizer, rows: int) -> None:
        self.tokenizer = tokenizer
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.sent = [0] * rows
        self.queue: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # the first call carries the prompt
            self._prompt_seen = True
            return
        for row, token in enumerate(value.reshape(len(self.tokens), -1)[:, -1].tolist()):
            self.tokens[row].append(token)
            self._emit(row, final=False)

    def _emit(self, row: int, final: bool) -> None:
        text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True)
        if text.endswith("\ufffd") and not final:
            return  # the next token may complete the character
        if len(text) > self.sent[row]:
            self.queue.put((row, text[self.sent[row]:]))
            self.sent[row] = len(text)

    def end(self) -> None:
        for row in range(len(self.tokens)):
            self._emit(row, final=True)  # what was held back, even if it stays incomplete
        self.queue.put(_DONE)


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
        self._peft = None  # the PeftModel around the base, once an adapter is loaded
        self._served_layers: dict[str, tuple[int, int]] | None = None  # the base's linear layers, read once
        # adapters that trained more than LoRA on the language model (engine.language_lora_only)
        self._beyond_language_lora: set[str] = set()
        self._merged: dict[str, LoadedModel] = {}  # checkpoints served as models of their own (_load_own_model)
        self._local = threading.local()  # a preparing thread's own processor (own_processor_here)

    # -- adapters ------------------------------------------------------------------------------

    @property
    def adapters(self) -> dict[str, str]:
        return dict(self._adapters)

    def load_adapter(self, name: str, folder: str) -> None:
        """Load a LoRA adapter (peft's format) beside the base weights, which are not copied.

        The same name and folder again is a no-op; a new folder for a name replaces it."""
        if name == BASE or not name:
            raise ValueError(f"{name!r} cannot name an adapter")
        if self._adapters.get(name) == folder:
            return
        check_adapter_folder(folder)  # before the model is touched: a bad folder changes nothing
        if is_whole_model(folder):  # a full fine-tune's model folder
            check_whole_model_fits(folder, self.loaded.source.location)
            self._load_own_model(name, folder, "a whole model", self._whole_model)
            return
        if self._served_layers is None:
            self._served_layers = linear_layers(self.loaded.model)
        check_adapter_fits(folder, self._served_layers, self.loaded.source.location)  # another base model: refused
        if trains_decoder_whole(folder, decoder_prefix(self.loaded.model)):
            self._load_own_model(name, folder, "a merged model", self._merged_model)
            return
        from peft import PeftModel

        with self._lock:
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self.loaded.model, folder, adapter_name=name)
            else:
                if name in self._adapters:
                    self._peft.delete_adapter(name)
                self._peft.load_adapter(folder, adapter_name=name)
            self._peft.to(self.loaded.device).eval()
            self._adapters[name] = folder
            if language_lora_only(folder, decoder_prefix(self.loaded.model)):
                self._beyond_language_lora.discard(name)
            else:
                self._beyond_language_lora.add(name)
        log.info("loaded adapter %s from %r", name, str(folder))

    def _merged_model(self, folder: str) -> torch.nn.Module:
        """A checkpoint that trained decoder layers whole, as a model of its own: the base loaded again with
        the checkpoint merged in. peft cannot keep whole copies of decoder layers beside other adapters'
        LoRA layers inside the same layers (it would look for one's weights under the other's names), and
        such a copy is as large as a second model anyway."""
        from peft import PeftModel
        from transformers import AutoModelForImageTextToText

        base = AutoModelForImageTextToText.from_pretrained(self.loaded.source.location, dtype=self.loaded.dtype)
        return PeftModel.from_pretrained(base, folder).merge_and_unload()

    def _whole_model(self, folder: str) -> torch.nn.Module:
        from transformers import AutoModelForImageTextToText

        return AutoModelForImageTextToText.from_pretrained(folder, dtype=self.loaded.dtype)

    def _load_own_model(self, name: str, folder: str, kind: str, build) -> None:
        """Serve a checkpoint as a model of its own beside the base (`build` makes it from the folder); the
        base's processor serves it."""
        from dataclasses import replace

        model = build(folder).to(self.loaded.device, self.loaded.dtype).eval()
        with self._lock:
            if name in self._adapters and name not in self._merged and self._peft is not None:
                self._peft.delete_adapter(name)
            self._merged[name] = replace(self.loaded, model=model)
            self._adapters[name] = folder
            self._beyond_language_lora.add(name)
        log.info("loaded %s from %s as %s of its own", name, folder, kind)

    def _model(self, adapters: Sequence[str | None]) -> torch.nn.Module:
        """The model a batch runs through: a checkpoint's own (_load_own_model), else the base with its
        adapters."""
        merged = self._merged.get(adapters[0]) if len(set(adapters)) == 1 else None
        return merged.model if merged is not None else self.loaded.model

    def _check_adapters(self, adapters: Sequence[str | None]) -> None:
        unknown = [a for a in adapters if a is not None and a not in self._adapters]
        if unknown:
            raise ValueError(f"no adapter named {unknown[0]!r} is loaded")

    def _routing(self, adapters: Sequence[str | None]):
        """A context in which each batch row runs through its own adapter (None: the base)."""
        self._check_adapters(adapters)
        if self._peft is None or (len(set(adapters)) == 1 and adapters[0] in self._merged):
            return contextlib.nullcontext()
        if len(set(adapters)) == 1:  # one adapter (or the base) for the whole batch: no routing per row
            return self._peft.disable_adapter() if adapters[0] is None else self._only(adapters[0])
        # peft's own generate() routes mixed batches through this context; calling it directly
        # lets us keep the base model's generate (and its processor-specific inputs) unchanged.
        return self._peft._enable_peft_forward_hooks(adapter_names=[a or BASE for a in adapters])

    @contextlib.contextmanager
    def _only(self, name: str):
        self._peft.set_adapter(name)
        yield

    @property
    def _routes_rows(self) -> bool:
        """Whether one batch can mix adapters row by row. peft routes each row of every adapted layer's
        input to its adapter (whichever adapters the batch names), which needs the rows in the first
        dimension: OPT (BLIP-2's language model) flattens the batch before its MLP, a vision tower's
        inputs are patches, not rows, and a module trained whole (a projector, a decoder layer) cannot
        be split by rows at all. So once such a checkpoint is loaded, or on OPT, each request answers in
        its own call."""
        return FAMILIES[self.loaded.source.family].mixed_adapter_batches and not self._beyond_language_lora

    # -- prompts -------------------------------------------------------------------------------

    def own_processor_here(self) -> None:
        """Give the calling thread a copy of the processor for what it prepares from now on: a fast
        tokenizer's padding settings are state that each padded call sets, and two threads preparing
        batches at once (scoring.Preparation) would collide in it."""
        self._local.processor = copy.deepcopy(self.loaded.processor)

    @property
    def _processor(self):
        own = getattr(self._local, "processor", None)
        return self.loaded.processor if own is None else own

    def _prompt_and_images(self, turns: list[Turn]) -> tuple[str, list]:
        if not turns or turns[-1].role != "user":
            raise ValueError("the conversation must end with a user turn")
        family = FAMILIES[self.loaded.source.family]
        if family.needs_picture and not any(turn.images for turn in turns):
            raise PictureNeeded("picture_needed", "{family} answers only questions about a photo: add a photo to "
                                "ask it (a question set's text questions cannot be scored on it).",
                                family=family.label)
        images = [open_image(path, self.loaded.max_pixels) for turn in turns for path in turn.images]
        prompt = self._processor.apply_chat_template(to_chat_messages(turns), add_generation_prompt=True,
                                                     tokenize=False)
        return prompt, images

    def prepare(self, turns: list[Turn]) -> dict:
        """Pictures opened and downscaled, the chat template applied, everything tokenized."""
        return self.prepare_batch([turns])

    def prepare_batch(self, conversations: list[list[Turn]]) -> dict:
        """Several conversations in one left-padded batch (generation appends on the right), on the model's
        device."""
        return self._on_device(self._encoded(conversations))

    def _encoded(self, conversations: list[list[Turn]]) -> dict:
        """Conversations' prompts and pictures through the processor, on the CPU."""
        return self._encode(*zip(*(self._prompt_and_images(turns) for turns in conversations)))

    def _encode(self, prompts, images) -> dict:
        """Prompts and their pictures (one list per prompt) through the processor, left-padded, on the CPU."""
        # Pictures as one list per conversation: Gemma 3's and SmolVLM's processors count them per
        # prompt; the others flatten the lists.
        return dict(self._processor(text=list(prompts), images=list(images) if any(images) else None,
                                    return_tensors="pt", padding=True, padding_side="left"))

    def _on_device(self, inputs: dict) -> dict:
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

    # -- generation ----------------------------------------------------------------------------

    def _picture_groups(self, conversations: list[list[Turn]]) -> list[list[int]]:
        """The rows that can share one batch: all of them, or, for a family whose processor cannot mix
        picture counts in a batch, the rows of each picture count."""
        if FAMILIES[self.loaded.source.family].mixed_picture_batches:
            return [list(range(len(conversations)))]
        groups: dict[int, list[int]] = {}
        for i, turns in enumerate(conversations):
            groups.setdefault(sum(len(t.images) for t in turns), []).append(i)
        return list(groups.values())

    def generate_batch(self, conversations: list[list[Turn]], settings: GenerationSettings,
                       adapter: str | None = None) -> list[str]:
        """Answer several conversations in one batched generate call (for scoring)."""
        return self.replies_from(self.reply_inputs(conversations), settings, adapter)

    def reply_inputs(self, conversations: list[list[Turn]]) -> Prepared:
        """generate_batch's CPU half: pictures opened, prompts encoded (in groups the family can batch)."""
        return Prepared(len(conversations), [
            (rows, self._encoded([conversations[i] for i in rows]), None)
            for rows in self._picture_groups(conversations)])

    def replies_from(self, prepared: Prepared, settings: GenerationSettings, adapter: str | None = None) -> list[str]:
        """generate_batch's GPU half: each group's replies, in the conversations' order."""
        answers: dict[int, str] = {}
        for rows, encoded, _ in prepared.groups:
            inputs = self._on_device(encoded)
            with self._lock, torch.inference_mode(), self._routing([adapter] * len(rows)):
                output = self._model([adapter]).generate(**inputs, **self._generate_kwargs(settings))
            new_tokens = output[:, inputs["input_ids"].shape[1]:]
            answers.update(zip(rows, self.loaded.processor.tokenizer.batch_decode(new_tokens,
                                                                                  skip_special_tokens=True)))
        return [answers[i] for i in range(prepared.rows)]

    def letter_logprobs(self, conversations: list[list[Turn]], opening: str, letters: Sequence[Sequence[str]],
                        adapter: str | None = None) -> list[list[float]]:
        """For each conversation, the log-probability of each of its `letters` opening the reply, right
        after `opening` (the answer's first words, "答案：("): one forward pass per batch, no decoding.

        A letter's text may merge with the opening into one token ("(B"): each letter is scored by the
        first token in which its reply differs from the others', at the position where they part."""
        return self.letter_logprobs_from(self.letter_inputs(conversations, opening, letters), adapter)

    def letter_inputs(self, conversations: list[list[Turn]], opening: str,
                      letters: Sequence[Sequence[str]]) -> Prepared:
        """letter_logprobs' CPU half: pictures opened, prompts encoded with the opening and the first letter,
        and where each letter's own token sits."""
        tokenizer = self._processor.tokenizer
        groups = []
        for rows in self._picture_groups(conversations):
            texts, images, tails, candidates = [], [], [], []
            for i in rows:
                prompt, pictures = self._prompt_and_images(conversations[i])
                replies = [tokenizer(prompt + opening + letter, add_special_tokens=False)["input_ids"]
                           for letter in letters[i]]
                shared = _shared_length(replies)
                own = [ids[shared] if shared < len(ids) else None for ids in replies]
                if None in own or len(set(own)) < len(own):
                    raise ValueError(f"the letters {', '.join(letters[i])} cannot be told apart by this model's "
                                     "tokenizer after the answer's opening")
                texts.append(prompt + opening + letters[i][0])
                images.append(pictures)
                tails.append(len(replies[0]) - shared)  # tokens from the first letter's own token to the end
                candidates.append(own)
            groups.append((rows, self._encode(texts, images), (tails, candidates)))
        return Prepared(len(conversations), groups)

    def letter_logprobs_from(self, prepared: Prepared, adapter: str | None = None) -> list[list[float]]:
        """letter_logprobs' GPU half."""
        found: dict[int, list[float]] = {}
        model = self._model([adapter])
        # the logits of the last positions only: all of them would be rows x length x vocabulary
        keeps_last = "logits_to_keep" in inspect.signature(model.forward).parameters
        for rows, encoded, (tails, candidates) in prepared.groups:
            keep = max(tails) + 1
            inputs = self._on_device(encoded) | ({"logits_to_keep": keep} if keeps_last else {})
            with self._lock, torch.inference_mode(), self._routing([adapter] * len(rows)):
                logits = model(**inputs).logits[:, -keep:].float()
            # the left-padded rows all end at the last position; a letter's own token sits `tail` from the
            # end, and the logits that predict it one position before
            at = logits[torch.arange(len(rows)), torch.tensor([keep - 1 - tail for tail in tails])].log_softmax(-1)
            found.update((row, at[j, ids].tolist()) for j, (row, ids) in enumerate(zip(rows, candidates)))
        return [found[i] for i in range(prepared.rows)]

    def stream_many(self, requests: Sequence[tuple[list[Turn], str | None]], settings: GenerationSettings,
                    cancel: Cancel | None = None) -> Iterator[tuple[int, str]]:
        """Answer several (conversation, adapter) pairs in one batch; yield (row, text piece) as
        the tokens come, so side-by-side answers grow together."""
        cancel = cancel or Cancel()
        adapters = [adapter for _, adapter in requests]
        self._check_adapters(adapters)  # an unknown adapter fails here, not inside the thread
        if len(requests) > 1 and ((len(set(adapters)) > 1 and not self._routes_rows)
                                  or not FAMILIES[self.loaded.source.family].mixed_picture_batches):
            for row, request in enumerate(requests):  # one after the other (see _routes_rows)
                for _, piece in self._stream_batch([request], settings, cancel, last=row == len(requests) - 1):
                    yield row, piece
            return
        yield from self._stream_batch(requests, settings, cancel)

    def _stream_batch(self, requests: Sequence[tuple[list[Turn], str | None]], settings: GenerationSettings,
                      cancel: Cancel, last: bool = True) -> Iterator[tuple[int, str]]:
        """stream_many's one batched generate call. `cancel` is set when the reader goes away, and at the
        end of the `last` call (a request answered after this one keeps it unset)."""
        conversations = [turns for turns, _ in requests]
        adapters = [adapter for _, adapter in requests]
        inputs = self.prepare_batch(conversations)  # bad pictures fail here, before any waiting
        streamer = _BatchTextStreamer(self.loaded.processor.tokenizer, len(requests))
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with self._lock, torch.inference_mode():
                    if cancel.is_set:
                        return
                    with self._routing(adapters):
                        self._model(adapters).generate(
                            **inputs, streamer=streamer,
                            stopping_criteria=StoppingCriteriaList([_StopWhenCancelled(cancel)]),
                            **self._generate_kwargs(settings))
            except BaseException as err:  # handed to the reader, who raises it
                failure.append(err)
            finally:
                streamer.end()

        worker = threading.Thread(target=run, name="generate", daemon=True)
        worker.start()
        read_all = False
        try:
            while (item := streamer.queue.get()) is not _DONE:
                yield item
            read_all = True
        finally:
            # The reader may have gone (browser closed, Stop pressed): let generate end early.
            if last or not read_all:
                cancel.set()
        worker.join()
        if failure:
            raise failure[0]

    def stream(self, turns: list[Turn], settings: GenerationSettings,
               cancel: Cancel | None = None, adapter: str | None = None) -> Iterator[str]:
        for _, piece in self.stream_many([(turns, adapter)], settings, cancel):
            yield piece


def _shared_length(sequences: Sequence[Sequence[int]]) -> int:
    """How many tokens all `sequences` begin with alike."""
    shortest = min(len(s) for s in sequences)
    for i in range(shortest):
        if len({s[i] for s in sequences}) > 1:
            return i
    return shortest
