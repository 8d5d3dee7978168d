"""The job store and the worker's bookkeeping, with real SQLite, real processes and real files
(no training here: tests/test_training_worker.py runs real trainings)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.training import views
from backend.training.demo_data import demo_spec
from backend.training.job_folder import write_json_atomic
from backend.training.jobs import JobError, JobStore, process_alive, process_start
from backend.training.spec import SpecError
from backend.training.worker import Worker


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "runs")


@pytest.fixture
def spec(demo_workdir: Path):
    return demo_spec(demo_workdir)


def dead_pid() -> tuple[int, str | None]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start(proc.pid)
    proc.wait()
    return proc.pid, start


def test_submit_checks_the_spec_and_writes_it_beside_the_job(store: JobStore, spec) -> None:
    with pytest.raises(SpecError, match="learning rate must be above 0"):
        store.submit(spec.with_changes(learning_rate=0.0))
    assert store.list() == []
    job = store.submit(spec)
    assert job.state == "queued" and job.attempts == 0
    assert Path(job.spec.output_dir) == store.jobs_dir / job.id
    assert json.loads(job.files.spec.read_text())["learning_rate"] == spec.learning_rate
    # A second store on the same folder (another process, a restarted app) sees the same job.
    assert JobStore(store.workdir).get(job.id) == job


def test_cancel_resume_and_delete_follow_the_states(store: JobStore, spec) -> None:
    job = store.submit(spec)
    with pytest.raises(JobError, match="only an interrupted, cancelled or failed job can be resumed"):
        store.resume(job.id)
    assert store.cancel(job.id).state == "cancelled"
    with pytest.raises(JobError, match="only queued or running jobs can be cancelled"):
        store.cancel(job.id)
    assert store.resume(job.id).state == "queued"

    assert store.claim(job.id, "test-worker", "cpu")
    with pytest.raises(JobError, match="is running; cancel it before deleting it"):
        store.delete(job.id)
    store.finish(job.id, "failed", "it broke", 1)
    store.delete(job.id)
    assert not job.files.root.exists()
    with pytest.raises(JobError, match="There is no job"):
        store.get(job.id)


def _claim_all(workdir: str, ids: list[str], name: str, results) -> None:
    store = JobStore(Path(workdir))
    results.extend([(job_id, name) for job_id in ids if store.claim(job_id, name, "cpu")])


def test_racing_workers_claim_each_job_exactly_once(store: JobStore, spec) -> None:
    ids = [store.submit(spec).id for _ in range(12)]
    with multiprocessing.Manager() as manager:
        results = manager.list()
        racers = [multiprocessing.get_context("fork").Process(
            target=_claim_all, args=(str(store.workdir), ids, f"w{i}", results)) for i in range(4)]
        for p in racers:
            p.start()
        for p in racers:
            p.join(60)
        claimed = list(results)
    assert sorted(job_id for job_id, _ in claimed) == sorted(ids)
    assert all(store.get(job_id).attempts == 1 for job_id in ids)


def test_restart_marks_a_running_job_with_a_dead_process_interrupted(store: JobStore, spec) -> None:
    job = store.submit(spec)
    store.claim(job.id, "a-worker-that-died", "cpu")
    pid, start = dead_pid()
    store.set_process(job.id, pid, start)
    Worker(store, gpus=[]).recover()
    job = store.get(job.id)
    assert job.state == "interrupted"
    assert "no worker was watching" in job.error and "resume starts from the beginning" in job.error


def test_restart_adopts_a_live_process_and_closes_it_when_it_ends(store: JobStore, spec) -> None:
    job = store.submit(spec)
    store.claim(job.id, "a-worker-that-died", "cpu")
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        store.set_process(job.id, sleeper.pid, process_start(sleeper.pid))
        worker = Worker(store, gpus=[])
        worker.recover()
        assert job.id in worker.running and store.get(job.id).state == "running"
        # While it runs, the CPU is taken: a second job waits its turn.
        second = store.submit(spec)
        worker.tick()
        assert store.get(second.id).state == "queued"
        # It ends having written a result: that is believed.
        write_json_atomic(job.files.result, {"status": "failed", "error": "The GPU ran out of memory."})
        sleeper.kill()
        sleeper.wait()
        worker.tick(start_new=False)
        assert store.get(job.id).state == "failed" and store.get(job.id).error == "The GPU ran out of memory."
    finally:
        sleeper.kill()


def test_a_reused_pid_is_not_mistaken_for_the_training_process() -> None:
    assert process_alive(os.getpid(), process_start(os.getpid()))
    assert not process_alive(os.getpid(), "12345")  # same pid, another start time
    assert not process_alive(dead_pid()[0], None)


def test_views_show_progress_curves_logs_and_adapters(store: JobStore, spec) -> None:
    from ui.train import progress_words

    job = store.submit(spec)
    [row] = views.job_rows(store)
    assert row.state == "queued" and progress_words(row, "en") == "waiting for a free device" and row.fraction == 0
    assert progress_words(row, "zh") == "等待空闲设备"
    store.claim(job.id, "w", "cpu")
    records = [{"step": 1, "total_steps": 4, "epoch": 0.25, "loss": 3.0, "samples_per_s": 10.0, "eta_s": 30},
               {"step": 2, "total_steps": 4, "epoch": 0.5, "loss": 2.0, "samples_per_s": 12.0, "eta_s": 20},
               {"step": 2, "epoch": 0.5, "eval_loss": 2.5}]
    job.files.metrics.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 3, "lo')
    store.set_progress(job.id, records[1])
    [row] = views.job_rows(store)
    assert progress_words(row, "en") == "step 2/4 · epoch 0.50 · 12.0 samples/s · ETA 0:00:20 · loss 2.0000"
    assert progress_words(row, "zh") == "第 2/4 步 · 第 0.50 轮 · 每秒 12.0 个样本 · 预计还需 0:00:20 · 损失 2.0000"
    assert row.fraction == 0.5
    curve = views.loss_curve(store, job.id)  # the half-written last line is skipped
    assert curve.train == [(1, 3.0), (2, 2.0)] and curve.eval == [(2, 2.5)]
    assert {"step": 2, "loss": 2.5, "series": "held-out"} in curve.rows()
    job.files.log.write_text("".join(f"line {i}\n" for i in range(100)) + "50%\r100%\n")
    assert views.log_tail(store, job.id, 3) == "line 98\nline 99\n100%"
    assert views.ready_adapters(store) == []
    assert views.gpu_memory() == [] or all(g.total_mb > 0 for g in views.gpu_memory())


def test_a_job_no_worker_gpu_can_run_is_named_with_what_to_change(spec) -> None:
    from backend.training.worker import gpu_shortfall

    assert gpu_shortfall(spec.with_changes(device="cpu"), []) is None
    assert gpu_shortfall(spec.with_changes(device="auto", gpus=2), []) is None  # auto: the CPU, here
    assert gpu_shortfall(spec.with_changes(device="cuda", gpus=2), ["0", "1"]) is None
    none = gpu_shortfall(spec.with_changes(device="cuda"), [])
    assert none.key == "no_gpus_for_jobs" and "set Device to cpu or auto" in none.sentence
    few = gpu_shortfall(spec.with_changes(device="auto", gpus=4), ["0", "1"])
    assert few.key == "worker_lacks_gpus" and "set GPUs to 2 or fewer" in few.sentence.format(**few.values)


def test_a_queued_gpu_job_on_a_worker_without_gpus_fails_with_that_sentence(store: JobStore, spec) -> None:
    job = store.submit(spec.with_changes(device="cuda"))
    Worker(store, gpus=[]).tick()
    job = store.get(job.id)
    assert job.state == "failed" and "sees no GPU on this machine" in job.error
