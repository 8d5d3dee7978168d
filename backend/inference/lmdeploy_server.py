"""`lmdeploy serve api_server` as a child process of the app.

Why a separate process (and, on a GPU box, a separate virtual environment): LMDeploy 0.18 pins
torch<=2.12.1, torchvision<=0.27.1 and peft<=0.14.0, which would downgrade the training stack if
both lived in one environment. Spoken to over its OpenAI-compatible HTTP API, LMDeploy can keep
its own pins (`make gpu-extras` builds that environment), and a crash of the server cannot take
the app down: the engine notices, says so, and restarts it.

LMDeploy takes its LoRA adapters when it starts (there is no call to add one later), so a new
checkpoint means a restart with the longer adapter list: seconds for a 2B model. LMDeploy 0.18
also expects adapter keys without transformers 5's `language_model.` level, so adapters are
copied with renamed keys first (see shared/GPU.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


class ServerError(RuntimeError):
    """The serving process failed; the message says how, for a person."""


@dataclass(frozen=True)
class ServerOptions:
    model: str
    workdir: Path
    backend: str = "auto"  # "turbomind" where it loads, else "pytorch"; auto lets LMDeploy pick
    session_len: int = 8192
    # LMDeploy reserves this share of the GPU memory left after the weights for its KV cache.
    # 0.5 (not LMDeploy's 0.8) leaves room for a training job on the same GPU.
    cache_share: float = 0.5
    tp: int = 1
    max_batch_size: int = 64
    # Tokens one prefill step takes. A Qwen2-VL photo is up to ~1,000 tokens, so LMDeploy's default
    # (8192) prefills at most 8 photo questions at a time.
    max_prefill_tokens: int = 32768
    # Threads that run the image processor over incoming pictures (LMDeploy itself uses one).
    # Why: with both settings, scoring 256 photo questions took 10.0-11.9 s instead of 14.2-14.8 s
    # with LMDeploy's defaults, and 16 threads were slower than 8 (H200, 2026-11-30,
    # bench/profile_scoring_gpu.py); file URLs and cast pictures, below, took it to 8.5-10.1 s.
    preprocess_threads: int = 8
    # Hand the processor's picture patches to LMDeploy's engine process in the model's dtype, not
    # float32 (half the bytes to pickle; lmdeploy_launch.py says why). False: LMDeploy's own way.
    cast_pictures: bool = True
    # The command that runs LMDeploy's CLI: its own venv's python by default (make gpu-extras).
    command: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not 0.05 <= self.cache_share <= 0.95:
            raise ValueError("the KV-cache share must be between 0.05 and 0.95 of free GPU memory")
        if self.tp < 1:
            raise ValueError("tensor parallelism needs at least one GPU")
        if self.preprocess_threads < 1:
            raise ValueError("picture preprocessing needs at least one thread")


# LMDeploy's CLI behind a wider picture-preprocessing pool (the script says why)
LAUNCH_SCRIPT = Path(__file__).with_name("lmdeploy_launch.py")


def default_command(workdir: Path) -> tuple[str, ...] | None:
    """LMDeploy's CLI: the venv `make gpu-extras` builds, else an lmdeploy importable here."""
    venv_python = Path(workdir) / "lmdeploy-venv" / "bin" / "python"
    if venv_python.exists():
        return (str(venv_python), str(LAUNCH_SCRIPT))
    import importlib.util

    if importlib.util.find_spec("lmdeploy") is not None:
        return (sys.executable, str(LAUNCH_SCRIPT))
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def convert_adapter(source: Path, target: Path) -> Path:
    """Copy a peft adapter with the key names LMDeploy 0.18 loads (drops `language_model.`)."""
    from safetensors.torch import load_file, save_file

    target.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(source / "adapter_model.safetensors"))
    renamed = {key.replace("model.language_model.", "model."): value for key, value in weights.items()}
    save_file(renamed, str(target / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = json.loads((source / "adapter_config.json").read_text(encoding="utf-8"))
    modules = config.get("target_modules")
    if isinstance(modules, list):
        # LMDeploy matches target modules by their last name ("q_proj"); a full dotted path
        # loads without an error and is then silently never applied (seen on the H100).
        config["target_modules"] = sorted({m.rsplit(".", 1)[-1] for m in modules})
    (target / "adapter_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return target


def model_config(model: str) -> dict:
    """A local model folder's config.json ({} for a hub id or an unreadable file)."""
    try:
        return json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def weights_dtype(config: dict) -> str:
    """LMDeploy's --dtype for these weights. LMDeploy 0.18 reads only the old `torch_dtype` key;
    transformers 5 writes `dtype`, and without the old key LMDeploy runs a bf16 model in fp16 (seen
    on the H200: "Model config does not have `torch_dtype`, use: float16"), where bf16-trained
    weights can overflow. So the dtype is read here and passed on."""
    for where in (config, config.get("text_config") or {}):
        value = where.get("dtype") or where.get("torch_dtype")
        if value in ("bfloat16", "float16"):
            return value
    return "auto"


def first_error(log_text: str) -> str:
    """The first exception a server's log names. LMDeploy's engine runs in a worker process: when the
    worker fails (a missing kernel package, a config it cannot read), the server's last words are only
    that the worker is gone, so the cause is the first error, not the last."""
    for line in log_text.splitlines():
        found = re.search(r"\b(\w*(?:Error|Exception)): (.+)", line)
        if found and "process is not alive" not in found.group(2):
            return f"{found.group(1)}: {found.group(2).strip()}"
    return ""


class LMDeployServer:
    """One api_server child process, restarted when its adapters change or it dies."""

    # not "base": LMDeploy reads a model named "base" as "no chat template chosen"
    BASE_NAME = "foodie-base"

    def __init__(self, options: ServerOptions) -> None:
        command = options.command or default_command(options.workdir)
        if not command:
            raise ServerError("LMDeploy is not installed: run `make gpu-extras` on the GPU box "
                              "(it builds its own environment under the work folder).")
        self.options = options
        self.command = tuple(command)
        self.adapters: dict[str, Path] = {}
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.log_path = Path(options.workdir) / "logs" / "lmdeploy.log"
        self.log_start = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arguments(self) -> list[str]:
        o = self.options
        args = [*self.command, "serve", "api_server", o.model, "--server-name", "127.0.0.1",
                "--server-port", str(self.port), "--model-name", self.BASE_NAME,
                "--session-len", str(o.session_len), "--cache-max-entry-count", str(o.cache_share),
                "--tp", str(o.tp), "--max-batch-size", str(o.max_batch_size),
                "--max-prefill-token-num", str(o.max_prefill_tokens),
                "--dtype", weights_dtype(model_config(o.model))]
        if o.preprocess_threads > 1:
            args += ["--preprocess-threads", str(o.preprocess_threads)]
        if not o.cast_pictures:
            args.append("--keep-picture-dtype")
        if o.backend != "auto" or self.adapters:
            # adapters are served by the PyTorch engine only
            args += ["--backend", "pytorch" if self.adapters else o.backend]
        if self.adapters:
            args += ["--adapters", *[f"{name}={path}" for name, path in self.adapters.items()]]
        return args

    def start(self, timeout: float = 600) -> None:
        self.stop()
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_path, "ab")  # noqa: SIM115 (the server writes to it as long as it runs)
        self.log_start = log_file.tell()  # the log keeps earlier starts: a failure is read from here on
        log.info("starting LMDeploy: %s", " ".join(self.arguments()))
        # its own process group: stopping it stops the engine workers it starts too
        self.process = subprocess.Popen(self.arguments(), stdout=log_file, stderr=subprocess.STDOUT,
                                        start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        log_file.close()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                cause = first_error(self.log_since_start()) or "its log names no error"
                raise ServerError(f"LMDeploy stopped while starting (exit {self.process.returncode}): {cause}\n"
                                  f"The end of {self.log_path}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v1/models", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise ServerError(f"LMDeploy did not answer within {timeout:.0f} s; see {self.log_path}.")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.process = None

    def add_adapter(self, name: str, folder: Path) -> None:
        """Serve `folder` as `name` from now on: a converted copy, then a restart."""
        converted = convert_adapter(Path(folder), Path(self.options.workdir) / "lmdeploy-adapters" / name)
        self.adapters[name] = converted
        self.start()

    def log_since_start(self) -> str:
        try:
            with open(self.log_path, "rb") as file:
                file.seek(self.log_start)
                return file.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
