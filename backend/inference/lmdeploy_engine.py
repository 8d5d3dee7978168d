"""The LMDeploy engine: the same Engine interface, served by an `lmdeploy serve api_server` child.

Requests go over its OpenAI-compatible API; each names its adapter in the `model` field (the base
is "foodie-base"). Several requests at once (scoring, side by side, many visitors) are sent
concurrently, and LMDeploy batches them on the GPU itself.

LMDeploy applies LoRA on the language model only. A checkpoint that trained more (a projector, LoRA
on the vision tower, the whole language model) is merged into its base (merged.py) and served by a
server of its own, whose requests go there; the pages say so beside its name (backend/catalog.py).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import httpx
from PIL import Image

from backend.images import has_orientation, open_image
from backend.inference.engine import (
    Cancel,
    GenerationSettings,
    Turn,
    check_adapter_fits,
    check_adapter_folder,
    check_whole_model_fits,
    is_whole_model,
    language_lora_only,
    layers_of_folder,
)
from backend.inference.lmdeploy_server import LMDeployServer, model_config
from backend.inference.merged import merged_folder

log = logging.getLogger(__name__)

_DONE = object()
PATCH_GRID = 28  # pixels: a 14-pixel patch, merged 2 x 2
PATCH_GRID_MODEL_TYPES = {"qwen2_vl", "qwen2_5_vl"}
# Qwen3-VL and Qwen3.5: a 16-pixel patch, merged 2 x 2
PATCH_GRIDS = {**dict.fromkeys(PATCH_GRID_MODEL_TYPES, PATCH_GRID), "qwen3_vl": 32, "qwen3_5": 32}


def patch_grid_size(width: int, height: int, max_pixels: int, multiple: int) -> tuple[int, int]:
    """The size Qwen2-VL's processor resizes a picture to, by transformers' own rule (each side a
    multiple of the patch grid, the whole within the pixel budget). Raises ValueError for a picture
    that rule refuses (an aspect ratio over 200)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    height, width = smart_resize(height, width, factor=multiple, max_pixels=max_pixels)
    return width, height


def image_url(path: str, max_pixels: int, multiple: int = 0) -> str:
    """A picture as a data URL, downscaled first: LMDeploy would resize it anyway, and a 12 MP
    photo is 4 MB of base64 to move for nothing. With `multiple`, it is resized here to the
    processor's own patch-grid size, so that the server's resize has nothing left to do."""
    picture = open_image(path, max_pixels)
    if multiple:
        try:
            size = patch_grid_size(*picture.size, max_pixels, multiple)
        except ValueError:
            size = picture.size  # left to the server, whose processor says why
        if size != picture.size:
            picture = picture.resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=92)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def server_reads_it_as_is(path: str, max_pixels: int, multiple: int = 0) -> bool:
    """Whether LMDeploy, reading the file itself, would see the picture we would send: upright (no
    EXIF rotation, which it does not apply) and within our pixel budget, also after its processor
    rounds the sides to the patch grid. Reads the header only; a file that is no picture is False,
    so that open_image gives its sentence."""
    try:
        with Image.open(path) as picture:
            width, height = picture.size
            rotated = has_orientation(picture)
    except Exception:  # unreadable: the careful path decides
        return False
    if rotated or width * height > max_pixels:
        return False
    if not multiple:
        return True
    try:
        grid_width, grid_height = patch_grid_size(width, height, max_pixels * 4, multiple)
    except ValueError:
        return True  # refused by the grid rule whichever way it is sent; the server says why
    return grid_width * grid_height <= max_pixels


def picture_reference(path: str, max_pixels: int, multiple: int = 0) -> str:
    """What a request names a picture by. The server is this app's own child on this machine, so a
    picture it can use as it is goes as a file URL: no decoding, resizing and JPEG encoding here,
    which cost 18-30 ms a picture and held up scoring (H200 host, 2026-11-30,
    bench/bench_picture_handover.py). Others (too large, rotated)
    are made ready here and sent as data."""
    if server_reads_it_as_is(path, max_pixels, multiple):
        return Path(path).resolve().as_uri()
    return image_url(path, max_pixels, multiple)


def to_openai_messages(turns: Sequence[Turn], max_pixels: int, multiple: int = 0,
                       send_paths: bool = True) -> list[dict]:
    refer = picture_reference if send_paths else image_url
    messages = []
    for turn in turns:
        if turn.images:
            content: list[dict] = [{"type": "image_url", "image_url": {"url": refer(p, max_pixels, multiple)}}
                                   for p in turn.images]
            content.append({"type": "text", "text": turn.text})
            messages.append({"role": turn.role, "content": content})
        else:
            messages.append({"role": turn.role, "content": turn.text})
    return messages


