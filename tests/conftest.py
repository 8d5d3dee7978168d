"""Shared fixtures: tiny models of every family, and a real app process on a free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ARTIFACTS = ROOT / "test-artifacts"  # screenshots and logs a person can look at after a run
FAMILIES = ("qwen2_vl", "qwen2_5_vl", "internvl", "llava")
# Every tiny model of the registry (backend/models/families.py TINY): the four above, the late-2026
# families, and variants (internvl3_5: InternVL3.5's Qwen3 text and tiled photos).
# internvl2: InternVL2 written in its original remote-code layout, then converted (convert_internvl.py).
TINY_MODELS = ("qwen2_vl", "qwen2_5_vl", "internvl", "llava", "qwen3_vl", "qwen3_5", "internvl3_5", "gemma3",
               "smolvlm", "blip_2", "internvl2")


class TinyModels(Mapping):
    """Tiny model folders by name, each built the first time a test asks for it (a test session that
    needs two of them does not pay for ten)."""

    def __init__(self, root: Path) -> None:
        self.root, self.built = root, {}

    def __getitem__(self, name: str) -> Path:
        if name not in self.built:
            from backend.models.tiny import build_tiny_model

            if name not in TINY_MODELS:
                raise KeyError(name)
            if name == "internvl2":
                from backend.models.convert_internvl import convert
                from tests.internvl2_original import build_reference, write_original

                original = write_original(build_reference(self.root / "internvl2-reference"),
                                          self.root / "internvl2-original")
                self.built[name] = convert(original, self.root / name)
            else:
                self.built[name] = build_tiny_model(name, self.root / name)
        return self.built[name]

    def __iter__(self):
        return iter(FAMILIES)  # what tests that walk every model meant before the registry grew

    def __len__(self) -> int:
        return len(FAMILIES)


def load_tiny(tiny_models: TinyModels, name: str):
    """The tiny model `name`, loaded (backend.models.loading). Skipped where this transformers cannot load
    it without torchvision: 5.17 (the Makefile's second run, the GPU machine's version) for SmolVLM."""
    from backend.models.loading import load, resolve

    try:
        return load(resolve(str(tiny_models[name])))
    except ImportError as err:
        if "Torchvision" not in str(err):
            raise
        pytest.skip(f"this transformers needs torchvision for {name}")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory) -> Path:
    """A work folder whose demo model is built once for the whole test session."""
    from backend.models.demo import ensure_demo_model

    workdir = tmp_path_factory.mktemp("workdir")
    ensure_demo_model(workdir)
    return workdir


def own_workdir(demo_workdir: Path, folder: Path) -> Path:
    """A fresh work folder with the demo model copied in: one app per work folder (app.lock), so
    a test that starts its own app beside `app_server` needs its own folder."""
    shutil.copytree(demo_workdir / "models", folder / "models")
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppProcess:
    """`python app.py ...` as a child process, the way a person starts it."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (the app writes to it until stop())
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "app.py", "--port", str(self.port), *args],
                                     cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"app not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> AppProcess:
        """`with AppProcess(...) as app:` waits until it serves, and stops it on the way out."""
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


@pytest.fixture(scope="session")
def app_server(demo_workdir, tmp_path_factory):
    with AppProcess(["--workdir", str(demo_workdir)], tmp_path_factory.mktemp("logs") / "app.log") as app:
        yield app


# The browser tests: Debian's chromium (apt-get install chromium; `make test` installs it),
# driven by playwright's Python client with no browser download of its own.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                    "(apt-get install chromium); make test installs it")
# Flags for a sandboxed CI machine: no GPU, and no background calls to a network that is not there.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
