"""The house rules (docs/architecture.md), checked on the code itself: imports run one way, with no
loop anywhere (imports inside functions count too); backend/ never imports gradio; a ui/ module
stays small enough to read; the training loop does not branch on its path."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backend", "ui")
UI_LINES = 450


def project_modules() -> dict[str, Path]:
    """Dotted name -> file, for app.py and every module of backend/ and ui/."""
    modules = {"app": ROOT / "app.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports, wherever the import stands (a function's body too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from .mod import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {imported for imported in found if imported in modules and imported != name}


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), and modules importing themselves."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walk_finds_the_imports_it_checks():
    graph = import_graph()
    assert "backend.training.lora" in graph and "ui.app" in graph
    assert {"ui.chat", "ui.dataset", "ui.train", "ui.compare"} <= graph["ui.app"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_back_through_others():
    assert cycles(import_graph()) == []


def test_the_backend_never_imports_gradio():
    offenders = []
    for path in (ROOT / "backend").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name == "gradio" or name.startswith(("gradio.", "gradio_client")) for name in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_every_ui_module_is_short_enough_to_read():
    lengths = {path.name: len(path.read_text(encoding="utf-8").splitlines()) for path in (ROOT / "ui").glob("*.py")}
    assert {name: n for name, n in lengths.items() if n > UI_LINES} == {}


def test_the_training_loop_does_not_branch_on_its_path():
    """The padded and packed paths are chosen once, before the loop (backend/training/steps.py)."""
    source = (ROOT / "backend" / "training" / "lora.py").read_text(encoding="utf-8")
    assert re.findall(r"if packed|packed and|deepspeed", source) == []


def test_the_worker_starts_without_torch():
    """The worker only queues and watches jobs (each training is a process of its own): without torch it
    is back within a second after a SIGKILL, where importing torch took 6-8 s on a busy 2-core box."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import sys, backend.training.worker; "
                           "print(sorted(m for m in ('torch', 'transformers', 'gradio') if m in sys.modules))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
