"""Startup and first-token latency of the app on the demo model, beside their baselines.

    python bench/bench_startup.py            # 3 cold starts, 10 chat requests
    python bench/bench_startup.py --runs 5 --requests 20

What it measures, each in the same run as its baseline:
- first build of the demo model (an empty work folder), vs. loading it once cached;
- cold start of `python app.py` to HTTP 200 with the demo model cached, vs. the floor any app
  on this stack pays: `python -c "import torch, transformers, gradio"`;
- first streamed token through the running app (gradio_client, a photo and a question), vs. the
  first token from the engine called directly in-process (the app's own overhead is the gap).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import AppProcess  # noqa: E402  (the same launcher the tests use)

PHOTO = ROOT / "examples" / "images" / "xihu-cuyu-0.jpg"


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def cold_start(workdir: Path, log: Path) -> float:
    start = time.perf_counter()
    app = AppProcess(["--workdir", str(workdir)], log)
    try:
        app.wait_ready(timeout=300)
        return time.perf_counter() - start
    finally:
        app.stop()


def first_token_through_app(url: str, requests: int) -> tuple[list[float], list[float]]:
    from gradio_client import Client, handle_file

    firsts, totals = [], []
    client = Client(url, verbose=False)
    for i in range(requests):
        client.predict(api_name="/clear")
        start = time.perf_counter()
        job = client.submit({"text": f"这是什么菜？{i}", "files": [handle_file(str(PHOTO))]}, 32, 0.0, 0.9,
                            api_name="/chat")
        first = None
        for chatbot, *_ in job:
            last = chatbot[-1] if chatbot else None
            if first is None and last and last["role"] == "assistant":
                parts = [p.get("text", "") for p in last["content"] if p.get("type") == "text"]
                if any(t and t != "…" for t in parts):
                    first = time.perf_counter() - start
        totals.append(time.perf_counter() - start)
        firsts.append(first if first is not None else totals[-1])
    return firsts, totals


def first_token_direct(workdir: Path, requests: int) -> list[float]:
    from backend.inference.engine import GenerationSettings, Turn
    from backend.inference.transformers_engine import TransformersEngine
    from backend.models.demo import ensure_demo_model
    from backend.models.loading import load

    engine = TransformersEngine(load(ensure_demo_model(workdir)))
    firsts = []
    for i in range(requests):
        start = time.perf_counter()
        stream = engine.stream([Turn("user", f"这是什么菜？{i}", (str(PHOTO),))], GenerationSettings(32))
        next(stream)
        firsts.append(time.perf_counter() - start)
        list(stream)
    return firsts


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms (max {max(values) * 1000:.0f})"


def seconds(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build = timed([sys.executable, "-c", "import sys; from pathlib import Path; "
                       "from backend.models.demo import ensure_demo_model; ensure_demo_model(Path(sys.argv[1]))",
                       str(tmp / "w")])
        cached_load = timed([sys.executable, "-c", "import sys; from pathlib import Path; "
                             "from backend.models.demo import ensure_demo_model; ensure_demo_model(Path(sys.argv[1]))",
                             str(tmp / "w")])
        first_start = cold_start(tmp / "fresh", tmp / "fresh.log")
        imports = [timed([sys.executable, "-c", "import torch, transformers, gradio"]) for _ in range(args.runs)]
        starts = [cold_start(tmp / "w", tmp / f"start{i}.log") for i in range(args.runs)]

        app = AppProcess(["--workdir", str(tmp / "w")], tmp / "chat.log")
        app.wait_ready(timeout=300)
        try:
            via_app, totals = first_token_through_app(app.url, args.requests)
        finally:
            app.stop()
        direct = first_token_direct(tmp / "w", args.requests)

    rows = [
        ("demo model: first build (python process incl. imports)", f"{build:.2f} s",
         f"already cached: {cached_load:.2f} s"),
        ("app cold start to HTTP 200, demo model not yet built", f"{first_start:.2f} s", ""),
        ("app cold start to HTTP 200, demo model cached", seconds(starts),
         f"`import torch, transformers, gradio`: {seconds(imports)}"),
        ("first streamed token through the app (gradio_client)", ms(via_app),
         f"engine called directly: {ms(direct)}"),
        ("whole 32-token answer through the app", ms(totals), ""),
    ]
    print(f"| measure ({args.runs} starts, {args.requests} requests) | ours | baseline in the same run |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