def request_body(messages: list[dict], settings: GenerationSettings, model: str, stream: bool,
                 extra: dict | None = None) -> dict:
    body = {"model": model, "messages": messages, "stream": stream,
            "max_completion_tokens": settings.max_new_tokens}
    if settings.temperature > 0:
        body.update(temperature=settings.temperature, top_p=settings.top_p)
    else:  # greedy: the same question gets the same answer, as with the transformers engine
        body.update(temperature=0.0, top_k=1)
    body.update(extra or {})
    return body


class StreamCut(ConnectionError):
    """The event stream ended without its closing [DONE]: the server went away mid-answer (over a
    plain close-delimited response this looks like a normal end, so the marker is what tells)."""


def stream_pieces(lines: Iterator[str]) -> Iterator[str]:
    """Text pieces out of an OpenAI-style server-sent event stream."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError:
            log.warning("unreadable stream event: %.200s", data)
            continue
        if "error" in event:
            raise RuntimeError(f"LMDeploy: {event['error']}")
        for choice in event.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                yield piece
    raise StreamCut("the answer stopped before the server said it was done")


class LMDeployEngine:
    name = "lmdeploy"

    def __init__(self, server: LMDeployServer, max_pixels: int, timeout: float = 600) -> None:
        self.server = server
        self.max_pixels = max_pixels
        self.client = httpx.Client(timeout=httpx.Timeout(timeout, connect=10))
        self.extra: dict = {}  # extra request fields, e.g. ignore_eos for benchmarks
        # requests in flight at once from one batch: as many as the server batches on the GPU
        self.max_concurrent = server.options.max_batch_size
        # Qwen2-VL-family pictures that must be made ready here (too large, rotated) are resized to
        # the patch grid LMDeploy's processor would choose, so that its resize has nothing to do.
        model_type = model_config(server.options.model).get("model_type")
        self.patch_multiple = PATCH_GRIDS.get(model_type, 0)
        self.send_paths = True  # pictures the server can read as they are go as file URLs
        self._served_layers: dict[str, tuple[int, int]] | None = None  # the model's linear layers, read once
        self._decoder_prefix = ""  # where its language model is, read with them
        # checkpoints served merged, each by its own server (the module's docstring says why)
        self.merged: dict[str, LMDeployServer] = {}
        self._restart_lock = threading.Lock()
        self._restarting: threading.Thread | None = None
        self._closed = False

    @property
    def adapters(self) -> dict[str, str]:
        return {**{name: str(path) for name, path in self.server.adapters.items()},
                **{name: server.options.model for name, server in self.merged.items()}}

    def load_adapter(self, name: str, folder: str) -> None:
        if name in self.server.adapters or name in self.merged:
            return
        check_adapter_folder(folder)  # refuse a damaged checkpoint before restarting the server
        if is_whole_model(folder):  # a full fine-tune's model folder: served as it is
            check_whole_model_fits(folder, self.server.options.model)
            self._serve_own(name, Path(folder))
            return
        if self._served_layers is None:
            self._served_layers, self._decoder_prefix = layers_of_folder(self.server.options.model)
        check_adapter_fits(folder, self._served_layers, self.server.options.model)  # another base: refused
        if language_lora_only(folder, self._decoder_prefix):
            self.server.add_adapter(name, Path(folder))
        else:
            self._serve_merged(name, Path(folder))

    def _serve_merged(self, name: str, folder: Path) -> None:
        """A server of its own for the checkpoint merged into the base (merged.py)."""
        workdir = Path(self.server.options.workdir)
        self._serve_own(name, merged_folder(self.server.options.model, folder, workdir / "lmdeploy-merged" / name))

    def _serve_own(self, name: str, model: Path) -> None:
        """A server of its own for a model folder (a merged checkpoint, or a full fine-tune's model)."""
        workdir = Path(self.server.options.workdir)
        server = LMDeployServer(replace(self.server.options, model=str(model), command=self.server.command))
        server.log_path = workdir / "logs" / f"lmdeploy-{name}.log"
        server.start()
        self.merged[name] = server
        log.info("serving %s as a model of its own (%s)", name, model)

    def serves_merged(self, name: str | None) -> bool:
        return name in self.merged

    def _model(self, adapter: str | None) -> str:
        if adapter is not None and adapter not in self.server.adapters and adapter not in self.merged:
            raise ValueError(f"no adapter named {adapter!r} is loaded")
        return self.server.BASE_NAME if adapter is None or adapter in self.merged else adapter

    def _server(self, adapter: str | None) -> LMDeployServer:
        return self.merged.get(adapter, self.server) if adapter is not None else self.server

    def _messages(self, turns: list[Turn]) -> list[dict]:
        return to_openai_messages(turns, self.max_pixels, self.patch_multiple, self.send_paths)

    def _failed(self, err: Exception, server: LMDeployServer | None = None) -> RuntimeError:
        """Turn a broken connection into a sentence; restart a server that died."""
        server = server or self.server
        # Many requests fail at once when the server dies (scoring sends dozens): those that fail
        # while the restart is under way say the same as the first, not "connection refused".
        if not server.alive() or self._restart_lock.locked():
            code = server.process.returncode if server.process else None
            if not self._restart_lock.locked() and not self._closed:
                self._restarting = threading.Thread(target=self._restart, args=(server,), name="lmdeploy-restart",
                                                    daemon=True)
                self._restarting.start()
            return RuntimeError(f"The LMDeploy server stopped (exit {'?' if code is None else code}) while "
                                "answering; it is being restarted, please ask again in a minute.")
        return RuntimeError(f"LMDeploy did not answer: {err}")

    def _restart(self, server: LMDeployServer | None = None) -> None:
        server = server or self.server
        with self._restart_lock:
            if self._closed or server.alive():
                return
            try:
                server.start()
            except Exception as err:  # ServerError, or close() stopping the server while it started
                if not self._closed:
                    log.error("could not restart LMDeploy: %s", err)
            if self._closed:  # closed while this started a server: that one must not outlive the engine
                server.stop()

    def stream(self, turns: list[Turn], settings: GenerationSettings,
               cancel: Cancel | None = None, adapter: str | None = None) -> Iterator[str]:
        cancel = cancel or Cancel()
        body = request_body(self._messages(turns), settings, self._model(adapter), stream=True, extra=self.extra)
        server = self._server(adapter)
        try:
            with self.client.stream("POST", f"{server.url}/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise RuntimeError(f"LMDeploy refused the request ({response.status_code}): "
                                       f"{response.text[:300]}")
                for piece in stream_pieces(response.iter_lines()):
                    if cancel.is_set:
                        return  # leaving the block closes the connection; LMDeploy ends the session
                    yield piece
        except (httpx.TransportError, httpx.StreamError, StreamCut) as err:
            raise self._failed(err, server) from None

    def stream_many(self, requests: Sequence[tuple[list[Turn], str | None]], settings: GenerationSettings,
                    cancel: Cancel | None = None) -> Iterator[tuple[int, str]]:
        cancel = cancel or Cancel()
        pieces: queue.Queue = queue.Queue()
        failures: list[BaseException] = []

        def run(index: int, turns: list[Turn], adapter: str | None) -> None:
            try:
                for piece in self.stream(turns, settings, cancel, adapter):
                    pieces.put((index, piece))
            except BaseException as err:
                failures.append(err)
            finally:
                pieces.put(_DONE)

        threads = [threading.Thread(target=run, args=(i, t, a), daemon=True) for i, (t, a) in enumerate(requests)]
        for thread in threads:
            thread.start()
        finished = 0
        try:
            while finished < len(threads):
                item = pieces.get()
                if item is _DONE:
                    finished += 1
                else:
                    yield item
        finally:
            cancel.set()
        if failures:
            raise failures[0]

    def answers_as_done(self, conversations: list[list[Turn]], settings: GenerationSettings,
                        adapter: str | None = None) -> Iterator[tuple[int, str]]:
        """(index, answer) for every conversation, in the order the answers finish. All are sent
        at once (up to max_concurrent in flight) and LMDeploy's scheduler batches them on the GPU,
        so no answer waits for the slowest of a fixed batch before the next ones start."""
        model, server = self._model(adapter), self._server(adapter)

        def ask(turns: list[Turn]) -> str:
            body = request_body(self._messages(turns), settings, model, stream=False, extra=self.extra)
            try:
                response = self.client.post(f"{server.url}/v1/chat/completions", json=body)
            except httpx.TransportError as err:
                raise self._failed(err, server) from None
            if response.status_code != 200:
                raise RuntimeError(f"LMDeploy refused the request ({response.status_code}): {response.text[:300]}")
            return response.json()["choices"][0]["message"]["content"] or ""

        with ThreadPoolExecutor(max_workers=min(self.max_concurrent, max(1, len(conversations)))) as pool:
            futures = {pool.submit(ask, turns): index for index, turns in enumerate(conversations)}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            finally:
                for future in futures:  # a failure or a consumer that stopped: ask nothing more
                    future.cancel()

    def generate_batch(self, conversations: list[list[Turn]], settings: GenerationSettings,
                       adapter: str | None = None) -> list[str]:
        answers = [""] * len(conversations)
        for index, answer in self.answers_as_done(conversations, settings, adapter):
            answers[index] = answer
        return answers

    def close(self) -> None:
        self._closed = True  # a restart under way stops the server it started (_restart)
        self.client.close()
        for server in [self.server, *self.merged.values()]:
            server.stop()
