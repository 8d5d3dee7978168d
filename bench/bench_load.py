"""Load: many visitors chatting with photos at once, on the demo model, on loopback only.

    python bench/bench_load.py                      # 20 sessions for 60 s
    python bench/bench_load.py --sessions 5 --seconds 20

Starts `python app.py` on a free loopback port, then runs --sessions gradio_client sessions in
threads, each sending photo questions (16 new tokens) one after another until --seconds are up
(at most --max-requests each, so the loop is bounded in count and time). Reports errors, latency
percentiles, and the app's memory (RSS of the app process) after a warm-up round and after the
run, to show whether images or histories leak; and the files in the app's upload folder
(<workdir>/gradio-uploads) after the run and after the app stops, to show uploads do not pile up.
Each session clears its conversation every 5 questions, as people start new conversations.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import AppProcess  # noqa: E402

PHOTOS = sorted((ROOT / "examples" / "images").glob("*-0.jpg"))


def session_loop(url: str, index: int, deadline: float, max_requests: int, latencies: list, errors: list) -> None:
    from gradio_client import Client, handle_file

    try:
        client = Client(url, verbose=False)
    except Exception as err:
        errors.append(f"session {index}: connect: {err}")
        return
    for n in range(max_requests):
        if time.monotonic() >= deadline:
            return
        if n % 5 == 0:
            client.predict(api_name="/clear")
        photo = PHOTOS[(index + n) % len(PHOTOS)]
        start = time.perf_counter()
        try:
            job = client.submit({"text": "这是什么菜？", "files": [handle_file(str(photo))]}, 16, 0.0, 0.9,
                                api_name="/chat")
            chatbot = job.result(timeout=300)[0]
            if chatbot[-1]["role"] != "assistant":
                raise RuntimeError("no answer in the conversation")
            latencies.append(time.perf_counter() - start)
        except Exception as err:
            errors.append(f"session {index}: {type(err).__name__}: {err}"[:300])


def run_round(url: str, sessions: int, seconds: float, max_requests: int) -> tuple[list, list, float]:
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=session_loop, args=(url, i, deadline, max_requests, latencies, errors))
               for i in range(sessions)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 600)
    return latencies, errors, time.perf_counter() - start


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max-requests", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        app = AppProcess(["--workdir", str(Path(tmp) / "w")], Path(tmp) / "app.log")
        try:
            app.wait_ready(timeout=300)
            run_round(app.url, args.sessions, 10, 3)  # warm-up: every code path once
            before = rss_mb(app.proc.pid)
            latencies, errors, wall = run_round(app.url, args.sessions, args.seconds, args.max_requests)
            time.sleep(2)
            after = rss_mb(app.proc.pid)
            uploads = Path(tmp) / "w" / "gradio-uploads"
            kept_running = count_files(uploads)
        finally:
            app.stop()
        kept_stopped = count_files(uploads)

    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [0.0] * 99
    print(f"| {args.sessions} sessions, {args.seconds:.0f} s, photo + question, 16 new tokens | value |")
    print("|---|---|")
    print(f"| answers | {len(latencies)} ({len(latencies) / wall:.1f}/s) |")
    print(f"| errors | {len(errors)} |")
    print(f"| latency p50 / p95 / max | {q[49]:.2f} s / {q[94]:.2f} s / {max(latencies, default=0):.2f} s |")
    print(f"| app RSS after warm-up → after the run | {before:.0f} MiB → {after:.0f} MiB |")
    print(f"| files in the upload folder: after the run → after the app stops | {kept_running} → {kept_stopped} |")
    for line in errors[:5]:
        print("error:", line)


if __name__ == "__main__":
    main()
