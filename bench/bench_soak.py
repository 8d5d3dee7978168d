"""Soak: 20 visitors chatting and 3 training jobs cycling for minutes, with the worker SIGKILLed twice.

    python bench/bench_soak.py                       # 10 minutes, 20 visitors, 3 jobs at a time
    python bench/bench_soak.py --minutes 2 --visitors 5

Starts `python app.py` on a fresh work folder and a free loopback port, then for --minutes:
- --visitors gradio_client sessions in threads, each asking photo questions (16 new tokens) one after
  another with a pause of 0.5-2 s, clearing its conversation every 5 questions;
- --jobs demo-cpu training jobs (--epochs each) always queued or running through the Train tab's
  endpoints: each one that ends is recorded, deleted (the clean-up a person does) and replaced;
- the training worker SIGKILLed at 1/3 and 2/3 of the run, and the time until a new one serves (and
  how many running jobs the new workers adopted).
Then it waits for the jobs still queued or running, deletes them, stops the app, and compares the work
folder with its size right after the app had started.

Reports (and writes bench/results-soak-cpu.json): jobs submitted and how each ended (a lost job is one
that did not succeed: interrupted, failed, or still not finished), chat answers and errors (the
intended refusals count apart: there are none here, the queue holds 64), latency percentiles, RSS of
the app and of its worker sampled every 15 s (drift: the last sample against the first after a
1-minute warm-up), the worker's restarts, and the work folder's size at start, at the end of the
run, after the clean-up and after the app stopped.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.disk import tree_size  # noqa: E402
from tests.conftest import AppProcess  # noqa: E402

PHOTOS = sorted((ROOT / "examples" / "images").glob("*-0.jpg"))
QUESTIONS = ("这是什么菜？", "What dish is this?", "味道怎么样？", "Which cuisine is it?")


def visitor(url: str, index: int, stop: threading.Event, answers: list, errors: list) -> None:
    from gradio_client import Client, handle_file

    rng = random.Random(index)
    try:
        client = Client(url, verbose=False)
    except Exception as err:
        errors.append(f"visitor {index}: connect: {type(err).__name__}: {err}"[:300])
        return
    n = 0
    while not stop.is_set():
        try:
            if n % 5 == 0:
                client.predict(api_name="/clear")
            files = [handle_file(str(PHOTOS[(index + n) % len(PHOTOS)]))] if n % 5 == 0 else []
            started = time.perf_counter()
            chatbot = client.submit({"text": rng.choice(QUESTIONS), "files": files}, 16, 0.0, 0.9,
                                    api_name="/chat").result(timeout=300)[0]
            if not chatbot or chatbot[-1]["role"] != "assistant":
                raise RuntimeError("no answer in the conversation")
            answers.append(time.perf_counter() - started)
        except Exception as err:
            errors.append(f"visitor {index}: {type(err).__name__}: {err}"[:300])
        n += 1
        stop.wait(rng.uniform(0.5, 2.0))


def form_values(epochs: int) -> list:
    from backend.training.job_form import FIELDS
    from backend.training.spec import PRESETS, JobSpec

    values = {f: PRESETS["demo-cpu"].get(f, getattr(JobSpec(), f)) for f in FIELDS} | {"epochs": epochs}
    return [values[f] for f in FIELDS]


def trainer(url: str, slots: int, epochs: int, stop: threading.Event, jobs: dict, errors: list) -> None:
    """Keep `slots` jobs queued or running; record, delete and replace each one that ends."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    active: list[str] = []
    number = 0
    while True:
        while not stop.is_set() and len(active) < slots:
            number += 1
            try:
                out = client.predict("demo", "demo-cpu", f"soak-{number}", "", *form_values(epochs),
                                     api_name="/train_start")
                picker = out[1]
                job_id = picker["value"] if isinstance(picker, dict) else picker
                jobs[job_id] = {"name": f"soak-{number}", "submitted": time.time(), "state": "queued"}
                active.append(job_id)
            except Exception as err:
                errors.append(f"train_start: {type(err).__name__}: {err}"[:300])
                break
        for job_id in list(active):
            try:
                status = client.predict(job_id, api_name="/train_status")
            except Exception as err:
                errors.append(f"train_status: {type(err).__name__}: {err}"[:300])
                continue
            jobs[job_id]["state"] = status["state"]
            if status["state"] not in ("queued", "running"):
                jobs[job_id].update(ended=time.time(), error=status.get("error"), attempts=status.get("attempts"))
                try:
                    client.predict(job_id, api_name="/train_delete")
                    jobs[job_id]["deleted"] = True
                except Exception as err:
                    errors.append(f"train_delete: {type(err).__name__}: {err}"[:300])
                active.remove(job_id)
        if stop.is_set() and not active:
            return
        time.sleep(2)


