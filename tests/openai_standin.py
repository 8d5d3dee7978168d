"""A stand-in for `lmdeploy serve api_server` that runs on a CPU, for tests only.

LMDeploy has no CPU device, so CI cannot run it. This process takes the same command line
(`serve api_server MODEL --server-port P --model-name base --adapters a=path ...`) and speaks
the same OpenAI-compatible API (/v1/models, /v1/chat/completions with and without stream),
answering with a real model through our transformers engine. It lets the CI test what the
app does around LMDeploy: starting and stopping the process, building requests, parsing the
stream, routing adapters by name, and a server that dies. The real LMDeploy is tested on the
GPU machine (bench/README.md).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.inference.engine import GenerationSettings, Turn
from backend.inference.transformers_engine import TransformersEngine
from backend.models.loading import load, resolve


def undo_lmdeploy_renaming(folder: Path, out: Path) -> Path:
    """LMDeploy reads adapter keys without `language_model.`; transformers 5 wants them back."""
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(folder / "adapter_model.safetensors"))
    save_file({k.replace("model.layers.", "model.language_model.layers."): v for k, v in weights.items()},
              str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = json.loads((folder / "adapter_config.json").read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = [m.replace("model.layers.", "model.language_model.layers.")
                                    for m in config["target_modules"]]
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out


def turns_from(messages: list[dict], scratch: Path) -> list[Turn]:
    turns = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            turns.append(Turn(message["role"], content))
            continue
        images, text = [], ""
        for part in content:
            if part["type"] == "image_url":
                url = part["image_url"]["url"]
                if url.startswith("file:"):  # LMDeploy reads a local file itself, as here
                    images.append(url2pathname(urlparse(url).path))
                    continue
                data = base64.b64decode(url.split(",", 1)[1])
                path = scratch / f"{uuid.uuid4().hex}.jpg"  # unique: requests arrive in parallel threads
                path.write_bytes(data)
                images.append(str(path))
            elif part["type"] == "text":
                text += part["text"]
        turns.append(Turn(message["role"], text, tuple(images)))
    return turns


# A slow server, for a test that must catch it in the middle of an answer.
PIECE_DELAY_S = float(os.environ.get("STANDIN_PIECE_DELAY_S", "0"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("serve")
    parser.add_argument("api_server")
    parser.add_argument("model")
    parser.add_argument("--server-name", default="127.0.0.1")
    parser.add_argument("--server-port", type=int, required=True)
    parser.add_argument("--model-name", default="base")
    parser.add_argument("--adapters", nargs="*", default=[])
    args, _ = parser.parse_known_args()

    engine = TransformersEngine(load(resolve(args.model)))
    scratch = Path(tempfile.mkdtemp(prefix="standin-"))
    for pair in args.adapters:
        name, path = pair.split("=", 1)
        engine.load_adapter(name, str(undo_lmdeploy_renaming(Path(path), scratch / "adapters" / name)))
    (scratch / "images").mkdir()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def _json(self, code: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/v1/models":
                names = [args.model_name, *engine.adapters]
                self._json(200, {"data": [{"id": n} for n in names]})
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            model = body.get("model")
            if model != args.model_name and model not in engine.adapters:
                return self._json(404, {"error": f"The model {model!r} does not exist."})
            adapter = None if model == args.model_name else model
            settings = GenerationSettings(body.get("max_completion_tokens", 64), body.get("temperature", 0.0),
                                          body.get("top_p", 0.9) or 0.9)
            turns = turns_from(body["messages"], scratch / "images")
            if not body.get("stream"):
                text = engine.generate_batch([turns], settings, adapter)[0]
                return self._json(200, {"choices": [{"message": {"role": "assistant", "content": text}}]})
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for piece in engine.stream(turns, settings, adapter=adapter):
                time.sleep(PIECE_DELAY_S)
                event = {"choices": [{"delta": {"content": piece}}]}
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")

    # a backlog of 5 (the default) resets connections when a batch of requests arrives at once
    ThreadingHTTPServer.request_queue_size = 128
    ThreadingHTTPServer((args.server_name, args.server_port), Handler).serve_forever()


if __name__ == "__main__":
    main()