def worker_of(app_pid: int) -> psutil.Process | None:
    for child in psutil.Process(app_pid).children():
        try:
            if "backend.training.worker" in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def kill_worker(app_pid: int, workdir: Path) -> float:
    """SIGKILL the app's worker; seconds until its successor logs that it serves."""
    old = worker_of(app_pid)
    old.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    while time.monotonic() - killed < 60:
        new = worker_of(app_pid)
        log = (workdir / "worker.log").read_text(errors="replace")
        if new and new.pid != old.pid and re.search(rf"worker \S+:{new.pid} serving", log):
            return time.monotonic() - killed
        time.sleep(0.05)
    return float("inf")


def rss_mb(process: psutil.Process | None) -> float | None:
    try:
        return process.memory_info().rss / 2**20 if process else None
    except psutil.NoSuchProcess:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--visitors", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=3, help="jobs kept queued or running at once")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each demo-cpu job")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-soak-cpu.json")
    args = parser.parse_args()
    seconds = args.minutes * 60

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "w"
        app = AppProcess(["--workdir", str(workdir)], Path(tmp) / "app.log")
        app.wait_ready(timeout=300)
        time.sleep(2)
        size_at_start = tree_size(workdir)
        stop = threading.Event()
        answers: list[float] = []
        chat_errors: list[str] = []
        train_errors: list[str] = []
        jobs: dict[str, dict] = {}
        threads = [threading.Thread(target=visitor, args=(app.url, i, stop, answers, chat_errors), daemon=True)
                   for i in range(args.visitors)]
        threads.append(threading.Thread(target=trainer, args=(app.url, args.jobs, args.epochs, stop, jobs,
                                                              train_errors), daemon=True))
        started = time.monotonic()
        for thread in threads:
            thread.start()
        samples, kills, killed = [], [], 0
        app_process = psutil.Process(app.proc.pid)
        while (elapsed := time.monotonic() - started) < seconds:
            if killed < 2 and elapsed >= seconds * (killed + 1) / 3:
                kills.append(round(kill_worker(app.proc.pid, workdir), 2))
                killed += 1
            if not samples or elapsed - samples[-1]["t"] >= 15:
                samples.append({"t": round(elapsed, 1), "app_mb": rss_mb(app_process),
                                "worker_mb": rss_mb(worker_of(app.proc.pid)), "answers": len(answers)})
            time.sleep(0.5)
        stop.set()
        size_at_end = tree_size(workdir)
        for thread in threads:
            thread.join(900)
        wall = time.monotonic() - started
        size_after_cleanup = tree_size(workdir)
        app.stop()
        size_after_stop = tree_size(workdir)
        leftovers = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")
                           if p.is_file() and not p.is_relative_to(workdir / "models"))
        adopted = len(re.findall(r"adopted running job", (workdir / "worker.log").read_text(errors="replace")))

    states = [job["state"] for job in jobs.values()]
    lost = [job for job in jobs.values() if job["state"] != "succeeded"]
    warm = next((s for s in samples if s["t"] >= 60), samples[0])
    last = samples[-1]
    q = statistics.quantiles(answers, n=100) if len(answers) >= 2 else [0.0] * 99
    results = {
        "minutes": args.minutes, "visitors": args.visitors, "jobs_at_once": args.jobs, "epochs": args.epochs,
        "wall_s": round(wall, 1),
        "jobs_submitted": len(jobs), "jobs_by_state": {s: states.count(s) for s in sorted(set(states))},
        "jobs_lost": len(lost), "lost": lost, "jobs_deleted": sum(1 for j in jobs.values() if j.get("deleted")),
        "answers": len(answers), "chat_errors": len(chat_errors), "train_errors": len(train_errors),
        "errors": (chat_errors + train_errors)[:20],
        "latency_s": {"p50": round(q[49], 2), "p95": round(q[94], 2), "max": round(max(answers, default=0), 2)},
        "worker_back_after_kill_s": kills, "jobs_adopted_by_a_new_worker": adopted,
        "rss_mb": {"app_warm": warm["app_mb"], "app_last": last["app_mb"],
                   "app_drift": round(last["app_mb"] - warm["app_mb"], 1),
                   "worker_warm": warm["worker_mb"], "worker_last": last["worker_mb"]},
        "samples": samples,
        "workdir_bytes": {"start": size_at_start, "end_of_run": size_at_end, "after_cleanup": size_after_cleanup,
                          "after_stop": size_after_stop, "after_stop_minus_start": size_after_stop - size_at_start},
        "files_left_besides_the_model": leftovers,
    }
    args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    print(json.dumps({k: v for k, v in results.items() if k not in ("samples", "lost")}, indent=1,
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
